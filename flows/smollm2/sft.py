"""SFT stage of the smollm2 family: the control, the base fine-tuned on reference solutions.

Run from real/: `python -m flows.smollm2.sft`; reads params.yaml `sft`, `training` and
`models`, writes data/models/sft and data/plots/sft_loss.csv.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import from_section, load_params, run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.models.specs import ModelsParams
from rlvr.smollm2.family import TrainingParams
from rlvr.training.lm import SFTParams
from tasks.smollm2.sft import train_sft_task


@flow(name="sft")
def sft(cfg: SFTParams, models: ModelsParams, training: TrainingParams,
        data_root: str = DATA_ROOT) -> dict:
    """Fine-tune the base on the worked solutions of the train split."""
    # off-policy demonstrations, response tokens only
    summary = train_sft_task(Layout(data_root), cfg, models, training)
    get_run_logger().info("sft: %s", summary)
    return summary


def main() -> None:
    params = load_params()
    sft(from_section(SFTParams, params, "sft"), from_section(ModelsParams, params, "models"),
        from_section(TrainingParams, params, "training"))


if __name__ == "__main__":
    run_main(main)
