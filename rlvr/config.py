"""params.yaml onto the library's own knob dataclasses: typed, validated, one line per mistake.

Each set of knobs is a frozen dataclass in the package that uses it (`GRPOParams` in
`rlvr.training.grpo`, `ScoreParams` in `rlvr.tokens.scorer`, ...): its annotations are the types,
its defaults equal params.yaml's values (a test checks), its `__post_init__` the checks, written
with `require` and keys relative to the dataclass. This module reads params.yaml, parses a
section against a dataclass's annotations and turns every problem into one `ParamsError` line
naming `section.key`, the value, what is expected and a fix, before any stage work starts.
YAML 1.1 reads `1e-3` (no dot) as a string, so number strings are accepted where a float is.
"""

from __future__ import annotations

import atexit
import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")

PARAMS_FILE = Path("params.yaml")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class ParamsError(ValueError):
    """A bad params.yaml value: `key` is relative to where it was raised, prefixed on the way up."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"params.yaml `{key}`: {problem}; {fix}")

    def under(self, prefix: str) -> ParamsError:
        return ParamsError(f"{prefix}.{self.key}" if self.key else prefix, self.problem, self.fix)


def require(ok: bool, key: str, problem: str, fix: str) -> None:
    """Raise a ParamsError for `key` (relative to the dataclass being checked) unless `ok`."""
    if not ok:
        raise ParamsError(key, problem, fix)


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params file as a dict of sections; YAML errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError("", f"no params file at {path}", "run from the repository root")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)}); "
                         "fix the syntax there") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def from_section(cls: type[T], params: dict[str, Any], name: str) -> T:
    """Section `name` of `params` parsed into dataclass `cls` (the section must exist)."""
    if name not in params:
        raise ParamsError(name, "section is missing", f"add a `{name}:` section (the repository's "
                          "params.yaml lists every key with its default)")
    return parse(cls, params[name], name)


def parse(cls: type[T], raw: Any, key: str) -> T:
    """`raw` (a mapping) as dataclass `cls`; unknown keys, wrong types and failed checks raise
    a ParamsError naming `key.<field>`. Keys left out take the dataclass's defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(key, f"{raw!r} is not a mapping", f"write `{key.split('.')[-1]}:` "
                          "followed by indented `key: value` lines")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(f"{key}.{unknown[0]}", "unknown key", f"use one of {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(value, hints[name], f"{key}.{name}", _default(fields[name]))
    try:
        return cls(**values)
    except ParamsError as err:
        raise err.under(key) from None


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _example(key: str, default: Any) -> str:
    leaf = key.split(".")[-1]
    shown = "null" if default is None else yaml.safe_dump(default, default_flow_style=True).strip()
    return f"e.g. `{leaf}: {shown.removesuffix('...').strip()}`"


def _bad(key: str, value: Any, expected: str, default: Any) -> ParamsError:
    return ParamsError(key, f"{value!r} is not {expected}", _example(key, default))


def _coerce(value: Any, hint: Any, key: str, default: Any) -> Any:
    """`value` as type `hint`, or a ParamsError naming `key`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(value, option, key, default)
            except ParamsError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        if value in args:
            return value
        raise ParamsError(key, f"{value!r} is not one of {list(args)}", f"use one of {list(args)}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            # keys left out keep the enclosing default's values, not the nested class's own
            value = {**{f.name: getattr(default, f.name) for f in dataclasses.fields(default)
                        if f.init}, **value}
        return parse(hint, value, key)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _bad(key, value, "a list", default)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]", None) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad(key, value, "a mapping", default)
        inner = args[1] if args else Any
        return {str(k): _coerce(v, inner, f"{key}.{k}", None) for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _bad(key, value, "true or false", default)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return _in_range(value, key, default)
        raise _bad(key, value, "a whole number", default)
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return float(value)
        raise _bad(key, value, "a number", default)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _bad(key, value, "a string", default)
    raise TypeError(f"{key}: no parser for type {hint!r}")  # a library annotation, not user input


MAX_SEED = 2**63 - 1  # seeds are stored in int64 columns and fed to numpy, torch and random


def is_seed(key: str) -> bool:
    """A seed's key: `seed`, `<what>_seed`, or an item of a `seeds` list."""
    leaf = key.rsplit(".", 1)[-1]
    return leaf == "seed" or leaf.endswith("_seed") or bool(re.fullmatch(r"seeds\[\d+\]", leaf))


def _in_range(value: int, key: str, default: Any) -> int:
    """Every whole number in params.yaml is a count, a size, a length or a seed: none is
    negative, and a seed fits int64 (each dataclass adds its own lower bounds, e.g. >= 1)."""
    if is_seed(key) and not 0 <= value <= MAX_SEED:
        fix = (f"e.g. `{key.rsplit('.', 1)[-1].split('[')[0]}: [0, 1]`" if key.endswith("]")
               else _example(key, default if default is not None else 0))
        raise ParamsError(key, f"{value} is not a seed (a whole number in [0, 2^63 - 1])", fix)
    if value < 0:
        raise ParamsError(key, f"{value} is negative (counts, sizes and lengths are >= 0)",
                          _example(key, default))
    return value


# the project's own code: an error raised here is one of its checks, not a bug in a library
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("rlvr", "tasks", "flows")


def is_expected(err: BaseException) -> bool:
    """True for a failure of one of the project's own checks of its inputs: a ValueError
    (ParamsError, ModelError, GateFailed, ...) or FileNotFoundError raised by code of this
    project. The same types raised inside torch, pandas or Prefect are unexpected (a bug or an
    unchecked input): those keep their traceback."""
    if not isinstance(err, ValueError | FileNotFoundError):
        return False
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = Path(tb.tb_frame.f_code.co_filename).resolve()
    return (where.is_relative_to(PROJECT_ROOT)
            and where.relative_to(PROJECT_ROOT).parts[0] in PROJECT_PACKAGES)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn a failed check of the input (`is_expected`) into its message on stderr, exit 2.

    Used by every stage's `__main__`, so a wrong params value, input file, model or table ends
    the run with the library's message as its last line, without a traceback; any other
    exception propagates with its traceback (exit 1). The line is printed at exit, after
    whatever else registered an exit handler inside (atexit is last in, first out).
    """
    failed: list[str] = []  # the line, once something failed

    def report() -> None:
        for line in failed:  # sys.stderr looked up at exit (a test may have swapped it)
            print(line, file=sys.stderr, flush=True)

    atexit.register(report)  # now, before anything inside starts a server: so it runs last
    try:
        yield
    except (ValueError, FileNotFoundError) as err:
        if not is_expected(err):
            raise
        failed.append(f"error: {err}")
        sys.exit(2)


def run_main(main: Callable[[], Any]) -> None:
    """Call a stage's `main()` under `one_line_errors`."""
    with one_line_errors():
        main()
