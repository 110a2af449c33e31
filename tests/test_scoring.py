from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dfa_bench.ad_reading import claimed_regions
from dfa_bench.bench import read_bench
from dfa_bench.cli import app
from dfa_bench.schema import ValidationError
from dfa_bench.scoring import read_predictions, score_predictions

runner = CliRunner()


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_reference_answers_score_perfectly(bench_dir, tmp_path):
    bench = read_bench(bench_dir)
    preds = _write(
        tmp_path / "p.jsonl", [{"question_id": i["question_id"], "response": i["answer"]} for i in bench.items]
    )
    result = runner.invoke(app, ["score", "--bench", str(bench_dir), "--predictions", str(preds),
                                 "--output", str(tmp_path / "m.json"), "--details", str(tmp_path / "d.jsonl")])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["dfd"]["acc"] == 1.0 and metrics["dfd"]["acer"] == 0.0 and metrics["dfd"]["parse_failure_rate"] == 0
    assert metrics["dfc"]["acc"] == 1.0 and metrics["ad"]["rouge_l"] == 1.0
    assert set(metrics["dfd"]) >= {
        "acc",
        "err",
        "apcer",
        "bpcer",
        "acer",
        "auc",
        "eer",
        "parse_failure_rate",
        "n",
        "ci95",
    }
    assert set(metrics["dfc"]) >= {"acc", "per_class", "confusion", "parse_failure_rate", "n", "ci95"}
    assert set(metrics["ad"]) >= {"rouge_l", "n", "ci95"}
    details = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert len(details) == len(bench.items)
    assert all(d["correct"] for d in details if d["task"] != "ad")
    assert "| dfd" in result.output


def test_missing_unknown_and_duplicate_ids(bench_dir, tmp_path):
    bench = read_bench(bench_dir)
    dfd = bench.items_for("dfd")
    rows = [{"question_id": i["question_id"], "response": i["answer"]} for i in dfd[:10]]
    rows += [{"question_id": "nope:dfd", "response": "yes"}, {"question_id": dfd[0]["question_id"], "response": "??"}]
    preds, problems = read_predictions(_write(tmp_path / "p.jsonl", rows))
    assert any("duplicate question_id" in p and "p.jsonl:12:" in p for p in problems)
    assert preds[dfd[0]["question_id"]]["response"] == dfd[0]["answer"]  # the first one is kept
    metrics, details, more = score_predictions(bench, preds)
    assert any("unknown question_id 'nope:dfd'" in p for p in more)
    assert any("have no prediction" in p for p in more)
    assert metrics["dfd"]["n"] == 30 and metrics["dfd"]["acc"] == pytest.approx(10 / 30)
    assert metrics["dfd"]["parse_failure_rate"] == pytest.approx(20 / 30)
    only, _, _ = score_predictions(bench, preds, only_answered=True)
    assert only["dfd"]["n"] == 10 and only["dfd"]["acc"] == 1.0 and "dfc" not in only


def test_scores_feed_auc(bench_dir, tmp_path):
    bench = read_bench(bench_dir)
    rows = [{"question_id": i["question_id"], "response": "yes", "score": 0.9 if i["label"] == "forgery" else 0.1}
            for i in bench.items_for("dfd")]  # fmt: skip
    preds, _ = read_predictions(_write(tmp_path / "p.jsonl", rows))
    metrics, _, _ = score_predictions(bench, preds, only_answered=True)
    assert metrics["dfd"]["auc"] == 1.0 and metrics["dfd"]["eer"] == 0.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "malformed JSON"),
        ('{"response": "yes"}', "field 'question_id'"),
        ('{"question_id": "a", "response": 3}', "field 'response'"),
        ('{"question_id": "a", "response": "yes", "score": "high"}', "field 'score'"),
        ('{"question_id": "a", "response": "yes", "score": NaN}', "field 'score'"),
    ],
)
def test_malformed_prediction_lines_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "p.jsonl", ['{"question_id": "ok", "response": "yes"}', line])
    with pytest.raises(ValidationError, match=message) as info:
        read_predictions(path)
    assert info.value.line == 2 and "p.jsonl:2:" in str(info.value)


def test_cli_reports_bad_input_with_exit_code(bench_dir, tmp_path):
    path = _write(tmp_path / "p.jsonl", ["{oops"])
    result = runner.invoke(app, ["score", "--bench", str(bench_dir), "--predictions", str(path)])
    assert result.exit_code == 2
    assert "p.jsonl:1" in result.output


