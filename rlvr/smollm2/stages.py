"""What each family stage of real/dvc.yaml owns (a test compares it with the dvc.yaml).

A stage sweeps the debris of exactly these paths once its inputs are checked; the later stages
of the real pipeline are the toy's and own what `Layout.outputs` says.
"""

from __future__ import annotations

from pathlib import Path

from rlvr.layout import Layout

STAGES = ("convert", "prepare", "rl", "sft", "evaluate")


def outputs(layout: Layout, stage: str) -> list[Path]:
    """Every path family stage `stage` writes (dvc.yaml's outs, metrics and plots)."""
    return {
        "convert": [layout.model_dir("base"), layout.metrics("convert")],
        "prepare": [layout.root / "task", layout.metrics("task")],
        "rl": [layout.model_dir("rl"), layout.rl_steps_dir, layout.plot("rl_log")],
        "sft": [layout.model_dir("sft"), layout.plot("sft_loss")],
        "evaluate": [layout.metrics("models"), layout.plot("rl_checkpoint_accuracy")],
    }[stage]
