"""The float64 audit of the token table (`rlvr.tokens.audit`): what the scorer wrote passes in
fp32 and bf16; a value forged inside every bound the gates know (issue 21: JS doubled on 5 rows
where it lay in 0.05..0.3, caught 0 times in 20 plantings) fails, naming the row, in the score
stage before the table is marked complete and in `rlvr audit` on an existing table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax
from scipy.stats import entropy

from rlvr.cli import main
from rlvr.generation.backends import BackendParams
from rlvr.generation.sampler import SamplingParams
from rlvr.generation.samples import sample_shard
from rlvr.layout import Layout
from rlvr.models.loading import save_model
from rlvr.models.specs import ModelEntry, ModelsParams, NamedModel, plan_models
from rlvr.store.atomic import MARKER
from rlvr.store.gates import GateFailed, gate_tokens_dir, read_parts
from rlvr.store.tables import finalize_dataset, part_path, samples_dir, tokens_dir
from rlvr.testbed.digits import label_roles
from rlvr.testbed.model import build_model
from rlvr.testbed.prompts import task_prompts
from rlvr.tokens.audit import audit_partition, pick_rows, reference
from rlvr.tokens.scorer import AuditParams, ScoreParams, score_shard
from tests.conftest import TINY

PAIR = Path("tokens/pair=base__rl/generator=base")
SAMPLES = Path("samples/model=base")
ALL = AuditParams(rows=10_000)  # every row of the small test partition


def _build(root: Path, tokenizer, dtype: str = "fp32") -> Layout:
    """data/ with a (base, rl) pair of tiny models whose final norm is scaled by 8 (peaked
    distributions: JS 0.05-0.3 on most positions), 18 base responses scored in `dtype`."""
    layout = Layout(root / "data")
    for name, seed in (("base", 0), ("rl", 1)):
        model = build_model(TINY, tokenizer, seed=seed).eval()
        with torch.no_grad():
            model.model.norm.weight.mul_(8.0)
        save_model(model, tokenizer, layout.model_dir(name))
    named = {n: NamedModel(path=str(layout.model_dir(n)), dtype=dtype) for n in ("base", "rl")}
    base, rl = plan_models(["base", "rl"], ModelsParams(named=named), layout)
    records = task_prompts(n_eval=6, seed=0, min_digits=3, max_digits=5)
    samples = part_path(samples_dir(layout.samples_dir, "base"), 0)
    sample_shard(base, records, 3, SamplingParams(max_new_tokens=12, seed=0), "toy",
                 BackendParams(), samples)
    tokens = part_path(tokens_dir(layout.tokens_dir, "base__rl", "base"), 0)
    score_shard(base, rl, "base", samples, tokens, ScoreParams(), label_roles)
    finalize_dataset(layout.samples_dir, [samples])
    finalize_dataset(layout.tokens_dir, [tokens])
    return layout


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tokenizer) -> Layout:
    return _build(tmp_path_factory.mktemp("audit"), tokenizer)


def _specs(layout: Layout, dtype: str = "fp32") -> list[ModelEntry]:
    named = {n: NamedModel(path=str(layout.model_dir(n)), dtype=dtype) for n in ("base", "rl")}
    return plan_models(["base", "rl"], ModelsParams(named=named), layout)


def _audit(layout: Layout, params: AuditParams = ALL, dtype: str = "fp32",
           result: Path | None = None) -> dict:
    base, rl = _specs(layout, dtype)
    return audit_partition(layout.root / PAIR, layout.root / SAMPLES, base.spec, rl.spec,
                           params, "tokens_base__rl_base", result)


def test_the_reference_is_scipy_on_random_logits():
    """The float64 statistics the audit compares with, against scipy (ties, -inf included)."""
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(0, 3, (6, 40)), rng.normal(0, 3, (6, 40))
    xa[0, :5] = xa[0, 5]  # ties
    xb[1, 7] = -np.inf  # a token the tuned model rules out
    tokens = rng.integers(0, 40, 6)
    ref = reference(xa, xb, tokens)
    la, lb = log_softmax(xa, -1), log_softmax(xb, -1)
    pa_, pb = np.exp(la), np.exp(lb)
    np.testing.assert_allclose(ref["logprob_base"], la[np.arange(6), tokens], rtol=1e-12)
    np.testing.assert_allclose(ref["entropy_tuned"], entropy(pb, axis=-1), rtol=1e-10)
    np.testing.assert_allclose(ref["kl_base_tuned"], entropy(pa_, pb, axis=-1), rtol=1e-10)
    np.testing.assert_allclose(ref["js"], jensenshannon(pa_, pb, axis=-1) ** 2, rtol=1e-9)


def test_what_the_scorer_wrote_passes_and_is_close_in_float64(scored, tmp_path):
    result = tmp_path / "audit.json"
    summary = _audit(scored, result=result)
    assert summary["rows"] == len(read_parts(scored.root / PAIR)) > 150
    saved = json.loads(result.read_text())
    assert saved["success"] and all(c["off"] == 0 for c in saved["columns"])


def test_a_bf16_pair_passes_its_dtype_tolerance(tmp_path, tokenizer):
    """bf16 forwards round (issue 21: a tolerance that holds on any processor): the audit
    compares with the dtype's tolerance, and what the scorer wrote passes."""
    layout = _build(tmp_path, tokenizer, dtype="bf16")
    assert _audit(layout, dtype="bf16")["dtypes"] == ["bf16", "bf16"]


