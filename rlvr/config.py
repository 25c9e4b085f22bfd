"""Typed, validated views of `params.yaml`: one frozen dataclass per section.

Every check raises `ValueError` naming the `params.yaml` key and what to change, so a bad value
stops a run before any work is done. Stages read only their own sections.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

PARAMS_FILE = Path("params.yaml")


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params file as a dict (the flows pick their sections from it)."""
    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def require(ok: bool, key: str, problem: str, fix: str) -> None:
    """Raise a ValueError that names the params.yaml key, the problem and the fix."""
    if not ok:
        raise ValueError(f"params.yaml `{key}`: {problem}; {fix}")


def from_section(cls: type[T], params: dict[str, Any], name: str) -> T:
    """Build dataclass `cls` from section `name`; unknown keys are errors, missing use defaults."""
    raw = params.get(name) or {}
    require(isinstance(raw, dict), name, "must be a mapping", f"write `{name}:` as a section")
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - fields)
    require(
        not unknown,
        f"{name}.{unknown[0] if unknown else ''}",
        "unknown key",
        f"use one of {sorted(fields)}",
    )
    return cls(**raw)


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """`task`: the synthetic problem set, its split, and the pretraining corpus styles."""

    seed: int = 0
    n_train: int = 6000
    n_eval: int = 256
    min_digits: int = 3
    max_digits: int = 5
    p_chain: float = 0.5
    slip_chain: float = 0.03
    slip_pairs: float = 0.08
    slip_pairs_total: float = 0.3
    p_bad_format: float = 0.3
    eval_prompts: str = (
        ""  # optional path of a user eval-prompt file (overlap with train is checked)
    )

    def __post_init__(self) -> None:
        require(
            self.n_train > 0 and self.n_eval > 0,
            "task.n_train/n_eval",
            "must be positive",
            "set both to at least 1",
        )
        require(
            1 <= self.min_digits <= self.max_digits <= 9,
            "task.min_digits/max_digits",
            f"need 1 <= min <= max <= 9, got {self.min_digits}..{self.max_digits}",
            "pick a digit range inside 1..9",
        )
        for key in ("p_chain", "slip_chain", "slip_pairs", "slip_pairs_total", "p_bad_format"):
            value = getattr(self, key)
            require(
                0.0 <= value <= 1.0,
                f"task.{key}",
                f"is a probability, got {value}",
                "use a value in [0, 1]",
            )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """`model`: the toy decoder's shape (see `rlvr.models.loading.ModelShape`) and init seed."""

    architecture: str = "llama"
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 2
    intermediate_size: int = 256
    max_length: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        require(
            self.architecture in ("llama", "qwen2"),
            "model.architecture",
            f"unknown architecture {self.architecture!r}",
            "use `llama` or `qwen2`",
        )
        require(
            self.hidden_size % self.num_heads == 0,
            "model.hidden_size",
            f"{self.hidden_size} is not divisible by num_heads={self.num_heads}",
            "make hidden_size a multiple of num_heads",
        )
        for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length"):
            require(
                getattr(self, key) > 0, f"model.{key}", "must be positive", "use an integer >= 1"
            )


# --- models (issue 8): which checkpoint each model name loads, and how ---------------------------

