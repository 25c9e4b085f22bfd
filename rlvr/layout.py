"""Where every artifact of a run lives: one method per artifact, under one data root.

Stages, flows and tasks take a `Layout` and never build a data path themselves; dvc.yaml's
outs name the same paths (a test checks). The root is `data/` (DVC-tracked, git-ignored);
tests point it at a temporary directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA_ROOT = "data"
CHECKPOINT_PREFIX = "rl_step_"  # RL checkpoints: <models>/rl_steps/rl_step_<N>
# the plot CSVs the analyze stage writes (rlvr.tokens.analysis.PLOTS maps its queries onto them)
ANALYSIS_PLOTS = ("analysis_sparsity", "analysis_js_histogram", "analysis_js_by_entropy",
                  "analysis_js_by_position", "analysis_js_by_position_edges",
                  "analysis_topk_overlap", "analysis_rank_histogram",
                  "analysis_checkpoint_evolution", "analysis_role_detection")


@dataclass(frozen=True)
class Layout:
    """Every data path of the pipeline, relative to `root`."""

    root: Path = Path(DATA_ROOT)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # prepare: the family's prompts
    def split(self, name: str) -> Path:
        """`train` or `eval` prompts (parquet, the prompt-file layout)."""
        return self.root / "task" / f"{name}.parquet"

    # base, rl, sft: the models a family builds
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, name: str) -> Path:
        """A model this pipeline built (`base`, `rl`, `sft`, `rft`, or an RL checkpoint)."""
        if name.startswith(CHECKPOINT_PREFIX):
            return self.rl_steps_dir / name
        return self.models_dir / name

    @property
    def rl_steps_dir(self) -> Path:
        return self.models_dir / "rl_steps"

    # sample, score: the two tables, their gate results
    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    @property
    def tokens_dir(self) -> Path:
        return self.root / "tokens"

    def quality_dir(self, table: str) -> Path:
        """Gate results of table `samples`, `tokens`, `cross`, `decisiveness` or `weighted`."""
        return self.root / "quality" / table

    # analyze, cross_sample, weighted, report
    @property
    def analysis_dir(self) -> Path:
        return self.root / "analysis"

    @property
    def decisive_dir(self) -> Path:
        """Measured decisiveness: `positions/` (the table) and its detection results."""
        return self.root / "decisive"

    @property
    def cross_dir(self) -> Path:
        return self.root / "cross"

    @property
    def cross_cells_dir(self) -> Path:
        """Every cross-sampling cell run, calibration rounds included (the published tables
        link the final ones)."""
        return self.cross_dir / "cells"

    @property
    def weighted_dir(self) -> Path:
        return self.root / "weighted"

    def weighted_run(self, variant: str, seed: int) -> Path:
        return self.weighted_dir / "runs" / variant / f"seed_{seed}.parquet"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    # small outputs: DVC metrics and plot CSVs
    def metrics(self, name: str) -> Path:
        """`data/metrics/<name>.json`: a stage's headline numbers (`dvc metrics show`)."""
        return self.root / "metrics" / f"{name}.json"

    def plot(self, name: str) -> Path:
        """`data/plots/<name>.csv`: a curve (`dvc plots show`)."""
        return self.root / "plots" / f"{name}.csv"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    def outputs(self, stage: str) -> list[Path]:
        """Every path stage `stage` writes (dvc.yaml's outs, metrics and plots; a test checks):
        what it owns, so what it may sweep (`sweep_debris`). `weighted_run@<variant>` is one
        variant's runs. The family stages base, rl and sft depend on the family
        (`rlvr.training.family.stage_outputs`)."""
        if stage.startswith("weighted_run@"):
            return [self.weighted_dir / "runs" / stage.split("@", 1)[1]]
        w = self.weighted_dir
        return {
            "prepare": [self.root / "task", self.metrics("task")],
            "evaluate": [self.metrics("models"), self.plot("rl_checkpoint_accuracy")],
            "sample": [self.samples_dir, self.quality_dir("samples"), self.metrics("sample")],
            "score": [self.tokens_dir, self.quality_dir("tokens"), self.metrics("score")],
            "analyze": [self.analysis_dir, self.metrics("analysis"),
                        *(self.plot(p) for p in ANALYSIS_PLOTS)],
            "cross_sample": [self.cross_dir, self.quality_dir("cross"), self.metrics("cross"),
                             self.plot("cross_accuracy_by_budget"),
                             self.plot("cross_rule_vs_random")],
            "decisive": [self.decisive_dir, self.quality_dir("decisiveness"),
                         self.metrics("decisive"),
                         self.plot("decisive_detection")],
            "weighted_summary": [w / "training.parquet", w / "results.parquet",
                                 w / "results.csv", w / "curves.parquet",
                                 self.quality_dir("weighted"),
                                 self.metrics("weighted"), self.plot("weighted_accuracy"),
                                 self.plot("weighted_final")],
            "report": [self.report_dir, self.metrics("findings")],
        }[stage]
