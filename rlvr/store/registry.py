"""The table registry: every parquet table one stage writes and others read, in one place.

Each `Table` names its columns (pyarrow type, nullability and a one-line meaning), its keys,
its hive partition folders, its location under a `Layout`, the stage that writes it, and its
completion rule: a directory table is whole once its `_COMPLETE` marker exists (written last,
withdrawn while a rerun modifies it); a single-file table once the file exists (it is written
under a temporary name and renamed). The store writes with `Table.schema`, the warehouse makes
a view per table, `rlvr describe` prints `Table.docs`, and the gates null-check
`Table.required`; so a new column is one entry here plus the code that computes it.

Other stages read a table only through `Table.read`, or `Table.read_files` on the files that
`Table.files` / `Table.partition_files` listed (a job carries a partition folder or part files);
those refuse a table that is not complete with one line naming its path and the stage to run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rlvr.layout import Layout
from rlvr.store.atomic import is_complete

S, I8, I32, I64 = pa.string(), pa.int8(), pa.int32(), pa.int64()
F32, F64, BOOL, IDS = pa.float32(), pa.float64(), pa.bool_(), pa.list_(pa.int32())


def col(name: str, type: pa.DataType, doc: str, null: bool = False) -> pa.Field:
    """A column: never null unless `null`; its meaning travels in the field's metadata."""
    return pa.field(name, type, nullable=null, metadata={"doc": doc})


def complete_files(root: str | Path) -> list[Path]:
    """Parquet files of the table at `root` whose write finished, sorted.

    A single file counts as it is (files are written under a temporary name and renamed). A
    directory counts only once its `_COMPLETE` marker exists (written last, withdrawn while a
    rerun modifies it); hidden in-flight temporary files and directories below it are skipped.
    """
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix == ".parquet" else []
    if not is_complete(root):
        return []
    return [p for p in sorted(root.rglob("*.parquet"))
            if p.is_file() and not any(x.startswith(".") for x in p.relative_to(root).parts)]


def read_complete(root: str | Path) -> pd.DataFrame | None:
    """A stage's result (a parquet file, or a marked folder of them) as one frame; None until
    it is complete. For results outside `TABLES` (the analyze stage's `agg_*`, cross summaries)
    that the report reads: the same completeness rule as the tables."""
    files = complete_files(root)
    if not files:
        return None
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


class TableIncomplete(ValueError):
    """A table another stage reads is absent or still being written (a ValueError: missing
    input of the stage that reads it, `rlvr.config.is_expected`)."""