DTYPES = ("fp32", "bf16", "fp16")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model name resolved: where its checkpoint is and how to load it."""

    name: str
    path: str  # local Hugging Face directory, or a hub id for users with network access
    dtype: str = "fp32"  # weights and forward: fp32 | bf16 | fp16 (divergence math stays fp32)
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", ...
    max_prompt_tokens: int = 0  # longer prompts are an error; 0 = no limit
    max_model_len: int = 0  # prompt + response tokens; 0 = the model config's own limit
    trust_remote_code: bool = False  # run Python shipped in the model directory (opt in only)
    key: str = "models"  # the params.yaml key this spec came from, for error messages

    def __post_init__(self) -> None:
        require(bool(self.path), f"{self.key}.path", "is empty",
                "give a model directory (or hub id)")
        require(self.dtype in DTYPES, f"{self.key}.dtype", f"unknown dtype {self.dtype!r}",
                f"use one of {list(DTYPES)}")
        require(self.device == "cpu" or self.device.startswith(("cuda", "mps", "xpu")),
                f"{self.key}.device", f"unknown device {self.device!r}", "use cpu or cuda[:N]")
        for field in ("max_prompt_tokens", "max_model_len"):
            require(getattr(self, field) >= 0, f"{self.key}.{field}", "must be >= 0",
                    "use 0 for no limit")
        require(isinstance(self.trust_remote_code, bool), f"{self.key}.trust_remote_code",
                "must be true or false", "write `trust_remote_code: true` to opt in")


_SPEC_FIELDS = ("path", "dtype", "device", "max_prompt_tokens", "max_model_len",
                "trust_remote_code")


@dataclasses.dataclass(frozen=True)
class ModelsConfig:
    """`models`: defaults for every model, and per-name overrides under `named`.

    A name without an entry (or without a `path`) loads from `<root>/<name>`: the toy family
    (`base`, `rl`, `sft`, ...) needs no entry. `named.<name>` may set any of `path`, `dtype`,
    `device`, `max_prompt_tokens`, `max_model_len`, `trust_remote_code`.
    """

    root: str = "data/models"
    dtype: str = "fp32"
    device: str = "cpu"
    max_prompt_tokens: int = 0
    max_model_len: int = 0
    trust_remote_code: bool = False
    named: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        require(isinstance(self.named, dict), "models.named", "must be a mapping",
                "write `named: {base: {path: ...}}`")
        for name, entry in self.named.items():
            require(isinstance(entry, dict), f"models.named.{name}", "must be a mapping",
                    f"write `{name}: {{path: /dir/of/model}}`")
            unknown = sorted(set(entry) - set(_SPEC_FIELDS))
            require(not unknown, f"models.named.{name}.{unknown[0] if unknown else ''}",
                    "unknown key", f"use one of {list(_SPEC_FIELDS)}")
        for name in (*self.named, "__defaults__"):
            self.spec(name)  # validate every entry (and the defaults) now, not mid-run

    def spec(self, name: str) -> ModelSpec:
        """The resolved spec of model `name` (defaults, then its `named` overrides)."""
        entry = self.named.get(name, {})
        values = {f: getattr(self, f) for f in _SPEC_FIELDS if f != "path"}
        values.update(entry)
        values.setdefault("path", str(Path(self.root) / name))
        key = f"models.named.{name}" if name in self.named else "models"
        return ModelSpec(name=name, key=key, **values)


# --- weighted (issue 6): the divergence-weighted advantage grid ---------------------------------

WEIGHTED_DIVERGENCES = ("none", "k3_old", "js_base", "delta_base")  # none = the plain baseline


@dataclasses.dataclass(frozen=True)
class WeightedConfig:
    """`weighted`: variants x seeds of GRPO/DAPO from the base model (`rlvr.weighted.grid`).

    `variants` maps a name to `{divergence, alpha}`; α > 0 boosts high-divergence tokens,
    α < 0 low-divergence ones, and `baseline` (divergence `none`) is the unweighted trainer.
    All variants share `s` and every training/eval knob below (equal compute).
    """

    base_model: str = "data/models/base"
    task_dir: str = "data/task"  # train.parquet / eval.parquet from the prepare stage
    out_dir: str = "data/weighted"
    metrics_file: str = "data/metrics/weighted.json"
    plots_dir: str = "data/plots"
    variants: dict[str, dict[str, Any]] = dataclasses.field(
        default_factory=lambda: {"baseline": {"divergence": "none"}})
    s: float = 1.0  # weights lie in (1 - s/2, 1 + s/2)
    seeds: int = 3  # seeds 0..seeds-1 for every variant
    steps: int = 12
    eval_every: int = 4  # eval at step 0, every eval_every steps and at the last step
    prompts_per_step: int = 8
    group_size: int = 4
    max_new_tokens: int = 24
    lr: float = 1e-3
    minibatches: int = 2  # > 1, else pi_theta = pi_old in every minibatch and k3_old is 0
    epochs: int = 1
    clip_low: float = 0.2
    clip_high: float = 0.28
    eval_prompts: int = 64  # the first eval_prompts problems of the eval split
    eval_samples: int = 2  # n of mean@n
    eval_seed: int = 1234  # sampling streams of every evaluation (shared by all runs)
    workers: int = 1  # runs in flight at once (threads); 1 on a 2-core machine
    torch_threads: int = 1  # intra-op threads; >1 spins badly when the cores are oversubscribed

    def __post_init__(self) -> None:
        require(isinstance(self.variants, dict) and "baseline" in self.variants,
                "weighted.variants", "needs a `baseline` entry",
                "add `baseline: {divergence: none}`")
        for name, entry in self.variants.items():
            key = f"weighted.variants.{name}"
            require(name.replace("_", "").isalnum() and name.islower(), key,
                    "is not a lowercase [a-z0-9_] name", "rename it (it names a directory)")
            require(isinstance(entry, dict) and set(entry) <= {"divergence", "alpha"}, key,
                    "must be a mapping with keys divergence and alpha",
                    "write `{divergence: k3_old, alpha: 200}`")
            div = entry.get("divergence")
            require(div in WEIGHTED_DIVERGENCES, f"{key}.divergence", f"unknown {div!r}",
                    f"use one of {list(WEIGHTED_DIVERGENCES)}")
            require((div == "none") == (name == "baseline"), f"{key}.divergence",
                    "only `baseline` may (and must) use divergence none",
                    "give weighted variants a divergence")
            require(isinstance(entry.get("alpha", 0.0), int | float), f"{key}.alpha",
                    "must be a number", "use a signed float (> 0 boosts high divergence)")
        require(0.0 <= self.s < 2.0, "weighted.s", f"{self.s} is outside [0, 2)",
                "use 0 <= s < 2 so that weights stay positive")
        for key in ("seeds", "steps", "eval_every", "prompts_per_step", "group_size",
                    "max_new_tokens", "minibatches", "epochs", "eval_prompts", "eval_samples",
                    "workers", "torch_threads"):
            require(getattr(self, key) >= 1, f"weighted.{key}", "must be >= 1",
                    "use a positive integer")
        require(self.group_size >= 2, "weighted.group_size", "must be >= 2",
                "groups of one response have no advantage")


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """`backend`: which engine the sample stage generates with (see `rlvr.generation.backends`)."""

    name: str = "hf"  # hf (default, CPU or GPU) | vllm (its own env: scripts/install_vllm.sh)
    batch_size: int = 64  # hf: rows per KV-cached batch
    vllm_python: str = ".venv-vllm/bin/python"
    vllm_kv_cache_gb: int = 1  # vllm on CPU: KV cache GiB (VLLM_CPU_KVCACHE_SPACE, an integer)
    vllm_gpu_memory_utilization: float = 0.85  # vllm on GPU

    def __post_init__(self) -> None:
        require(self.name in ("hf", "vllm"), "backend.name", f"unknown backend {self.name!r}",
                "use `hf` or `vllm`")
        require(self.batch_size >= 1, "backend.batch_size", "must be >= 1", "use e.g. 64")
        require(isinstance(self.vllm_kv_cache_gb, int) and self.vllm_kv_cache_gb > 0,
                "backend.vllm_kv_cache_gb", "must be a whole number of GiB >= 1", "use e.g. 1")
        require(0 < self.vllm_gpu_memory_utilization <= 1, "backend.vllm_gpu_memory_utilization",
                "must be in (0, 1]", "use e.g. 0.85")


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """`report`: the HTML report (`rlvr.report.page`): token viewer size and figure resolution."""

    data_dir: str = "data"  # root the inputs are read from
    out_dir: str = "data/report"  # index.html is written here (models: the `models` section)
    responses_per_group: int = 2  # viewer: per (pair, generator, correct/incorrect)
    viewer_pairs: tuple[str, ...] = ()  # viewer: pairs shown (`<base>__<tuned>`); empty = all
    top_k: int = 5  # viewer: candidates per model on hover
    dpi: int = 90

    def __post_init__(self) -> None:
        object.__setattr__(self, "viewer_pairs", tuple(self.viewer_pairs or ()))
        require(self.responses_per_group >= 0, "report.responses_per_group", "must be >= 0",
                "use e.g. 2 (0 hides the token viewer's responses)")
        require(self.top_k >= 1, "report.top_k", "must be >= 1", "use e.g. 5")
        require(40 <= self.dpi <= 300, "report.dpi", f"{self.dpi} is outside [40, 300]",
                "use e.g. 90")
        for pair in self.viewer_pairs:
            require("__" in pair, "report.viewer_pairs", f"{pair!r} is not `<base>__<tuned>`",
                    "name pairs like base__rl")


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """`runner`: where sharded tasks (sampling, scoring) run; results do not depend on it.

    `thread` runs shards on a local thread pool; `dask`/`ray` start a local cluster with
    `n_workers` processes, or connect to an existing one when `address` is set (for example
    `tcp://10.0.0.5:8786` for a Dask scheduler, `ray://10.0.0.5:10001` or `auto` for Ray).
    """

    kind: str = "thread"
    address: str = ""
    n_workers: int = 2

    def __post_init__(self) -> None:
        require(self.kind in ("thread", "dask", "ray"), "runner.kind",
                f"unknown task runner {self.kind!r}", "use `thread`, `dask` or `ray`")
        require(self.n_workers >= 1, "runner.n_workers", f"must be >= 1, got {self.n_workers}",
                "use the number of worker processes (or threads) to start")
        require(not (self.kind == "thread" and self.address), "runner.address",
                "is only used by `dask` and `ray`", "clear it or set runner.kind")


@dataclasses.dataclass(frozen=True)
class AnalyzeConfig:
    """`analyze`: the study's analyses over the token table (sql/agg_*.sql parameters)."""

    thresholds: list[float] = dataclasses.field(
        default_factory=lambda: [0.001, 0.01, 0.05, 0.1, 0.2, 0.3])  # js sparsity sweep
    tau: float = 0.1  # js above this is "divergent" (the study's reallocation cut)
    quantiles: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.9, 0.95, 0.99])
    hist_min: float = 1e-6  # js histogram: lowest log bin edge (zeros land in the lowest bin)
    hist_bins_per_decade: int = 4
    entropy_edges: list[float] = dataclasses.field(
        default_factory=lambda: [0.0, 0.1, 0.3, 0.6, 1.0, 1.5, 2.0, 3.0])  # fixed bins, nats
    n_entropy_bins: int = 10  # equal-count entropy bins
    high_entropy_quantile: float = 0.8  # "high entropy" = top 20% (forking-token convention)
    n_position_bins: int = 10  # normalised position bins
    n_edge_positions: int = 8  # first/last N absolute positions
    low_prob: float = 0.01  # "base probability below" cut for the tuned top-1 token
    max_rank: int = 10  # rank histogram: ranks above this share one bucket
    min_token_count: int = 20  # token identity: occurrences a token needs to be ranked
    top_tokens: int = 20
    final_pair: str = "base__rl"  # checkpoint evolution compares every checkpoint to this pair
    decisive_roles: list[str] = dataclasses.field(
        default_factory=lambda: ["method", "intermediate", "format", "final_answer"])

    def __post_init__(self) -> None:
        ln2 = 0.6931471805599453
        require(bool(self.thresholds) and all(0 < t < ln2 for t in self.thresholds),
                "analyze.thresholds", f"need a non-empty list in (0, ln 2), got {self.thresholds}",
                "list js cuts such as [0.001, 0.01, 0.1]")
        require(0 < self.tau < ln2 and any(abs(t - self.tau) < 1e-12 for t in self.thresholds),
                "analyze.tau", f"{self.tau} must be in (0, ln 2) and one of analyze.thresholds",
                "add tau to the thresholds sweep")
        require(all(0 <= q <= 1 for q in [*self.quantiles, self.high_entropy_quantile]),
                "analyze.quantiles/high_entropy_quantile", "quantiles must lie in [0, 1]",
                "use e.g. [0.5, 0.9, 0.95, 0.99] and 0.8")
        edges = self.entropy_edges
        require(len(edges) >= 2 and all(a < b for a, b in zip(edges, edges[1:], strict=False)),
                "analyze.entropy_edges", f"need >= 2 increasing edges, got {edges}",
                "use e.g. [0.0, 0.1, 0.5, 1.0, 2.0]")
        for key in ("hist_bins_per_decade", "n_entropy_bins", "n_position_bins",
                    "n_edge_positions", "max_rank", "min_token_count", "top_tokens"):
            require(getattr(self, key) >= 1, f"analyze.{key}", "must be >= 1", "use e.g. 10")
        require(0 < self.hist_min < ln2 and 0 < self.low_prob < 1, "analyze.hist_min/low_prob",
                "must lie in (0, ln 2) and (0, 1)", "use e.g. 1e-6 and 0.01")
        require("__" in self.final_pair, "analyze.final_pair",
                f"{self.final_pair!r} is not `<base>__<tuned>`", "use e.g. base__rl")
        require(bool(self.decisive_roles), "analyze.decisive_roles", "is empty",
                "list the roles that decide correctness")

    def sql_params(self) -> dict[str, object]:
        """The `$parameters` of the sql/agg_* files."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CrossSampleConfig:
    """`cross_sample`: the budgeted cross-sampling sweep (rlvr/crosssample.py, crosssweep.py)."""

    models_dir: str = "data/models"
    base_model: str = "base"  # forward: primary base, intervention tuned; backward: swapped
    tuned_model: str = "rl"
    prompts: str = "data/task/eval.parquet"
    n_prompts: int = 64  # the first N prompts of the file
    samples_per_prompt: int = 4
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1])
    directions: list[str] = dataclasses.field(default_factory=lambda: ["forward", "backward"])
    # thresholds per rule; js >= ln 2 never switches and js < 0 always does (the baselines)
    rules: dict[str, list[float]] = dataclasses.field(default_factory=lambda: {
        "js": [1.0, 0.3, 0.1, 0.03, 0.01, -1.0], "entropy": [1.0, 0.3], "delta": [1.0, 0.3]})
    match_random: bool = True  # add random-rule cells at each js threshold's pooled budget
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 32
    batch_size: int = 256
    torch_threads: int = 1  # per task; tiny models run fastest single-threaded
    max_parallel: int = 2  # cells decoded at once (threads)
    n_bootstrap: int = 1000
    alpha: float = 0.05
    bootstrap_seed: int = 0
    out_dir: str = "data/cross"
    plot_csv: str = "data/plots/cross_accuracy_by_budget.csv"
    metrics_json: str = "data/metrics/cross.json"

    def __post_init__(self) -> None:
        for key in ("n_prompts", "samples_per_prompt", "max_new_tokens", "batch_size",
                    "torch_threads", "max_parallel", "n_bootstrap"):
            require(getattr(self, key) >= 1, f"cross_sample.{key}", "must be >= 1",
                    "use a positive integer")
        require(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds),
                "cross_sample.seeds", f"need distinct seeds, got {self.seeds}", "list e.g. [0, 1]")
        require(bool(self.directions) and set(self.directions) <= {"forward", "backward"},
                "cross_sample.directions", f"got {self.directions}",
                "use a subset of [forward, backward]")
        require(self.base_model != self.tuned_model, "cross_sample.base_model/tuned_model",
                "name the same model", "pick two different models under models_dir")
        known = {"js", "entropy", "delta", "random"}
        require(isinstance(self.rules, dict) and set(self.rules) <= known, "cross_sample.rules",
                f"unknown rule(s) {sorted(set(self.rules) - known)}",
                f"use keys of {sorted(known)}")
        js = self.rules.get("js", [])
        require(any(t >= 0.6931471805599453 for t in js) and any(t < 0 for t in js),
                "cross_sample.rules.js", "needs the two baselines", "keep 1.0 (never switch) "
                "and -1.0 (always switch) in the js thresholds")
        require(all(0 <= r <= 1 for r in self.rules.get("random", [])),
                "cross_sample.rules.random", "random thresholds are rates", "use values in [0, 1]")
        require(0 < self.temperature and 0 < self.top_p <= 1, "cross_sample.temperature/top_p",
                "need temperature > 0 and top_p in (0, 1]", "use e.g. 1.0 and 1.0")
        require(0 < self.alpha < 1, "cross_sample.alpha", "must be in (0, 1)", "use 0.05")


# --- family (issue 2): pretrain, rl, sft, evaluate ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """`pretrain`: next-token training of the base model on the task corpus (`rlvr.training.lm`)."""

    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    corpus_copies: int = 4  # corpus responses per train problem (fresh styles/slips per copy)
    seed: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "corpus_copies", "log_every"):
            require(getattr(self, key) >= 1, f"pretrain.{key}", "must be >= 1",
                    "use a positive integer")
        require(self.lr > 0, "pretrain.lr", f"must be positive, got {self.lr}", "use e.g. 3e-3")
        require(0 <= self.warmup_steps < self.steps, "pretrain.warmup_steps",
                f"must be in [0, steps={self.steps})", "use a small fraction of steps")
        require(self.weight_decay >= 0, "pretrain.weight_decay", "must be >= 0", "use 0 or 0.01")


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """`rl`: GRPO/DAPO from the base model (`GRPOParams` plus the stage's choices)."""

    steps: int = 100
    prompts_per_step: int = 32
    group_size: int = 8
    max_new_tokens: int = 24
    lr: float = 3e-4
    weight_decay: float = 0.0
    clip_low: float = 0.2
    clip_high: float = 0.28
    kl_coef: float = 0.0
    minibatches: int = 2
    epochs: int = 1
    dynamic_sampling: bool = True
    grad_clip: float = 1.0
    save_every: int = 25
    seed: int = 0
    track_kl: bool = True  # keep a frozen base copy to log KL to base (costs one more forward)

    def __post_init__(self) -> None:
        require(self.group_size >= 2, "rl.group_size", f"must be >= 2, got {self.group_size}",
                "group-normalised advantages need at least 2 samples per prompt; use e.g. 8")
        for key in ("steps", "prompts_per_step", "max_new_tokens", "minibatches", "epochs",
                    "save_every"):
            require(getattr(self, key) >= 1, f"rl.{key}", "must be >= 1", "use a positive integer")
        require(self.lr > 0, "rl.lr", f"must be positive, got {self.lr}", "use e.g. 1e-3")
        require(0 <= self.clip_low < 1, "rl.clip_low", f"must be in [0, 1), got {self.clip_low}",
                "use 0.2")
        require(self.clip_high >= 0, "rl.clip_high", f"must be >= 0, got {self.clip_high}",
                "use 0.28 (clip-higher) or 0.2")
        require(self.kl_coef >= 0, "rl.kl_coef", f"must be >= 0, got {self.kl_coef}",
                "use 0 (DAPO) or a small value like 0.01")
        require(self.weight_decay >= 0, "rl.weight_decay", "must be >= 0", "use 0")
        require(self.grad_clip > 0, "rl.grad_clip", "must be positive", "use 1.0")
        require(self.minibatches <= self.prompts_per_step * self.group_size, "rl.minibatches",
                "more minibatches than rollouts per step", "lower minibatches")


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    """`sft`: the controls, `sft` on reference solutions and `rft` on the base's correct samples."""

    steps: int = 200  # keep equal to rl.steps x rl.minibatches x rl.epochs (comparable updates)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    rft_prompts: int = 1024  # train prompts sampled from the base for RFT
    rft_samples: int = 4  # samples per prompt (temperature 1); the correct ones are kept
    max_new_tokens: int = 24
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "rft_prompts", "rft_samples", "max_new_tokens"):
            require(getattr(self, key) >= 1, f"sft.{key}", "must be >= 1", "use a positive integer")
        require(self.lr > 0, "sft.lr", f"must be positive, got {self.lr}", "use e.g. 1e-3")
        require(self.weight_decay >= 0, "sft.weight_decay", "must be >= 0", "use 0")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """`evaluate`: held-out accuracy of every family model (`rlvr.training.evaluation`)."""

    models: list[str] = dataclasses.field(default_factory=lambda: ["base", "rl", "sft", "rft"])
    n_samples: int = 8  # samples per eval prompt, temperature 1
    max_new_tokens: int = 24
    seed: int = 0
    checkpoints: bool = True  # also evaluate data/models/rl_steps/* into a plot of accuracy vs step

    def __post_init__(self) -> None:
        require(isinstance(self.models, list) and len(self.models) > 0, "evaluate.models",
                "must be a non-empty list", "use e.g. [base, rl, sft, rft]")
        require(self.n_samples >= 1, "evaluate.n_samples", "must be >= 1", "use e.g. 8")
        require(self.max_new_tokens >= 1, "evaluate.max_new_tokens", "must be >= 1", "use 24")


