"""Write prefect.yaml from dvc.yaml and params.yaml; run it from the repo root after adding a stage.

Usage: python scripts/write_prefect_yaml.py [--check]   (--check: exit 1 if prefect.yaml is stale)
"""

from __future__ import annotations

import sys
from pathlib import Path

from rlvr.config import load_params
from rlvr.dvc import deployments, prefect_yaml, read_stages

REAL = "real"  # the real pair's pipeline folder: deployments reproduce/real, reproduce/real-<stage>


def main() -> int:
    real = deployments(read_stages(f"{REAL}/dvc.yaml"), list(load_params(f"{REAL}/params.yaml")),
                       pipeline=REAL, repo=REAL)
    text = prefect_yaml(read_stages("dvc.yaml"), list(load_params("params.yaml")), [real])
    target = Path("prefect.yaml")
    if "--check" in sys.argv:
        fresh = target.exists() and target.read_text() == text
        print("prefect.yaml is up to date" if fresh else
              "prefect.yaml is stale: run `python scripts/write_prefect_yaml.py`")
        return 0 if fresh else 1
    target.write_text(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
