"""SFT stage: the two controls, `sft` (written solutions) and `rft` (own correct samples).

Run: `python -m flows.sft` (what `dvc repro sft` runs); reads params.yaml `sft` and
`task.testbed` (the grammar sft's solutions are written in), writes
data/models/sft, data/models/rft and their loss curves under data/plots/.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import from_section, load_params, run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.testbed.split import TaskParams
from rlvr.training.lm import SFTParams
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.sft import train_rft_task, train_sft_task


@flow(name="sft")
def sft(cfg: SFTParams, testbed: str, data_root: str = DATA_ROOT) -> dict[str, dict[str, float]]:
    """Fine-tune the base twice by next-token loss."""
    logger = get_run_logger()
    layout = Layout(data_root)
    # off-policy demonstrations
    sft_summary = train_sft_task(layout, cfg, testbed)
    logger.info("sft: %(n_examples)s examples, final loss %(final_loss).4f", sft_summary)
    # rejection sampling: the base model's own correct answers
    rft_summary = train_rft_task(layout, cfg)
    logger.info("rft: %(n_examples)s examples (%(kept_share).2f of samples correct), "
                "final loss %(final_loss).4f", rft_summary)
    summary = {"sft": sft_summary, "rft": rft_summary}
    # results in the UI: headline numbers and links to the outputs
    publish_results(summary, layout)
    return summary


def main() -> None:
    params = load_params()
    run_stage(sft, from_section(SFTParams, params, "sft"),
              from_section(TaskParams, params, "task").testbed)


if __name__ == "__main__":
    run_main(main)
