"""What a stage run shows in the Prefect UI, as plain data: headline numbers and its outputs.

`metric_rows` turns a stage's metrics JSON (or, for stages without one, the summary its flow
returns) into `metric | value` rows for a table artifact; `outputs_markdown` lists the DVC
outputs it wrote and links the report; `run_markdown` sums up a `reproduce` run from DVC's
output. tasks/results.py publishes them; nothing here imports Prefect.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MAX_ROWS = 200  # a table artifact is for reading: the full numbers stay in the metrics file


def artifact_key(stage: str, what: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes): `weighted-run-baseline-metrics`."""
    return f"{re.sub('[^a-z0-9]+', '-', stage.lower()).strip('-')}-{what}"


def metric_rows(tree: Any, prefix: str = "") -> list[dict[str, Any]]:
    """Every number, string or bool leaf of `tree` as {"metric": "a.b.0.c", "value": leaf}.

    Floats keep 4 significant digits; rows past MAX_ROWS are cut, with a last row saying so.
    """
    rows: list[dict[str, Any]] = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, dict | list | tuple):
            rows += metric_rows(value, f"{name}.")
        elif isinstance(value, float):
            rows.append({"metric": name, "value": float(f"{value:.4g}")})
        elif isinstance(value, int | str | bool):
            rows.append({"metric": name, "value": value})
    if not prefix and len(rows) > MAX_ROWS:
        rows = rows[:MAX_ROWS] + [{"metric": f"({len(rows) - MAX_ROWS} more)", "value": ""}]
    return rows


def _size(path: Path) -> str:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    scale, unit = next(((s, u) for s, u in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")) if total >= s),
                       (1, "B"))
    amount = f"{total / scale:.3g} {unit}"
    return amount if path.is_file() else f"{amount} in {len(files)} files"


def _link(path: Path) -> str:
    return f"[{path}]({path.resolve().as_uri()})"


def outputs_markdown(stage: str, outputs: dict[str, list[str]], report: Path) -> str:
    """A markdown list of the stage's DVC outputs (path, kind, size) and a link to the report."""
    lines = [f"### `{stage}`: outputs", "", "| output | kind | size |", "|---|---|---|"]
    for kind, paths in outputs.items():
        for raw in paths:
            path = Path(raw)
            size = _size(path) if path.exists() else "not written"
            lines.append(f"| {_link(path)} | {kind} | {size} |")
    if not outputs:
        lines.append("| (not a dvc.yaml stage: nothing recorded) | | |")
    state = "" if report.exists() else " (not built yet: `dvc repro report`)"
    lines += ["", f"Report: {_link(report)}{state}", "",
              f"Versioned by DVC: `dvc status {stage}`, `dvc metrics show`, `dvc exp show`."]
    return "\n".join(lines)


def run_markdown(command: list[str], lines: list[str], report: Path) -> str:
    """A `reproduce` run in a few lines: the command, the stages DVC ran and skipped, the report."""
    ran = re.findall(r"Running stage '([^']+)'", "\n".join(lines))
    skipped = re.findall(r"Stage '([^']+)' didn't change, skipping", "\n".join(lines))
    state = "" if report.exists() else " (not built)"
    return "\n".join([
        f"### `{' '.join(command)}`", "",
        f"**Ran** ({len(ran)}): {', '.join(f'`{s}`' for s in ran) or 'nothing'}", "",
        f"**Up to date** ({len(skipped)}): {', '.join(f'`{s}`' for s in skipped) or 'none'}", "",
        f"Each stage that ran is a subflow run of this run, with its own artifacts. "
        f"Report: {_link(report)}{state}",
    ])
