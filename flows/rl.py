"""RL stage: GRPO/DAPO from the base model with verifiable rewards.

Run: `python -m flows.rl` (what `dvc repro rl` runs); reads the `rl` section of params.yaml,
writes data/models/rl (final policy), data/models/rl_steps/rl_step_<N> (a checkpoint every
`rl.save_every` steps and at the last step; list them with `grpo.list_checkpoints`) and the
per-step log data/plots/rl_log.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import RLConfig, from_section, load_params
from tasks.rl import train_rl_task


@flow(name="rl")
def rl(
    cfg: RLConfig,
    base_dir: str = "data/models/base",
    train_path: str = "data/task/train.parquet",
    out_dir: str = "data/models/rl",
    steps_dir: str = "data/models/rl_steps",
    log_path: str = "data/plots/rl_log.csv",
) -> dict[str, float]:
    """Train the RL model and its checkpoints."""
    logger = get_run_logger()
    # rollouts, group advantages, clipped updates; checkpoints along the way
    summary = train_rl_task(base_dir, train_path, out_dir, steps_dir, log_path, cfg)
    logger.info("rl: reward %(final_reward).3f over the last steps, %(checkpoints)s checkpoints, "
                "%(seconds).0f s", summary)
    return summary


if __name__ == "__main__":
    rl(from_section(RLConfig, load_params(), "rl"))
