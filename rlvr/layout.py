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


@dataclass(frozen=True)
class Layout:
    """Every data path of the pipeline, relative to `root`."""

    root: Path = Path(DATA_ROOT)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # prepare: the task's split
    def split(self, name: str) -> Path:
        """`train` or `eval` problems (parquet)."""
        return self.root / "task" / f"{name}.parquet"

    # pretrain, rl, sft: the model family built here
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
        """Gate results of table `samples` or `tokens`."""
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

    def tables(self) -> dict[str, Path]:
        """The warehouse's source tables: view name -> file or directory of parquet parts."""
        return {
            "samples": self.samples_dir,
            "tokens": self.tokens_dir,
            "cross_samples": self.cross_dir / "samples",
            "cross_tokens": self.cross_dir / "tokens",
            "training": self.weighted_dir / "training.parquet",
            "decisiveness": self.decisive_dir / "positions",
        }