@dataclass(frozen=True)
class Table:
    """One table of the pipeline: see the module docstring."""

    name: str
    stage: str  # the stage that writes it: the one to run when it is missing
    columns: tuple[pa.Field, ...]
    keys: tuple[str, ...]  # one row per key
    partition: tuple[str, ...]  # hive folders `<key>=<value>`, outermost first
    where: Callable[[Layout], Path]  # its directory, or its file when it ends in .parquet

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([f.remove_metadata() for f in self.columns])

    @property
    def docs(self) -> dict[str, str]:
        """Column -> meaning (keys marked), as `rlvr describe` prints them."""
        return {f.name: f.metadata[b"doc"].decode() + (" (key)" if f.name in self.keys else "")
                for f in self.columns}

    @property
    def required(self) -> list[str]:
        """The columns that may never be null: every gate checks them."""
        return [f.name for f in self.columns if not f.nullable]

    def path(self, layout: Layout) -> Path:
        return self.where(layout)

    def missing(self, where: Layout | Path) -> str:
        """Why the table (under a layout, or at its path) cannot be read, naming its path and
        the stage to run."""
        path = self.path(where) if isinstance(where, Layout) else Path(where)
        state = "is not complete" if path.exists() else "has not been produced"
        return (f"table `{self.name}` {state} ({path}): run the {self.stage} stage "
                f"(dvc repro {self.stage})")

    def files(self, layout: Layout, **partition: str) -> list[Path]:
        """The table's parquet files (those of one partition, e.g. `model="base"`), sorted;
        TableIncomplete unless the table is complete and the partition holds files."""
        unknown = set(partition) - set(self.partition)
        assert not unknown, f"{self.name} is not partitioned by {sorted(unknown)}"
        root = self.path(layout)
        return self._complete_under(root, root.joinpath(
            *(f"{k}={partition[k]}" for k in self.partition if k in partition)))

    def partition_files(self, folder: str | Path) -> list[Path]:
        """`files` of one partition folder as a job carries it (e.g. `<samples>/model=base`):
        its last folders must name the table's partition keys in order; the table they lie
        in must be complete."""
        folder, n = Path(folder), len(self.partition)
        keys = [p.split("=", 1)[0] for p in folder.parts[len(folder.parts) - n:]]
        assert n and keys == list(self.partition), \
            f"{folder} is not a partition folder of table `{self.name}` ({self.partition})"
        return self._complete_under(folder.parents[n - 1], folder)

    def _complete_under(self, root: Path, folder: Path) -> list[Path]:
        files = complete_files(root)
        if not files:
            raise TableIncomplete(self.missing(root))
        found = [p for p in files if p.is_relative_to(folder)]
        if not found:
            shown = ", ".join(folder.relative_to(root).parts)
            raise TableIncomplete(f"table `{self.name}` has no rows of {shown} ({folder}): add "
                                  f"it to params.yaml and run the {self.stage} stage "
                                  f"(dvc repro {self.stage})")
        return found

    def read(self, layout: Layout, columns: list[str] | None = None,
             filters: pc.Expression | None = None, **partition: str) -> pa.Table:
        """The complete table (or one partition) as one Arrow table, file metadata dropped;
        only the rows `filters` keeps (a pyarrow expression) when given."""
        return self.read_files(self.files(layout, **partition), columns, filters)

    def read_files(self, files: Sequence[str | Path], columns: list[str] | None = None,
                   filters: pc.Expression | None = None) -> pa.Table:
        """Files of this table that `files` / `partition_files` listed (jobs carry them) as
        one Arrow table, in order, file metadata dropped."""
        unknown = set(columns or ()) - set(self.schema.names)
        assert not unknown, f"table `{self.name}` has no columns {sorted(unknown)}"
        assert files, f"no files of table `{self.name}`"
        return pa.concat_tables([pq.read_table(p, columns=columns, filters=filters)
                                 .replace_schema_metadata(None) for p in files])


SAMPLING = (
    col("temperature", F32, "sampling temperature"),
    col("top_p", F32, "sampling top-p"),
    col("max_new_tokens", I32, "sampling length cap"),
)
_TIE = "ties: lower id first"  # the tie rule of every rank, top-1 and top-k set

SAMPLES = Table("samples", "sample", (
    col("model", S, "model that wrote the response (base, rl, sft, rft, rl_step_<N>)"),
    col("model_kind", S, "base, rl, sft, rft, checkpoint or user"),
    col("rl_step", I32, "RL step of a checkpoint model, else null", null=True),
    col("prompt_id", S, "problem id"),
    col("sample_id", I32, "response number for this prompt and model"),
    col("prompt", S, "prompt text", null=True),
    col("answer", S, "reference answer", null=True),
    col("prompt_token_ids", IDS, "exact ids fed to the model before the response (BOS, "
        "template)"),
    col("response_token_ids", IDS, "exact generated ids"),
    col("response_text", S, "decoded response"),
    col("n_tokens", I32, "response length in tokens, EOS included"),
    col("finish_reason", S, "'eos' or 'length'"),
    col("reward", I8, "grader reward, 0 or 1", null=True),
    col("sampling_logprobs", pa.list_(F32), "log-prob of each generated token under the "
        "sampler"),
    *SAMPLING,
    col("seed", I64, "sampling seed"),
), ("model", "prompt_id", "sample_id"), ("model",), lambda layout: layout.samples_dir)

