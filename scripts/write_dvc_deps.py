"""Rewrite the code deps of every dvc.yaml stage from its flow's imports (`rlvr.dvc.code_deps`).

Usage: python scripts/write_dvc_deps.py [--check]   (--check: exit 1 if a dvc.yaml is stale)
Both pipelines: dvc.yaml (the toy) and real/dvc.yaml (the real pair, whose stages run in
real/, so its code deps start with `../`). Data deps, params, outs and comments are kept.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from rlvr.dvc import code_deps, read_stages, stage_module

CODE_LINE = re.compile(r"^(\s+)- (?:\.\./)?(flows|tasks|rlvr|sql)/\S*\s*$")
PIPELINES = {Path("dvc.yaml"): "", Path("real/dvc.yaml"): "../"}  # file -> prefix of code deps


def rewrite(text: str, stages: dict, prefix: str = "") -> str:
    out, stage, indent, pending = [], None, "", []
    for line in text.splitlines():
        head = re.match(r"^  (\w+):", line)
        if head and head.group(1) in stages:
            stage, pending = head.group(1), None
        match = CODE_LINE.match(line)
        if match and stage is not None:
            if pending is None:  # first code line of this stage: write the computed list here
                indent = match.group(1)
                module = stage_module(stages[stage].get("do", stages[stage])["cmd"])
                out += [f"{indent}- {prefix}{dep}" for dep in code_deps(module)]
                pending = []
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> int:
    stale = []
    for target, prefix in PIPELINES.items():
        text = rewrite(target.read_text(), read_stages(target), prefix)
        if text == target.read_text():
            continue
        stale.append(target)
        if "--check" not in sys.argv:
            target.write_text(text)
            print(f"wrote {target}")
    if "--check" in sys.argv:
        print(f"{', '.join(map(str, stale))}: code deps are stale: run `python "
              "scripts/write_dvc_deps.py`" if stale else "dvc.yaml code deps are up to date")
        return 1 if stale else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