# --- sample / score (issue 3): sampling and exact cross-model scoring ---------------------------


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """`sample`: which models answer which prompts, and how responses are drawn."""

    models: list[str] = dataclasses.field(default_factory=lambda: ["base", "rl", "sft", "rft"])
    checkpoints: bool = True  # also every RL checkpoint under checkpoints_dir (rl_step_<N>)
    checkpoints_dir: str = "data/models/rl_steps"
    prompts: str = "data/task/eval.parquet"  # built-in eval split, or a JSONL/parquet user file
    grader: str = "toy"  # rlvr.testbed.graders.GRADERS: toy | math
    n_per_prompt: int = 8
    temperature: float = 1.0
    top_p: float = 1.0  # the study sampled with 0.7
    max_new_tokens: int = 24
    seed: int = 0
    shard_size: int = 64  # prompts per shard: one task and one part file per (model, shard)

    def __post_init__(self) -> None:
        require(bool(self.models) and len(set(self.models)) == len(self.models), "sample.models",
                "must be a non-empty list of distinct model names", "e.g. [base, rl]")
        for key in ("n_per_prompt", "max_new_tokens", "shard_size"):
            require(getattr(self, key) >= 1, f"sample.{key}", "must be >= 1",
                    "use a positive integer")
        require(self.temperature >= 0, "sample.temperature", "must be >= 0", "use e.g. 1.0")
        require(0 < self.top_p <= 1, "sample.top_p", "must be in (0, 1]", "use e.g. 1.0 or 0.7")


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """`score`: which (base, tuned) pairs to score and the chunk sizes that bound memory."""

    base: str = "base"
    tuned: list[str] = dataclasses.field(default_factory=lambda: ["rl", "sft", "rft"])
    checkpoints: bool = True  # also pair the base with every RL checkpoint
    checkpoints_dir: str = "data/models/rl_steps"
    label_roles: bool = True  # the toy task's token roles; turn off for user data
    vocab_chunk: int = 262144
    block_entries: int | None = None  # None: 2**20 on a CPU, 2**26 on a GPU
    time_chunk: int = 512
    batch_tokens: int = 16384
    js_top_p: float = 0.7
    top_p_candidates: int = 128

    def __post_init__(self) -> None:
        require(bool(self.tuned) and self.base not in self.tuned, "score.tuned",
                "must be a non-empty list without the base model", "e.g. [rl, sft]")
        for key in ("vocab_chunk", "time_chunk", "batch_tokens"):
            require(getattr(self, key) >= 1, f"score.{key}", "must be >= 1",
                    "use a positive integer")
        require(self.vocab_chunk <= 2**24, "score.vocab_chunk", "must be <= 16777216 (ranks are "
                "counted in float32)", "use e.g. 262144")
        require(self.block_entries is None or self.block_entries >= 1, "score.block_entries",
                "must be null or >= 1", "use null (automatic) or e.g. 1048576")
        require(0 < self.js_top_p <= 1, "score.js_top_p", "must be in (0, 1]", "use e.g. 0.7")
        require(self.top_p_candidates >= 5, "score.top_p_candidates", "must be >= 5",
                "use e.g. 64")