TOKENS = Table("tokens", "score", (
    col("pair", S, "model pair `<base>__<tuned>`, e.g. base__rl, base__sft, base__rl_step_40"),
    col("generator", S, "which model of the pair wrote the response: 'base' or 'tuned'"),
    col("tuned_kind", S, "kind of the pair's tuned model: rl, sft, rft, checkpoint, user"),
    col("rl_step", I32, "RL step of the tuned model when it is a checkpoint (rl_step_<N>), "
        "else null", null=True),
    col("prompt_id", S, "problem id"),
    col("sample_id", I32, "response number for this prompt and generator"),
    col("position", I32, "0-based token position in the response"),
    col("n_tokens", I32, "response length in tokens, EOS included"),
    col("token_id", I32, "realised token id (shared vocabulary)"),
    col("token_text", S, "realised token as text"),
    col("role", S, "testbed role (rlvr.testbed.grammars; null: user data): method, verify, "
        "operand, intermediate, check, format, final_answer, other", null=True),
    col("reward", I8, "grader reward of the whole response, 0 or 1", null=True),
    col("logprob_base", F32, "log pi_base(realised token | prefix), nats"),
    col("logprob_tuned", F32, "log pi_tuned(realised token | prefix), nats"),
    col("delta_logprob", F32, "logprob_tuned - logprob_base"),
    col("entropy_base", F32, "entropy of the base next-token distribution, nats, full "
        "vocabulary"),
    col("entropy_tuned", F32, "entropy of the tuned next-token distribution, nats, full "
        "vocabulary"),
    col("js", F32, "Jensen-Shannon divergence base vs tuned, nats, exact over the vocabulary, "
        "[0, ln 2]"),
    col("kl_base_tuned", F32, "KL(base || tuned), nats"),
    col("kl_tuned_base", F32, "KL(tuned || base), nats"),
    # the tie rule (rlvr.tokens.pairstats): ids ordered by logit, equal logits by lowest id
    col("rank_base", I32, f"rank of the realised token under base (1 = top; {_TIE})"),
    col("rank_tuned", I32, f"rank of the realised token under tuned (1 = top; {_TIE})"),
    col("top1_base", I32, "base model's most likely token id (ties: the lowest id)"),
    col("top1_tuned", I32, "tuned model's most likely token id (ties: the lowest id)"),
    col("rank_in_base_of_top1_tuned", I32, "rank under base of the tuned top-1 token (1 = same "
        "top-1)"),
    col("rank_in_tuned_of_top1_base", I32, "rank under tuned of the base top-1 token (1 = same "
        "top-1)"),
    col("prob_base_of_top1_tuned", F32, "base probability of the tuned top-1 token"),
    *(col(f"topk_overlap_{k}", F32, f"|top-{k} base & top-{k} tuned| / {k} (sets by the tie "
          "rule)") for k in range(1, 6)),
    col("js_top_p", F32, "JS on top-p truncated, renormalised supports (the study's "
        "approximation)"),
), ("pair", "generator", "prompt_id", "sample_id", "position"), ("pair", "generator"),
    lambda layout: layout.tokens_dir)

_VALUES = {"value_before": "V(prefix before the token): success chance when the token is "
                           "resampled",
           "value_before_low": "Wilson interval low of value_before (decisive.alpha; "
                               "sequential: not adjusted for stopping)",
           "value_before_high": "Wilson interval high of value_before",
           "value_after": "V(prefix through the token): success chance after it",
           "value_after_low": "Wilson interval low of value_after",
           "value_after_high": "Wilson interval high of value_after",
           "delta_value": "value_after - value_before: how much committing to the token moved "
                          "the chance of success (pivotal when |.| is large); null if not "
                          "rolled out",
           "delta_low": "interval low of delta_value: paired bootstrap (fixed), anytime-valid "
                        "betting interval (sequential), -(1 - prob_token) (bound)",
           "delta_high": "interval high of delta_value"}
