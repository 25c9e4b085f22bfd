"""rlvr.results and rlvr.dvc.stage_outputs: what each stage run shows in the Prefect UI."""

from __future__ import annotations

from pathlib import Path

from rlvr import dvc, results

ROOT = Path(__file__).resolve().parents[1]


def test_artifact_keys_are_valid():
    cases = [
        ("score", "metrics", "score-metrics"),
        ("weighted_run@k3_old_high", "outputs", "weighted-run-k3-old-high-outputs"),  # no _ or @
        ("Cross_Sample", "metrics", "cross-sample-metrics"),
    ]
    assert [results.artifact_key(s, w) for s, w, _ in cases] == [want for *_, want in cases]


def test_metric_rows_flatten_leaves():
    metrics = {"base": {"accuracy": 0.44612345, "ci": [0.42, 0.47], "n": 2048},
               "note": "toy", "ok": True, "empty": {}, "missing": None}
    assert results.metric_rows(metrics) == [
        {"metric": "base.accuracy", "value": 0.4461},  # 4 significant digits
        {"metric": "base.ci.0", "value": 0.42},
        {"metric": "base.ci.1", "value": 0.47},
        {"metric": "base.n", "value": 2048},
        {"metric": "note", "value": "toy"},
        {"metric": "ok", "value": True},
    ]
    many = results.metric_rows({f"m{i}": i for i in range(results.MAX_ROWS + 5)})
    assert len(many) == results.MAX_ROWS + 1 and many[-1]["metric"] == "(5 more)"


def test_stage_outputs_from_dvc_yaml():
    yaml_path = ROOT / "dvc.yaml"
    assert dvc.stage_outputs("weighted_run@baseline", yaml_path) == {
        "outs": ["data/weighted/runs/baseline"]}  # the foreach item's own folder
    evaluate = dvc.stage_outputs("evaluate", yaml_path)
    assert evaluate["metrics"] == ["data/metrics/models.json"]
    assert dvc.stage_outputs("not_a_stage", yaml_path) == {}
    assert dvc.stage_module("python -m flows weighted --variant x") == "flows.weighted"


def test_outputs_and_run_markdown(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models/a.bin").write_bytes(b"x" * 1500)
    (tmp_path / "m.json").write_text("{}")
    report = tmp_path / "report/index.html"
    text = results.outputs_markdown(
        "pretrain", {"outs": [str(tmp_path / "models"), str(tmp_path / "gone")],
                     "metrics": [str(tmp_path / "m.json")]}, report)
    assert f"({(tmp_path / 'models').as_uri()}) | outs | 1.5 kB in 1 files |" in text
    assert "| not written |" in text and "| metrics | 2 B |" in text
    assert "not built yet" in text and "`dvc status pretrain`" in text
    lines = ["Running stage 'prepare':", "Stage 'score' didn't change, skipping",
             "Running stage 'weighted_run@baseline':"]
    summary = results.run_markdown(["dvc", "repro"], lines, report)
    assert "**Ran** (2): `prepare`, `weighted_run@baseline`" in summary
    assert "**Up to date** (1): `score`" in summary
