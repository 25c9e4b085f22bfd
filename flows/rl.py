"""RL stage: GRPO/DAPO from the base model with verifiable rewards.

Run: `python -m flows.rl` (what `dvc repro rl` runs); reads params.yaml `rl`, writes
data/models/rl (final policy), data/models/rl_steps/rl_step_<N> (a checkpoint every
`rl.save_every` steps and at the last step) and the per-step log data/plots/rl_log.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import from_section, load_params, run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.training.grpo import GRPOParams
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.rl import train_rl_task


@flow(name="rl")
def rl(cfg: GRPOParams, data_root: str = DATA_ROOT) -> dict[str, float]:
    """Train the RL model and its checkpoints."""
    logger = get_run_logger()
    # rollouts, group advantages, clipped updates; checkpoints along the way
    layout = Layout(data_root)
    summary = train_rl_task(layout, cfg)
    logger.info("rl: reward %(final_reward).3f over the last steps, %(checkpoints)s checkpoints, "
                "%(seconds).0f s", summary)
    # results in the UI: headline numbers and links to the outputs
    publish_results(summary, layout)
    return summary


def main() -> None:
    run_stage(rl, from_section(GRPOParams, load_params(), "rl"))


if __name__ == "__main__":
    run_main(main)
