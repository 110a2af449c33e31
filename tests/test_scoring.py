from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

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
