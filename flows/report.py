"""Report stage: one self-contained HTML page with the study's figures and a token viewer.

Run: `python -m flows.report` (what `dvc repro report` runs); reads the `report` and `models`
sections of params.yaml (the token viewer loads each shown pair's models for their top-k
candidates) and writes data/report/index.html. Sections whose inputs are missing say which
stage produces them.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from rlvr.config import ModelsConfig, ReportConfig, from_section, load_params
from rlvr.report.page import ReportOptions
from tasks.report import build_report_task


@flow(name="report")
def report(
    data_dir: str = "data",
    out_dir: str = "data/report",
    models_dir: str = "data/models",
    model_paths: dict[str, str] | None = None,
    responses_per_group: int = 2,
    viewer_pairs: list[str] | None = None,
    top_k: int = 5,
    dpi: int = 90,
) -> dict[str, int]:
    """Build the report from the tables under `data_dir`."""
    logger = get_run_logger()
    options = ReportOptions(responses_per_group=responses_per_group,
                            viewer_pairs=tuple(viewer_pairs or ()), top_k=top_k,
                            models_dir=models_dir, model_paths=model_paths or {}, dpi=dpi)
    # render and write atomically
    summary = build_report_task(data_dir, out_dir, options)
    logger.info("report: %s figures, %s notices, %s bytes -> %s/index.html",
                summary["figures"], summary["notices"], summary["bytes"], out_dir)
    return summary


if __name__ == "__main__":
    params = load_params()
    cfg = from_section(ReportConfig, params, "report")
    models = from_section(ModelsConfig, params, "models")
    report(data_dir=cfg.data_dir, out_dir=cfg.out_dir, models_dir=models.root,
           model_paths={n: e["path"] for n, e in models.named.items() if "path" in e},
           responses_per_group=cfg.responses_per_group, viewer_pairs=list(cfg.viewer_pairs),
           top_k=cfg.top_k, dpi=cfg.dpi)