def test_forked_rouge_worker_gives_identical_results(bench_dir, tmp_path, monkeypatch):
    from dfa_bench import scoring

    bench = read_bench(bench_dir)
    rows = [{"question_id": i["question_id"], "response": f"{i['answer']} plus some drift {n}"}
            for n, i in enumerate(bench.items) if n % 7]  # fmt: skip
    preds, _ = read_predictions(_write(tmp_path / "p.jsonl", rows))
    serial = score_predictions(bench, preds)
    monkeypatch.setattr(scoring, "_PARALLEL_AD_MIN", 1)
    with scoring.rouge_worker() as worker:
        assert worker is not None
        parallel = score_predictions(bench, preds, executor=worker)
    assert parallel == serial
    assert [r["question_id"] for r in parallel[1]] == [i["question_id"] for i in bench.items]
    assert 0 < serial[0]["ad"]["rouge_l"] < 1


def _answers(bench, *, dfd_label: str | None, ad: str | None) -> dict:
    """Predictions: the reference for DF-C; for DF-D the reference or the answer for `dfd_label`; for AD the
    reference or `ad`."""
    from dfa_bench.templates import dfd_answer

    out = {}
    for i, item in enumerate(bench.items, 1):
        response = item["answer"]
        if item["task"] == "dfd" and dfd_label:
            response = dfd_answer(item["polarity"], dfd_label)
        if item["task"] == "ad" and ad is not None:
            response = ad
        out[item["question_id"]] = {"response": response, "score": None, "line": i}
    return out


def test_region_grounding_and_verdict_consistency(bench_dir):
    bench = read_bench(bench_dir)
    n_ad = len(bench.items_for("ad"))
    # the references: every region right, and each description (artifacts claimed) agrees with "forgery"
    metrics, details, _ = score_predictions(bench, _answers(bench, dfd_label=None, ad=None))
    ad = metrics["ad"]
    assert ad["region_precision"] == ad["region_recall"] == ad["region_f1"] == 1.0
    assert ad["n_region_grounded"] == n_ad and ad["verdict_consistency"] == 1.0 and ad["n_verdict_paired"] == n_ad
    assert ad["stance"] == {"claimed": 1.0, "none": 0.0, "unclear": 0.0}
    row = next(d for d in details if d["task"] == "ad")
    assert row["consistent"] is True and row["regions"] == row["reference_regions"] != []
    # the same descriptions beside a DF-D answer of "bona fide" everywhere: the run contradicts itself
    metrics, details, _ = score_predictions(bench, _answers(bench, dfd_label="bona_fide", ad=None))
    assert metrics["ad"]["verdict_consistency"] == 0.0 and metrics["ad"]["region_f1"] == 1.0
    # "nothing to see" beside "bona fide" is consistent, and grounds no region
    metrics, _, _ = score_predictions(bench, _answers(bench, dfd_label="bona_fide", ad="No artifacts are visible."))
    assert metrics["ad"]["verdict_consistency"] == 1.0 and metrics["ad"]["region_f1"] == 0.0
    assert metrics["ad"]["stance"]["none"] == 1.0
    # one named region of two or more: precision 1, recall below 1, F1 by hand per item
    first = {item["question_id"]: sorted(claimed_regions(item["answer"]))[0] for item in bench.items_for("ad")}
    predictions = _answers(bench, dfd_label=None, ad=None)
    for qid, region in first.items():
        predictions[qid]["response"] = f"The {region.replace('_', ' ')} is blurred."
    metrics, details, _ = score_predictions(bench, predictions)
    expected = [2 * (1 / len(d["reference_regions"])) / (1 + 1 / len(d["reference_regions"]))
                for d in details if d["task"] == "ad"]  # fmt: skip
    assert metrics["ad"]["region_precision"] == 1.0
    assert metrics["ad"]["region_f1"] == pytest.approx(sum(expected) / len(expected))
    low, high = metrics["ad"]["ci95"]["region_f1"]
    assert low <= metrics["ad"]["region_f1"] <= high


def test_consistency_needs_the_dfd_answer_of_the_same_record(bench_dir):
    bench = read_bench(bench_dir)
    ad_only = {q: p for q, p in _answers(bench, dfd_label=None, ad=None).items() if q.endswith(":ad")}
    metrics, details, _ = score_predictions(bench, ad_only, only_answered=True)
    assert metrics["ad"]["verdict_consistency"] is None and metrics["ad"]["n_verdict_paired"] == 0
    assert all(d["consistent"] is None for d in details)
