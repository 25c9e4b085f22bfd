"""RL stage of the smollm2 family: GRPO/DAPO from the base with the shared trainer.

Run from real/: `python -m flows.smollm2.rl`; reads params.yaml `rl`, `training`, `models` and
`sample.grader` (the reward is the grade the sample stage gives), writes data/models/rl,
data/models/rl_steps/rl_step_<N> and data/plots/rl_log.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import from_section, load_params, run_main
from rlvr.generation.samples import SampleParams
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.smollm2.family import TrainingParams
from rlvr.training.grpo import GRPOParams
from tasks.smollm2.rl import train_rl_task


@flow(name="rl")
def rl(cfg: GRPOParams, models: ModelsParams, grader: str, training: TrainingParams,
       data_root: str = DATA_ROOT) -> dict:
    """Train the RL model and its checkpoints."""
    # rollouts graded by `grader`, group advantages, clipped updates; checkpoints on the way
    summary = train_rl_task(Layout(data_root), cfg, models, grader, training)
    get_run_logger().info("rl: %s", summary)
    return summary


def main() -> None:
    params = load_params()
    rl(from_section(GRPOParams, params, "rl"), from_section(ModelsParams, params, "models"),
       from_section(SampleParams, params, "sample").grader,
       from_section(TrainingParams, params, "training"))


if __name__ == "__main__":
    run_main(main)
