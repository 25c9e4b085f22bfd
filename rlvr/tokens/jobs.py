"""The score stage's plan and metrics: checked inputs, one job per (pair, generator, shard).

`plan_scoring` checks every input before the stage touches an output: the samples table is
complete and holds both models' responses, every model's files are whole and finite
(`rlvr.models.checks.check_model`), and each pair shares one vocabulary and head size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rlvr.layout import Layout
from rlvr.models.checks import check_model, check_pair
from rlvr.models.specs import ModelEntry, ModelsParams, ModelSpec, plan_models, resolve
from rlvr.store.registry import SAMPLES, TableIncomplete
from rlvr.store.tables import pair_name, samples_dir, tokens_dir
from rlvr.tokens.scorer import ScoreParams


@dataclass(frozen=True)
class ScoreJob:
    """One unit of scoring work: a pair, which of its models generated, one samples part file."""

    base: ModelEntry
    tuned: ModelEntry
    generator: str  # "base" or "tuned"
    samples_part: str
    out_path: str


@dataclass(frozen=True)
class Partition:
    """One (pair, generator) directory of the token table, gated against its generator's
    samples with the pair's tokenizer (`spec`'s, the base's), audited against both models."""

    directory: str
    samples: str
    spec: ModelSpec
    tuned: ModelSpec | None = None

    @property
    def name(self) -> str:
        """`<pair>_<generator>`: the name of its gate result."""
        pair, generator = (p.split("=", 1)[1] for p in Path(self.directory).parts[-2:])
        return f"{pair}_{generator}"


@dataclass(frozen=True)
class ScorePlan:
    jobs: list[ScoreJob]
    partitions: list[Partition]
    vocab_size: int  # rows of the pair's output heads


def plan_score_jobs(
    base: ModelEntry, tuned: Sequence[ModelEntry], layout: Layout
) -> list[ScoreJob]:
    """One job per (pair, generator, samples part); the token part keeps the shard's name."""
    jobs = []
    for t in tuned:
        pair = pair_name(base.name, t.name)
        for generator, model in (("base", base), ("tuned", t)):
            try:
                parts = SAMPLES.files(layout, model=model.name)
            except TableIncomplete as e:
                raise ValueError(
                    f"no samples of model {model.name!r} under {layout.samples_dir}: add it to "
                    f"params.yaml `sample.models` (or set `sample.checkpoints`) and run the "
                    f"sample stage (dvc repro sample)") from e
            out_dir = tokens_dir(layout.tokens_dir, pair, generator)
            jobs += [ScoreJob(base, t, generator, str(p), str(out_dir / p.name)) for p in parts]
    return jobs


def plan_scoring(cfg: ScoreParams, models: ModelsParams, layout: Layout) -> ScorePlan:
    """Check every input of the score stage (see the module docstring), then plan its jobs."""
    SAMPLES.files(layout)  # complete, or TableIncomplete naming the stage to run
    base = resolve(cfg.base, models, layout)
    tuned = [e for e in plan_models(cfg.tuned, models, layout, cfg.checkpoints)
             if e.name != cfg.base]
    base_facts = check_model(base.spec)
    for t in tuned:
        check_pair(base_facts, check_model(t.spec))
    jobs = plan_score_jobs(base, tuned, layout)
    partitions = [Partition(str(tokens_dir(layout.tokens_dir, pair_name(base.name, t.name), g)),
                            str(samples_dir(layout.samples_dir, m.name)), base.spec, t.spec)
                  for t in tuned for g, m in (("base", base), ("tuned", t))]
    return ScorePlan(jobs, partitions, base_facts.vocab_size)


def summarize_tokens(root: str | Path) -> dict:
    """Rows and mean JS per (pair, generator) partition: the score stage's metrics."""
    out = {}
    for d in sorted(Path(root).glob("pair=*/generator=*")):
        table = pa.concat_tables([pq.read_table(p, columns=["js", "js_top_p"])
                                  for p in sorted(d.glob("part-*.parquet"))])
        name = f"{d.parent.name.removeprefix('pair=')}/{d.name.removeprefix('generator=')}"
        js, js_p = table.column("js").to_numpy(), table.column("js_top_p").to_numpy()
        out[name] = {"rows": table.num_rows, "mean_js": float(js.mean()),
                     "mean_js_top_p": float(js_p.mean())}
    return out
