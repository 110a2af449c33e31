"""dfa-bench eval with adapters that are not ours, runs whose items fail, and caches that went stale."""

from __future__ import annotations

import json

import numpy as np
import pytest
from loguru import logger
from PIL import Image
from thirdparty_adapter import ImageMeanAdapter, register

from dfa_bench.bench import build_bench
from dfa_bench.evaluate import EvaluationFailed, parse_max_failures, run_eval, uses_dfa_adapter
from dfa_bench.instruct.synthetic import make_source
from dfa_bench.io import sha256_file
from dfa_bench.lmms_task import BENCH_ENV
from dfa_bench.responses import read_responses
from dfa_bench.schema import ValidationError

LIMIT = 3  # items per task: 9 questions a run


@pytest.fixture
def small_bench(tmp_path, monkeypatch):
    monkeypatch.setenv(BENCH_ENV, "")  # run_eval sets it; monkeypatch puts the old value back after
    make_source(tmp_path / "src", 10, seed=3)
    build_bench(tmp_path / "src" / "records.jsonl", tmp_path / "src", tmp_path / "bench", seed=0)
    ImageMeanAdapter.calls.clear()
    return tmp_path / "bench"


def run(bench, output, model_args="", **kwargs):
    return run_eval(register(), bench, output, model_args=model_args, limit=LIMIT, **kwargs)


def responses(output):
    return [json.loads(line) for line in (output / "responses.jsonl").read_text().splitlines()]


def test_a_third_party_adapter_is_treated_like_ours(small_bench, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a cache in ./dfa_bench_responses would show up here
    assert uses_dfa_adapter(register()) and not uses_dfa_adapter("llava_hf")
    output = tmp_path / "out"
    result = run(small_bench, output)
    assert len(responses(output)) == 3 * LIMIT  # the cache lives in OUTPUT, not in the working directory
    assert not (tmp_path / "dfa_bench_responses").exists()
    assert result.metrics["dfd"]["auc"] is not None  # DF-D probabilities carried from the cache
    run_json = json.loads((output / "run.json").read_text())
    assert run_json["status"] == "ok" and run_json["failed_items"] == 0
    assert "response_cache=" in run_json["model_args"]

    run(small_bench, output)  # answered from the cache: nothing asked again
    assert len(ImageMeanAdapter.calls) == 3 * LIMIT


def test_the_cache_line_is_shown_at_default_verbosity(small_bench, tmp_path, capsys):
    output = tmp_path / "out"
    run(small_bench, output)
    capsys.readouterr()
    run(small_bench, output)
    err = capsys.readouterr().err
    assert f"acme_image_mean: {3 * LIMIT} of {3 * LIMIT} answers from the cache" in err


def test_a_run_where_every_item_fails_is_a_failed_run(small_bench, tmp_path):
    output = tmp_path / "out"
    (output).mkdir()
    (output / "metrics.json").write_text("{}")  # a previous run's metrics must not look current
    with pytest.raises(EvaluationFailed, match=rf"{3 * LIMIT} of {3 * LIMIT} items failed, more than --max-failures 0"):
        run(small_bench, output, model_args="fail=all")
    assert not (output / "metrics.json").exists() and not (output / "predictions.jsonl").exists()
    run_json = json.loads((output / "run.json").read_text())
    assert run_json["status"] == "failed" and "no chat template for" in run_json["error"]
    assert all(r["error"] for r in responses(output))  # kept: errors are a record, and are re-asked next time

    # allowed failures: the run counts, and says how many failed
    result = run(small_bench, output, model_args="fail=all", max_failures="100%")
    assert any(f"{3 * LIMIT} items failed in the adapter" in p for p in result.problems)
    assert json.loads((output / "run.json").read_text())["failed_items"] == 3 * LIMIT


def test_max_failures_takes_a_count_or_a_fraction():
    assert parse_max_failures("0") == (0, None) and parse_max_failures(3) == (3, None)
    assert parse_max_failures("0.05") == (None, 0.05) and parse_max_failures("5%") == (None, 0.05)
    for bad in ("-1", "x", "150%", "1.5"):
        with pytest.raises(ValidationError, match="max-failures"):
            parse_max_failures(bad)


def test_a_changed_image_is_never_answered_from_the_cache(small_bench, tmp_path):
    output = tmp_path / "out"
    run(small_bench, output)
    old = {r["question_id"]: r["score"] for r in responses(output) if r["task"] == "dfd"}
    first_qid = sorted(old)[0]

    # replace the first DF-D item's image with a white one, and update the manifest as a rebuild would
    items = [json.loads(line) for line in (small_bench / "questions.jsonl").read_text().splitlines()]
    image = next(item["image"] for item in items if item["question_id"] == first_qid)
    Image.fromarray(np.full((64, 64, 3), 255, dtype=np.uint8)).save(small_bench / image)
    manifest = json.loads((small_bench / "manifest.json").read_text())
    manifest["files"][image] = sha256_file(small_bench / image)
    (small_bench / "manifest.json").write_text(json.dumps(manifest))

    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="WARNING")
    try:
        result = run(small_bench, output)
    finally:
        logger.remove(sink)
    new = {r["question_id"]: r["score"] for r in responses(output)[3 * LIMIT :] if r["task"] == "dfd"}
    assert new[first_qid] == pytest.approx(1.0) and old[first_qid] < 0.99  # the new image's answer
    # another bench: nothing of the old one is served, and the log says how many were dropped
    assert len(ImageMeanAdapter.calls) == 2 * 3 * LIMIT
    assert any(f"{3 * LIMIT} cached answers not used" in line for line in logged)
    predictions = [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]
    assert {p["question_id"]: p["score"] for p in predictions if p["question_id"] in new} == new
    assert result.metrics["dfd"]["n"] == LIMIT


