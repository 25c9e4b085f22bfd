"""Run one pipeline stage: `python -m flows <stage> [args]`, the command of every dvc.yaml stage.

It is `python -m flows.<stage> [args]`, run in the `reproduce` process that started DVC when
that process hosts stages (`rlvr.stagehost`: imports paid once per pipeline), else in this one.
Imports only the standard library and rlvr.stagehost, so forwarding costs ~50 ms.
"""

from __future__ import annotations

import os
import sys

from rlvr.stagehost import forward


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python -m flows <stage> [args]", file=sys.stderr)
        return 2
    module = [f"flows.{argv[0]}", *argv[1:]]
    rc = forward(module)
    if rc is None:  # not hosted: become `python -m flows.<stage>`
        os.execv(sys.executable, [sys.executable, "-m", *module])
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
