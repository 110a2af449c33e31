"""`dfa-bench judge` against the test suite's fake OpenAI server: identity, rubric hash, grades, CI, rank
correlations, the cache, per-item failures and the key kept out of every file."""

from __future__ import annotations

import json
import re

import pytest
from fake_openai import FakeOpenAI
from typer.testing import CliRunner

from dfa_bench.bench import read_bench
from dfa_bench.cli import app
from dfa_bench.judge import ADJudge, parse_grade, rubric_bytes, rubric_sha256
from dfa_bench.rundir import write_results
from dfa_bench.scoring import score_predictions

runner = CliRunner()
SECRET = "sk-judge-secret-0123456789"


def _grade_by_reference(body: dict) -> str:
    """The fake judge: 5 when the answer is the reference word for word, 1 otherwise."""
    text = body["messages"][-1]["content"][0]["text"]
    reference, answer = re.match(r"Reference description:\n(.*)\n\nModel's description:\n(.*)\n\nRubric:", text,
                                 re.DOTALL).groups()  # fmt: skip
    assert body["messages"][-1]["content"][1]["image_url"]["url"].startswith("data:image/")
    return f"It {'matches' if answer == reference else 'does not match'}.\nScore: {5 if answer == reference else 1}"


@pytest.fixture
def run_dir(bench_dir, tmp_path):
    """A finished run whose AD answers are the reference for every other item and a denial for the rest."""
    bench = read_bench(bench_dir)
    predictions = {}
    for i, item in enumerate(bench.items, 1):
        right = item["task"] != "ad" or i % 2
        predictions[item["question_id"]] = {"response": item["answer"] if right else "No artifacts.", "score": None,
                                            "line": i}  # fmt: skip
    metrics, rows, _ = score_predictions(bench, predictions)
    run = {"model": "m", "model_args": "", "bench": str(bench_dir), "bench_manifest_sha256": bench.manifest_sha256}
    lines = [{"question_id": q, **p} for q, p in predictions.items()]
    write_results(tmp_path / "run", run, lines, metrics, rows)
    return tmp_path / "run"


def test_parse_grade():
    assert parse_grade("Good.\nScore: 4") == 4 and parse_grade("score = 2") == 2 and parse_grade("**Score:** 5") == 5
    assert parse_grade("Score: 3 ... Score: 1") == 1 and parse_grade("Score: 7") is None and parse_grade("") is None


def test_judge_grades_a_run_and_records_who_judged(run_dir, bench_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    fake = FakeOpenAI(reply=_grade_by_reference)
    try:
        args = ["judge", str(run_dir), "--judge-model", "gpt-4o-judge", "--judge-args",
                f"base_url={fake.url},concurrency=2"]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        out = json.loads((run_dir / "judge/gpt-4o-judge.json").read_text())
        n_ad = len(read_bench(bench_dir).items_for("ad"))
        assert out["n"] == out["n_graded"] == n_ad == len(fake.calls)
        right = sum(1 for line in (run_dir / "details.jsonl").read_text().splitlines()
                    if json.loads(line)["task"] == "ad" and json.loads(line)["rouge_l"] == 1.0)  # fmt: skip
        assert out["score"] == pytest.approx(right / n_ad) and out["grades"]["5"] == right
        assert out["ci95"][0] <= out["score"] <= out["ci95"][1]
        assert out["spearman"]["rouge_l"] > 0.9 and out["spearman"]["region_f1"] > 0.5
        judge = out["judge"]
        assert judge["model"] == "gpt-4o-judge" and judge["rubric_sha256"] == rubric_sha256()
        assert judge["settings"] == {"temperature": 0, "max_tokens": 300, "detail": "low"}
        assert judge["base_url"] == fake.url
        assert all(call["body"]["temperature"] == 0 for call in fake.calls)
        assert all(call["auth"] == f"Bearer {SECRET}" for call in fake.calls)
        # cached: a second run asks nothing
        again = runner.invoke(app, args)
        assert again.exit_code == 0 and len(fake.calls) == n_ad
    finally:
        fake.close()
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="ignore")
    assert rubric_sha256() in (run_dir / "judge/gpt-4o-judge.json").read_text()
    assert b"Score: N" in rubric_bytes()