DECISIVENESS = Table("decisiveness", "decisive", (
    col("model", S, "generator: wrote the response and rolls it out"),
    col("model_kind", S, "base, rl, sft, rft, checkpoint or user"),
    col("prompt_id", S, "problem id"),
    col("sample_id", I32, "response number, as in `samples`"),
    col("position", I32, "0-based token position in the response"),
    col("n_tokens", I32, "response length in tokens, EOS included"),
    col("token_id", I32, "realised token id"),
    col("reward", I8, "grader reward of the response, 0 or 1"),
    col("prob_token", F32, "probability of the realised token under the generator's sampling"),
    col("stratum", S, "the design's stratum (rlvr.decisive.design): all | response "
        "(exhaustive); bound | js | entropy | uniform (stratified)"),
    col("inclusion_prob", F64, "probability the design measures this position (weight 1 / it)"),
    col("status", S, "fixed (K rollouts) | bound (1 - prob_token below every cut: never "
        "pivotal, no rollout) | decided | capped | no_streams (sequential) | unsampled"),
    col("n_rollouts", I32, "K: rollout streams considered, common random numbers across "
        "positions"),
    col("n_resampled_other", I32, "streams whose resampled token differs from the realised one "
        "(the sequential design rolls out only these)"),
    # null where not measured (`unsampled`; values also at `bound`)
    *(col(name, F32, doc, null=True) for name, doc in _VALUES.items()),
), ("model", "prompt_id", "sample_id", "position"), ("model",),
    lambda layout: layout.decisive_dir / "positions")

_CELL = (
    col("arm", S, "the intervention: direction, then -a<alpha> (extrapolation blend) and "
        "-top<K> (the companion's top-K mixing), e.g. forward, extrapolate-a0.1"),
    col("direction", S, "forward (primary base, intervention tuned), backward (the reverse) or "
        "extrapolate (primary tuned, switched tokens from the blend)"),
)
CROSS_SAMPLES = Table("cross_samples", "cross_sample", (
    *_CELL,
    col("alpha", F64, "extrapolation: switched tokens drawn from exp((1+alpha) log p_tuned - "
        "alpha log p_base), normalised; 0 = the intervention model itself"),
    col("top_k", I32, "0: exact draw over the vocabulary; K: the companion's top-K mixing"),
    col("pair", S, "model pair `<base>__<tuned>`"),
    col("primary_model", S, "model that samples unless the rule switches"),
    col("intervention_model", S, "model sampled at switched positions"),
    col("rule", S, "switch rule (rlvr.cross.sweep.RULE_SIGNALS): js, entropy (base entropy), "
        "entropy_primary, delta, gap_neg/gap_pos (signed gap of the primary's candidate), "
        "gap_top_*, kl_base_tuned, kl_tuned_base, kl_sym, kl_sym_topk, early, random; the "
        "endpoints none (primary alone) and all (every token switched)"),
    col("target_budget", F64, "budget the threshold was calibrated to (mean per-response "
        "share; 0 / 1 for none / all)"),
    col("calibration_round", I32, "calibration round of the threshold (0 for the endpoints)"),
    col("threshold", F64, "the rule's calibrated threshold (nats; a rate for random, the mean "
        "rate when matched per response)"),
    col("matched_rule", S, "random matched per response: the rule whose per-response shares "
        "it copies; null otherwise", null=True),
    col("seed", I64, "sampling seed"),
    col("prompt_id", S, "problem id"),
    col("sample_id", I32, "response number"),
    col("prompt", S, "prompt text", null=True),
    col("answer", S, "reference answer", null=True),
    col("prompt_token_ids", IDS, "exact ids fed before the response"),
    col("response_token_ids", IDS, "exact generated ids"),
    col("response_text", S, "decoded response"),
    col("n_tokens", I32, "response length"),
    col("n_switched", I32, "tokens drawn from the intervention model (the budget, as a "
        "count)"),
    col("switch_share", F64, "n_switched / n_tokens (the budget, as a share)"),
    col("finish_reason", S, "'eos' or 'length'"),
    col("reward", I8, "grader reward, 0 or 1"),
    *SAMPLING,
), ("arm", "rule", "target_budget", "seed", "prompt_id", "sample_id"), (),
    lambda layout: layout.cross_dir / "samples")

