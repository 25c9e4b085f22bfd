"""RL stage: GRPO/DAPO from the family's base with verifiable rewards.

Run: `python -m flows.rl` (what `dvc repro rl` runs); reads params.yaml `rl`, `models` and the
family's `task` (its train split and grader), writes data/models/rl (final policy),
data/models/rl_steps/rl_step_<N> (a checkpoint every `rl.save_every` steps and at the last
step) and the per-step log data/plots/rl_log.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.study import load_study
from rlvr.training.grpo import GRPOParams
from tasks.family import train_rl_task
from tasks.linking import run_stage
from tasks.results import publish_results


@flow(name="rl")
def rl(family: str, cfg: GRPOParams, models: ModelsParams, grader: str,
       data_root: str = DATA_ROOT) -> dict[str, float]:
    """Train the RL model and its checkpoints."""
    layout = Layout(data_root)
    # rollouts graded by `grader`, group advantages, clipped updates; checkpoints on the way
    summary = train_rl_task(family, layout, cfg, models, grader)
    get_run_logger().info("rl: reward %(final_reward).3f over the last steps, %(checkpoints)s "
                          "checkpoints, %(seconds).0f s", summary)
    # results in the UI: headline numbers and links to the outputs
    publish_results(summary, layout)
    return summary


def main() -> None:
    study = load_study()
    run_stage(rl, study.family.name, study.section(GRPOParams, "rl"), study.models, study.grader)


if __name__ == "__main__":
    run_main(main)