def test_the_cache_named_in_model_args_is_the_one_read(small_bench, tmp_path):
    cache = tmp_path / "elsewhere" / "answers.jsonl"
    result = run(small_bench, tmp_path / "out", model_args=f"response_cache={cache}")
    assert len(read_responses(cache)) == 3 * LIMIT and not (tmp_path / "out" / "responses.jsonl").exists()
    assert result.metrics["dfd"]["auc"] is not None and result.problems == []


def test_answers_missing_from_the_cache_are_reported(tmp_path):
    from dfa_bench.evaluate import _merge_adapter_responses

    cache = tmp_path / "responses.jsonl"
    cache.write_text(json.dumps({"question_id": "q1", "response": "Yes", "score": 0.9, "error": None}) + "\n")
    rows = [{"question_id": q, "response": "Yes", "score": None} for q in ("q1", "q2", "q3")]
    failures = _merge_adapter_responses(rows, cache, "sha")
    assert failures.unlogged == 2 and [row["score"] for row in rows] == [0.9, None, None]


def test_a_bench_without_ad_items_runs_the_tasks_it_has():
    from dfa_bench.evaluate import tasks_on_bench

    assert tasks_on_bench("dfa_bench", {"dfd", "dfc", "ad"}) == "dfa_bench"  # the group, as lmms-eval reports it
    assert tasks_on_bench("dfa_bench", {"dfd", "dfc"}) == "dfa_bench_dfd,dfa_bench_dfc"
    assert tasks_on_bench("dfa_bench_dfc,dfa_bench", {"dfd", "dfc"}) == "dfa_bench_dfc,dfa_bench_dfd"
    with pytest.raises(ValidationError, match="no ad items"):
        tasks_on_bench("dfa_bench_ad", {"dfd", "dfc"})


def test_a_run_reads_its_bench_once_and_leaves_the_environment_as_it_was(small_bench, tmp_path, monkeypatch):
    from dfa_bench import bench as bench_module
    from dfa_bench import evaluate, lmms_task

    reads = []

    def counting(root, *args, **kwargs):
        reads.append(root)
        return bench_module.read_bench(root, *args, **kwargs)

    monkeypatch.setattr(evaluate, "read_bench", counting)
    monkeypatch.setattr(lmms_task, "read_bench", counting)
    monkeypatch.setenv(BENCH_ENV, "/where/a/plain/lmms-eval/run/pointed")
    run(small_bench, tmp_path / "out")
    assert len(reads) == 1  # evaluate's read; the task hooks use it (they read it again before)
    assert evaluate.os.environ[BENCH_ENV] == "/where/a/plain/lmms-eval/run/pointed"
