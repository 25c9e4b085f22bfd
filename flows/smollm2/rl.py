"""RL stage of the smollm2 family: GRPO/DAPO from the base with the shared trainer.

Run from real/: `python -m flows.smollm2.rl`; reads params.yaml `rl`, `models` and
`sample.grader` (the reward is the grade the sample stage gives), writes data/models/rl,
data/models/rl_steps/rl_step_<N> and data/plots/rl_log.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import from_section, load_params, run_main
from rlvr.generation.samples import SampleParams
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.training.grpo import GRPOParams
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.smollm2.rl import train_rl_task


@flow(name="rl")
def rl(cfg: GRPOParams, models: ModelsParams, grader: str, data_root: str = DATA_ROOT) -> dict:
    """Train the RL model and its checkpoints."""
    layout = Layout(data_root)
    # rollouts graded by `grader`, group advantages, clipped updates; checkpoints on the way
    summary = train_rl_task(layout, cfg, models, grader)
    get_run_logger().info("rl: %s", summary)
    # results in the UI: headline numbers and links to the outputs
    publish_results(summary, layout)
    return summary


def main() -> None:
    params = load_params()
    run_stage(rl, from_section(GRPOParams, params, "rl"),
              from_section(ModelsParams, params, "models"),
              from_section(SampleParams, params, "sample").grader)


if __name__ == "__main__":
    run_main(main)