def _forge_js(layout: Layout, n: int = 5) -> pd.DataFrame:
    """JS doubled on `n` rows where it lies in 0.05..0.3 and where twice it still satisfies
    every bound the gates check; returns the forged rows."""
    part = layout.root / PAIR / "part-00000.parquet"
    table = pq.read_table(part)
    df = table.to_pandas()
    ok = df.js.between(0.05, 0.3) & (2 * df.js <= (df.kl_base_tuned + df.kl_tuned_base) / 4
                                     - 1e-3)
    rows = np.flatnonzero(ok)[:: max(1, ok.sum() // n)][:n]
    assert len(rows) == n
    js = df.js.to_numpy().copy()
    js[rows] *= 2
    forged = table.set_column(table.schema.get_field_index("js"), "js",
                              pa.array(js, pa.float32()))
    pq.write_table(forged.replace_schema_metadata(table.schema.metadata), part)
    return df.iloc[rows]


def test_js_doubled_on_5_rows_passes_the_gates_but_not_the_audit(scored, tmp_path, tokenizer):
    layout = Layout(tmp_path / "data")
    shutil.copytree(scored.root, layout.root)
    forged = _forge_js(layout)
    # the gates' bounds and invariants cannot see it
    gate_tokens_dir(layout.root / PAIR, len(tokenizer), tmp_path / "gate.json",
                    layout.root / SAMPLES, tokenizer)
    with pytest.raises(GateFailed) as err:
        _audit(layout)
    r = forged.sort_values(["prompt_id", "sample_id", "position"]).iloc[0]  # audit order
    js64 = float(r.js)  # the value before forging, which float64 recomputes (within 1e-6)
    line = str(err.value)
    n = len(read_parts(layout.root / PAIR))
    prefix = (f"audit of `tokens_base__rl_base` failed: js: 5 of {n}"
              f" audited rows off by more than 0.0001 (fp32/fp32); e.g. part-00000.parquet "
              f"{r.prompt_id}/{r.sample_id} position {r.position}: {2 * r.js:.6g} in the table, ")
    assert line.startswith(prefix), line
    assert abs(float(line[len(prefix):].split(" ")[0]) - js64) < 1e-5


def test_rows_are_drawn_by_seed_whatever_the_file_order(scored):
    """The audit is a sample (24 rows per partition by default): each seed draws other rows,
    and the draw depends on the rows, not on how they are laid out in files."""
    table = read_parts(scored.root / PAIR).sort_values(["prompt_id", "sample_id", "position"])
    drawn = [set(map(tuple, pick_rows(table, 24, seed, "x")[["prompt_id", "sample_id",
                                                             "position"]].values))
             for seed in range(200)]
    assert all(len(d) == 24 for d in drawn) and len({frozenset(d) for d in drawn}) > 190
    assert pick_rows(table, 24, 0, "x").equals(pick_rows(table.iloc[::-1], 24, 0, "x"))


def test_the_score_stage_audits_before_it_marks_the_table(scored, tmp_path, tokenizer):
    """The stage's own gate task: the forged partition fails, and the table stays unmarked."""
    from rlvr.tokens.jobs import Partition
    from tasks.score import gate_tokens_task

    layout = Layout(tmp_path / "data")
    shutil.copytree(scored.root, layout.root)
    (layout.tokens_dir / MARKER).unlink()  # as plan_scoring_task leaves it while scoring
    cfg = ScoreParams(tuned=["rl"], checkpoints=False, audit=ALL)
    base, rl = _specs(layout)
    partition = Partition(str(layout.root / PAIR), str(layout.root / SAMPLES), base.spec,
                          rl.spec)
    assert gate_tokens_task.fn(partition, len(tokenizer), layout, cfg.audit)["audit"]["rows"]
    _forge_js(layout)
    with pytest.raises(GateFailed, match="audit of `tokens_base__rl_base` failed .*js: 5 of"):
        gate_tokens_task.fn(partition, len(tokenizer), layout, cfg.audit)
    assert json.loads((layout.quality_dir("tokens") / "base__rl_base.audit.json").read_text()
                      )["success"] is False
    assert not (layout.tokens_dir / MARKER).exists()


def test_rlvr_audit_checks_an_existing_table(scored, tmp_path, capsys):
    layout = Layout(tmp_path / "data")
    shutil.copytree(scored.root, layout.root)
    assert main(["--data", str(layout.root), "audit", "--rows", "40"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("tokens base__rl/base: 40 rows recomputed in float64 from base "
                              "and rl (fp32/fp32), all within tolerance")
    _forge_js(layout)
    assert main(["--data", str(layout.root), "audit", "--rows", "10000"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: audit of `tokens_base__rl_base` failed: js: 5 of ")
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