def test_failed_items_are_named_and_only_they_are_asked_again(run_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    fake = FakeOpenAI(["400"], reply=_grade_by_reference)
    try:
        args = ["judge", str(run_dir), "--judge-model", "j", "--judge-args", f"base_url={fake.url},concurrency=1"]
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "1 items were not graded" in result.output and ":ad" in result.output
        out = json.loads((run_dir / "judge/j.json").read_text())
        assert len(out["failures"]) == 1 and out["n_graded"] == out["n"] - 1
        asked = len(fake.calls)
        again = runner.invoke(app, args)
        assert again.exit_code == 0, again.output
        assert len(fake.calls) == asked + 1  # only the failed item
    finally:
        fake.close()


def test_the_identity_never_holds_url_credentials(tmp_path):
    judge = ADJudge(tmp_path, model="j", args={"base_url": "https://user:hunter2@judge.example/v1"})
    assert "hunter2" not in json.dumps(judge.identity()) and "judge.example" in judge.identity()["base_url"]


def test_bad_judge_arguments_and_missing_key(run_dir, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = runner.invoke(app, ["judge", str(run_dir), "--judge-model", "j", "--judge-args", "temprature=1"])
    assert result.exit_code == 2 and "unknown judge argument" in result.output
    result = runner.invoke(app, ["judge", str(run_dir), "--judge-model", "j", "--judge-args", "base_url=http://x"])
    assert result.exit_code == 2 and "OPENAI_API_KEY" in result.output


def test_submit_carries_the_judge_into_the_entry_and_the_table(bench_dir, tmp_path, monkeypatch):
    from leaderboard_fixtures import make_eval_output

    from dfa_bench.io import write_jsonl
    from dfa_bench.leaderboard.entries import init_leaderboard, load_entries
    from dfa_bench.leaderboard.render import render
    from dfa_bench.leaderboard.submit import SubmissionRejected, submit

    bench = read_bench(bench_dir)
    run = make_eval_output(bench, tmp_path / "run")
    predictions = {json.loads(line)["question_id"]: {**json.loads(line), "line": n} for n, line in
                   enumerate((run / "predictions.jsonl").read_text().splitlines(), 1)}  # fmt: skip
    _, rows, _ = score_predictions(bench, predictions, only_answered=True)
    write_jsonl(run / "details.jsonl", rows)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    fake = FakeOpenAI(reply=_grade_by_reference)
    try:
        result = runner.invoke(app, ["judge", str(run), "--judge-model", "judge-x", "--judge-args",
                                     f"base_url={fake.url}"])  # fmt: skip
        assert result.exit_code == 0, result.output
    finally:
        fake.close()
    init_leaderboard(tmp_path / "lb", bench_dir)
    entry, _ = submit(run, tmp_path / "lb", model_name="judged")
    (judged,) = entry["judges"]
    assert judged["judge"]["model"] == "judge-x" and judged["judge"]["rubric_sha256"] == rubric_sha256()
    assert judged["recomputed"] is False and judged["rubric_current"] is True
    assert judged["score"] == json.loads((run / "judge/judge-x.json").read_text())["score"]
    assert "AD judge judge-x (rubric sha256 " in render(load_entries(tmp_path / "lb"), "md")
    # a judge result for another bench is refused, by file name
    result_path = run / "judge/judge-x.json"
    tampered = json.loads(result_path.read_text())
    tampered["run"]["bench_manifest_sha256"] = "0" * 64
    result_path.write_text(json.dumps(tampered))
    with pytest.raises(SubmissionRejected, match="judge/judge-x.json: the judge graded answers on another bench"):
        submit(run, tmp_path / "lb", model_name="judged again")
