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
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.smollm2.sft import train_sft_task


@flow(name="sft")
def sft(cfg: SFTParams, models: ModelsParams, training: TrainingParams,
        data_root: str = DATA_ROOT) -> dict:
    """Fine-tune the base on the worked solutions of the train split."""
    # off-policy demonstrations, response tokens only
    layout = Layout(data_root)
    summary = train_sft_task(layout, cfg, models, training)
    get_run_logger().info("sft: %s", summary)
    # results in the UI: headline numbers and links to the outputs
    publish_results(summary, layout)
    return summary


def main() -> None:
    params = load_params()
    run_stage(sft, from_section(SFTParams, params, "sft"),
              from_section(ModelsParams, params, "models"),
              from_section(TrainingParams, params, "training"))


if __name__ == "__main__":
    run_main(main)