CROSS_TOKENS = Table("cross_tokens", "cross_sample", (
    *_CELL,
    col("pair", S, "model pair"),
    col("rule", S, "switch rule"),
    col("target_budget", F64, "budget the threshold was calibrated to"),
    col("threshold", F64, "the rule's threshold"),
    col("seed", I64, "sampling seed"),
    col("prompt_id", S, "problem id"),
    col("sample_id", I32, "response number"),
    col("position", I32, "0-based position in the response"),
    col("token_id", I32, "sampled token id"),
    col("token_text", S, "sampled token as text"),
    col("is_switched", BOOL, "true when the intervention model drew this token"),
    col("source_model", S, "model the token was drawn from"),
    # the step's signals (rlvr.cross.decoder.CrossGeneration attributes of the same names)
    col("js", F32, "JS between the two next-token distributions at this step, nats"),
    col("entropy_primary", F32, "primary model's entropy at this step, nats"),
    col("entropy_intervention", F32, "intervention model's entropy at this step, nats"),
    col("logprob_primary", F32, "primary model's log-prob of the chosen token"),
    col("logprob_intervention", F32, "intervention model's log-prob of the chosen token"),
    col("delta_top", F32, "|log p_int - log p_prim| of the primary's top token (the delta "
        "rule)"),
    col("gap_top", F32, "log p_int - log p_prim of the primary's top token, signed"),
    col("gap_sampled", F32, "log p_int - log p_prim of the primary's candidate (its draw with "
        "the step's uniform), signed"),
    col("kl_primary_intervention", F32, "KL(primary || intervention) at this step, nats"),
    col("kl_intervention_primary", F32, "KL(intervention || primary) at this step, nats"),
    col("kl_sym", F32, "mean of the two KLs"),
    col("kl_sym_topk", F32, "the companion's 'js' gate: mean of both KLs on the primary's "
        "top-K tokens, both renormalised there"),
    col("mix_tv", F32, "top-K arms, switched steps: total variation between the exact and the "
        "top-K switch distributions; null elsewhere", null=True),
    col("mix_differs", BOOL, "top-K arms, switched steps: the exact draw with the same uniform "
        "is a different token; null elsewhere", null=True),
), ("arm", "rule", "target_budget", "seed", "prompt_id", "sample_id", "position"), (),
    lambda layout: layout.cross_dir / "tokens")

# the weighted grid's logs: one file per run (weighted_run stages), and their union
_RUN_LOG = (
    col("variant", S, "training variant (baseline or divergence/sign of alpha)"),
    col("divergence", S, "k3_old, js_base or delta_base"),
    col("alpha", F64, "sigmoid slope; > 0 boosts high-divergence tokens"),
    col("s", F64, "weight strength: w in (1 - s/2, 1 + s/2)"),
    col("seed", I64, "training seed"),
    col("step", I64, "training step"),
    col("metric", S, "metric name"),
    col("value", F64, "metric value", null=True),
)
RUN_KEYS = ("variant", "seed", "step", "metric")
WEIGHTED_RUNS = Table("weighted_runs", "weighted_run", _RUN_LOG, RUN_KEYS, (),
                      lambda layout: layout.weighted_dir / "runs")
TRAINING = Table("training", "weighted_summary", _RUN_LOG, RUN_KEYS, (),
                 lambda layout: layout.weighted_dir / "training.parquet")

# the warehouse's tables, by view name (the run logs are read through `training`)
TABLES: dict[str, Table] = {t.name: t for t in (SAMPLES, TOKENS, CROSS_SAMPLES, CROSS_TOKENS,
                                                 TRAINING, DECISIVENESS)}
