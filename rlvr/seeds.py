"""Findings under several training seeds: one workspace per seed, and their spread.

Training on a CPU is chaotic: a model trained from another seed answers differently, and so do
the token statistics and the verdicts computed from its samples. A seed grid runs a workspace's
whole pipeline once per training seed. Seed k adds k to every training seed of the study
(`seed_keys`: the `seed` knob of the family's base sections and of `rl` and `sft` where the
family trains them), so seed 0 is the workspace itself and seed k > 0 a workspace of its own,
`seeds/seed_<k>/` inside it (git-ignored): its params.yaml is the workspace's own plus the
shifted seeds, with a generated dvc.yaml, a DVC project of its own (no git) and its `data/`.
Everything else (the prompts and split, the eval samples' random streams, the weighted grid's
own seeds) stays fixed, so the spread is what the training seeds cause.

`summarize_seeds` reads each seed's metrics and writes `seeds/summary.json` and
`seeds/summary.md` in the workspace: every model's held-out accuracy (and paired gain over the
base) per seed with mean, sd (ddof 1), min and max; every finding's verdict per seed and its
numbers per seed (the finding's text with each number that differs between seeds written as
`seed0/seed1/...`; only where the seeds ran the report).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from rlvr.config import PARAMS_FILE, ParamsError, parse
from rlvr.layout import DATA_ROOT, Layout
from rlvr.store.atomic import atomic_file, write_json
from rlvr.study import Study, load_study, merge
from rlvr.training.grpo import GRPOParams
from rlvr.training.lm import SFTParams
from rlvr.workspace import write_pipeline

SEEDS_DIR = "seeds"
# no git: a seed's folder lies inside the workspace's repository, which ignores it
DVC_CONFIG = "[core]\n    no_scm = true\n    analytics = false\n    check_update = false\n"


def _training_sections(study: Study) -> dict[str, type]:
    """The study's training sections that have a `seed` knob, by name: the family's base
    sections (the toy's `model` and `pretrain`), `rl` if it trains RL, `sft` if controls."""
    family = study.family
    sections = dict(family.base_sections) if family.build_base else {}
    if family.trains_rl:
        sections["rl"] = GRPOParams
    if family.controls:
        sections["sft"] = SFTParams
    return {name: cls for name, cls in sections.items()
            if "seed" in {f.name for f in dataclasses.fields(cls)}}


def seed_keys(study: Study) -> list[str]:
    """`section.seed` of every training section of the study (what a seed shifts)."""
    return [f"{name}.seed" for name in _training_sections(study)]


def seed_overrides(study: Study, k: int) -> dict[str, dict[str, int]]:
    """The params.yaml sections that make seed `k`: each training seed + k."""
    return {name: {"seed": parse(cls, study.raw(name), name).seed + k}
            for name, cls in _training_sections(study).items()}


def check_seeds(study: Study, seeds: Sequence[int]) -> None:
    """Stop unless the study trains something and `seeds` are distinct and >= 0."""
    if not seed_keys(study):
        raise ParamsError("family", f"the {study.family.name} family trains no model, so "
                          "there is no training seed to vary",
                          "run the seed grid on a family that trains (toy, smollm2); the "
                          "weighted grid has its own `weighted.seeds`")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"--seeds: need distinct seeds >= 0, got {list(seeds)}; e.g. 0 1 2")


def seed_dir(workspace: str | Path, k: int) -> Path:
    """Where seed `k` of `workspace` runs: the workspace itself for 0."""
    return Path(workspace) if k == 0 else Path(workspace) / SEEDS_DIR / f"seed_{k}"


