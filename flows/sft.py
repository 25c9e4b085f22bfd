"""SFT stage: the two controls, `sft` (reference solutions) and `rft` (own correct samples).

Run: `python -m flows.sft` (what `dvc repro sft` runs); reads the `sft` section of params.yaml,
writes data/models/sft, data/models/rft and their loss curves under data/plots/.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import SFTConfig, from_section, load_params
from tasks.sft import train_rft_task, train_sft_task


@flow(name="sft")
def sft(
    cfg: SFTConfig,
    base_dir: str = "data/models/base",
    train_path: str = "data/task/train.parquet",
    models_root: str = "data/models",
    plots_dir: str = "data/plots",
) -> dict[str, dict[str, float]]:
    """Fine-tune the base twice by next-token loss."""
    logger = get_run_logger()
    # off-policy demonstrations
    sft_summary = train_sft_task(base_dir, train_path, f"{models_root}/sft",
                                 f"{plots_dir}/sft_loss.csv", cfg)
    logger.info("sft: %(n_examples)s examples, final loss %(final_loss).4f", sft_summary)
    # rejection sampling: the base model's own correct answers
    rft_summary = train_rft_task(base_dir, train_path, f"{models_root}/rft",
                                 f"{plots_dir}/rft_loss.csv", cfg)
    logger.info("rft: %(n_examples)s examples (%(kept_share).2f of samples correct), "
                "final loss %(final_loss).4f", rft_summary)
    return {"sft": sft_summary, "rft": rft_summary}


if __name__ == "__main__":
    sft(from_section(SFTConfig, load_params(), "sft"))
