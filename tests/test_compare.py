"""`dfa-bench compare`: paired differences, McNemar's exact test, and refusing unpaired runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dfa_bench.cli import app
from dfa_bench.compare import compare_runs, mcnemar_exact, paired_bootstrap
from dfa_bench.metrics import dfc_metrics
from dfa_bench.schema import ValidationError

SHA = "a" * 64


def make_run(root, name, dfd, dfc=None, ad=None, sha=SHA):
    run = root / name
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"model": name, "bench": "b", "bench_manifest_sha256": sha}))
    rows = [{"question_id": f"q{i}:dfd", "task": "dfd", "correct": bool(c)} for i, c in enumerate(dfd)]
    rows += [
        {"question_id": f"q{i}:dfc", "task": "dfc", "correct": bool(c)}
        for i, c in enumerate([] if dfc is None else dfc)
    ]
    rows += [{"question_id": f"q{i}:ad", "task": "ad", "rouge_l": v} for i, v in enumerate([] if ad is None else ad)]
    (run / "details.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_mcnemar_exact_is_the_binomial_test_on_discordant_pairs():
    a = np.array([1] * 10 + [0] * 2 + [1] * 50, bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 50, bool)
    assert mcnemar_exact(a, b) == pytest.approx(2 * (1 + 12 + 66) / 4096)  # 2 P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar_exact(a, a) == 1.0


def test_paired_bootstrap():
    x = np.random.default_rng(0).random(300)
    ci, p = paired_bootstrap(x, x)
    assert ci == [0.0, 0.0] and p == 1.0
    ci, p = paired_bootstrap(x + 0.05, x)
    assert ci[0] > 0 and p < 0.01


def test_pairing_finds_what_overlapping_intervals_cannot(tmp_path):
    # B is A with 12 of A's right answers wrong: 56% vs 50% on 200 items, whose unpaired CIs overlap
    a = np.array([1] * 112 + [0] * 88, bool)
    b = a.copy()
    b[:12] = False
    truth = ["face_swapping"] * 200
    ci_a = dfc_metrics(truth, ["face_swapping" if c else "bona_fide" for c in a])["ci95"]["acc"]
    ci_b = dfc_metrics(truth, ["face_swapping" if c else "bona_fide" for c in b])["ci95"]["acc"]
    assert ci_a[0] < ci_b[1]  # the intervals overlap
    result = compare_runs(make_run(tmp_path, "A", a), make_run(tmp_path, "B", b))
    dfd = result["metrics"]["dfd_acc"]
    assert dfd["difference"] == pytest.approx(0.06) and dfd["a_only_correct"] == 12 and dfd["b_only_correct"] == 0
    assert dfd["p_value"] == pytest.approx(2 * 0.5**12) and dfd["significant"]
    assert dfd["ci95"][0] > 0 and dfd["n"] == 200


def test_cli_prints_every_metric_and_refuses_other_benches(tmp_path):
    rng = np.random.default_rng(1)
    a = make_run(tmp_path, "A", rng.random(80) < 0.7, rng.random(80) < 0.4, list(rng.random(40)))
    b = make_run(tmp_path, "B", rng.random(80) < 0.6, rng.random(80) < 0.4, list(rng.random(40)))
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--output", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    for label in ("DF-D ACC", "DF-C ACC", "AD ROUGE-L", "McNemar exact", "paired bootstrap"):
        assert label in result.output
    saved = json.loads((tmp_path / "c.json").read_text())
    assert set(saved["metrics"]) == {"dfd_acc", "dfc_acc", "ad_rouge_l"}
    other = make_run(tmp_path, "C", [1, 0], sha="b" * 64)
    result = CliRunner().invoke(app, ["compare", str(a), str(other)])
    assert result.exit_code == 2 and "different benches" in result.output
    with pytest.raises(ValidationError, match="no details.jsonl"):
        (tmp_path / "D").mkdir()
        (tmp_path / "D" / "run.json").write_text("{}")
        compare_runs(a, tmp_path / "D")
