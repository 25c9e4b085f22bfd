"""Rewrite the code deps of every dvc.yaml stage from its flow's imports (`rlvr.dvc.code_deps`).

Usage: python scripts/write_dvc_deps.py [--check]   (--check: exit 1 if dvc.yaml is stale)
Data deps, params, outs and comments are left as they are.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from rlvr.dvc import code_deps, read_stages, stage_module

CODE_LINE = re.compile(r"^(\s+)- (flows|tasks|rlvr|sql)/\S*\s*$")


def rewrite(text: str, stages: dict) -> str:
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
                out += [f"{indent}- {dep}" for dep in code_deps(module)]
                pending = []
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> int:
    target = Path("dvc.yaml")
    text = rewrite(target.read_text(), read_stages(target))
    if "--check" in sys.argv:
        fresh = text == target.read_text()
        print("dvc.yaml code deps are up to date" if fresh else
              "dvc.yaml code deps are stale: run `python scripts/write_dvc_deps.py`")
        return 0 if fresh else 1
    target.write_text(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