def _init_dvc(ws: Path) -> None:
    """A DVC project without git (`no_scm`): DVC refuses a dvc.yaml that git ignores."""
    if (ws / ".dvc").is_dir():
        return
    dvc_bin = str(Path(sys.executable).parent / "dvc")
    proc = subprocess.run([dvc_bin, "init", "-q", "--no-scm"], cwd=ws, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise ValueError(f"`dvc init --no-scm` in {ws} failed: {proc.stderr.strip()[-300:]}")
    (ws / ".dvc" / "config").write_text(DVC_CONFIG)


def make_seed_workspace(workspace: str | Path, k: int) -> Path:
    """Write (or bring up to date) seed `k`'s workspace; returns its folder.

    Its params.yaml is rewritten from the workspace's own each time, so an edit there reaches
    every seed (DVC then reruns what it changed); its data/ is kept, so a rerun resumes.
    """
    workspace = Path(workspace)
    study = load_study(workspace / PARAMS_FILE)
    ws = seed_dir(workspace, k)
    if k == 0:
        return ws
    own = merge(study.own, seed_overrides(study, k))
    text = (f"# Seed {k} of ../../{PARAMS_FILE} (rlvr.seeds): the workspace's own params with "
            "every training seed + {k}.\n# Written by `python -m flows.seeds`: edit the "
            "workspace's params.yaml, not this file.\n").replace("{k}", str(k))
    text += yaml.safe_dump(own, sort_keys=False, width=100)
    ws.mkdir(parents=True, exist_ok=True)
    if not (ws / PARAMS_FILE).exists() or (ws / PARAMS_FILE).read_text() != text:
        with atomic_file(ws / PARAMS_FILE) as tmp:
            tmp.write_text(text)
    _init_dvc(ws)
    write_pipeline(ws)
    return ws


# ----------------------------------------------------------------------------- the summary
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """mean, sd (ddof 1; None for one value), min and max of `values`."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "sd": sd, "min": min(values), "max": max(values)}


def merge_texts(texts: Sequence[str]) -> str:
    """One text for the same sentence written by several seeds: numbers that differ become
    `a/b/c` (one per seed, in seed order). Sentences that differ in words are joined by ` | `."""
    parts = [_NUMBER.split(t) for t in texts]
    numbers = [_NUMBER.findall(t) for t in texts]
    if any(p != parts[0] for p in parts) or any(len(n) != len(numbers[0]) for n in numbers):
        return " | ".join(texts)
    out = parts[0][0]
    for i, words in enumerate(parts[0][1:]):
        column = [n[i] for n in numbers]
        out += (column[0] if len(set(column)) == 1 else "/".join(column)) + words
    return out


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def collect(workspace: str | Path, seeds: Sequence[int]) -> dict[str, Any]:
    """Every seed's headline numbers and verdicts, with their spread (see the module doc)."""
    per_seed = []
    for k in seeds:
        layout = Layout(seed_dir(workspace, k) / DATA_ROOT)
        models = _read(layout.metrics("models"))
        if models is None:
            raise FileNotFoundError(f"seed {k}: no {layout.metrics('models')}; run its pipeline "
                                    "first (python -m flows.seeds)")
        per_seed.append((models, _read(layout.metrics("findings")) or {}))
    names = [m for m in per_seed[0][0] if all(m in models for models, _ in per_seed)]
    accuracy = {m: {"values": [models[m]["accuracy"] for models, _ in per_seed],
                    **spread([models[m]["accuracy"] for models, _ in per_seed])} for m in names}
    gain = {m: {"values": [models[m]["gain_over_base"]["gain"] for models, _ in per_seed],
                **spread([models[m]["gain_over_base"]["gain"] for models, _ in per_seed])}
            for m in names if all("gain_over_base" in models[m] for models, _ in per_seed)}
    findings = {}
    for key in dict.fromkeys(k for _, f in per_seed for k in f):  # without a report: none
        rows = [f.get(key, {"reproduces": "not run", "this_run": "no report"})
                for _, f in per_seed]
        verdicts = [r["reproduces"] for r in rows]
        modal = max(dict.fromkeys(verdicts), key=verdicts.count)
        findings[key] = {"verdicts": verdicts, "agree": verdicts.count(modal) / len(verdicts),
                         "modal": modal, "this_run": merge_texts([r["this_run"] for r in rows])}
    return {"seeds": list(seeds), "accuracy": accuracy, "gain_over_base": gain,
            "findings": findings}


def _pct(s: dict) -> str:
    sd = "" if s["sd"] is None else f" ± {100 * s['sd']:.1f}"
    return f"{100 * s['mean']:.1f}{sd} [{100 * s['min']:.1f}, {100 * s['max']:.1f}]"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as two markdown tables (accuracies; findings)."""
    seeds = summary["seeds"]
    lines = [f"Seeds {', '.join(map(str, seeds))} (every training seed + k).", "",
             "| model | accuracy % per seed | mean ± sd [min, max] | gain over base, points |",
             "|---|---|---|---|"]
    for m, s in summary["accuracy"].items():
        gain = summary["gain_over_base"].get(m)
        lines.append(f"| {m} | {' / '.join(f'{100 * v:.1f}' for v in s['values'])} | {_pct(s)} "
                     f"| {_pct(gain) if gain else ''} |")
    lines += ["", "| finding | verdict per seed | this run, per seed |", "|---|---|---|"]
    for key, f in summary["findings"].items():
        lines.append(f"| {key} | {' / '.join(f['verdicts'])} | {f['this_run']} |")
    return "\n".join(lines) + "\n"


def summarize_seeds(workspace: str | Path, seeds: Sequence[int],
                    seconds: dict[int, float] | None = None) -> dict[str, Any]:
    """Collect the seeds (`collect`) into `seeds/summary.json` and `seeds/summary.md`."""
    summary = collect(workspace, seeds)
    if seconds:
        summary["wall_seconds"] = {str(k): round(v, 1) for k, v in seconds.items()}
    out = Path(workspace) / SEEDS_DIR
    out.mkdir(parents=True, exist_ok=True)
    write_json(summary, out / "summary.json")
    with atomic_file(out / "summary.md") as tmp:
        tmp.write_text(summary_markdown(summary))
    return summary
