"""End to end through lmms-eval with a tiny random LLaVA: its own CLI, and `dfa-bench eval`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dfa_bench.bench import build_bench
from dfa_bench.evaluate import tasks_path
from dfa_bench.instruct.synthetic import make_source
from dfa_bench.tiny_models import build_tiny_llava

pytestmark = pytest.mark.slow
LIMIT = 3
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    make_source(root / "src", 10, seed=2)
    build_bench(root / "src" / "records.jsonl", root / "src", root / "bench", seed=0)
    model = build_tiny_llava(root / "tiny-llava")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return root, model, env


def _model_args(model: Path) -> str:
    return f"pretrained={model},device_map=cpu,device=cpu,dtype=float32"


def _results(directory: Path) -> dict:
    (path,) = directory.glob("*/*_results.json")
    return json.loads(path.read_text())


def test_plain_lmms_eval_cli_with_include_path(setup):
    root, model, env = setup
    out = root / "plain"
    cmd = [str(BIN / "lmms-eval"), "--model", "llava_hf", "--model_args", _model_args(model), "--tasks", "dfa_bench",
           "--include_path", str(tasks_path()), "--limit", str(LIMIT), "--output_path", str(out), "--log_samples"]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=root, env={**env, "DFA_BENCH_DIR": str(root / "bench")}, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = _results(out)["results"]
    assert set(results) >= {"dfa_bench_dfd", "dfa_bench_dfc", "dfa_bench_ad"}
    for name in ("acc,none", "err,none", "acer,none", "parse_failure_rate,none"):
        assert 0.0 <= results["dfa_bench_dfd"][name] <= 1.0
    assert results["dfa_bench_dfd"]["acc,none"] + results["dfa_bench_dfd"]["err,none"] == pytest.approx(1.0)
    assert 0.0 <= results["dfa_bench_ad"]["rouge_l,none"] <= 1.0
    samples = list(out.glob("*/*_samples_dfa_bench_dfd.jsonl"))
    assert len(samples) == 1 and len(samples[0].read_text().splitlines()) == LIMIT


def test_plain_lmms_eval_cli_finds_our_adapters_through_the_entry_point(setup):
    root, model, env = setup
    out = root / "plain-dfa-llava"
    cmd = [str(BIN / "lmms-eval"), "--model", "dfa_llava", "--model_args", f"pretrained={model},device=cpu,dtype=float32",
           "--tasks", "dfa_bench_dfd", "--include_path", str(tasks_path()), "--limit", str(LIMIT), "--batch_size", "3",
           "--output_path", str(out), "--log_samples"]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=root, env={**env, "DFA_BENCH_DIR": str(root / "bench")}, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 0.0 <= _results(out)["results"]["dfa_bench_dfd"]["acc,none"] <= 1.0
    (cache,) = (root / "dfa_bench_responses").glob("dfa_llava-*.jsonl")  # the default response cache
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(rows) == LIMIT and all(0.0 <= row["score"] <= 1.0 for row in rows)


def test_dfa_bench_eval_matches_lmms_eval_results(setup):
    root, model, env = setup
    out = root / "ours"
    cmd = [str(BIN / "dfa-bench"), "eval", "--model", "llava_hf", "--model-args", _model_args(model),
           "--bench", str(root / "bench"), "--output", str(out), "--limit", str(LIMIT)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    lmms = _results(out / "lmms_eval")["results"]
    for task, names in {"dfd": ("acc", "err", "apcer", "bpcer", "acer", "parse_failure_rate"), "dfc": ("acc",),
                        "ad": ("rouge_l",)}.items():  # fmt: skip
        assert metrics[task]["n"] == LIMIT
        for name in names:
            value = lmms[f"dfa_bench_{task}"][f"{name},none"]
            assert metrics[task][name] == pytest.approx(value, nan_ok=True), (task, name)
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 3 * LIMIT
    details = [json.loads(line) for line in (out / "details.jsonl").read_text().splitlines()]
    assert {d["question_id"] for d in details} == {p["question_id"] for p in predictions}
    run = json.loads((out / "run.json").read_text())
    assert run["lmms_eval_command"].startswith("lmms-eval --model llava_hf")
    assert "| dfd" in proc.stdout

    # Greedy decoding is deterministic: the plain lmms-eval run saw the same answers.
    plain = root / "plain"
    if plain.exists():
        (sample_file,) = plain.glob("*/*_samples_dfa_bench_dfc.jsonl")
        plain_responses = {json.loads(line)["acc"]["question_id"]: json.loads(line)["acc"]["response"]
                           for line in sample_file.read_text().splitlines()}  # fmt: skip
        ours = {p["question_id"]: p["response"] for p in predictions if p["question_id"].endswith(":dfc")}
        assert ours == plain_responses


def test_dfa_bench_eval_exits_non_zero_on_failure(setup, tmp_path):
    root, _, env = setup
    cmd = [str(BIN / "dfa-bench"), "eval", "--model", "llava_hf", "--model-args",
           f"pretrained={tmp_path / 'no-such-model'},device_map=cpu", "--bench", str(root / "bench"),
           "--output", str(tmp_path / "out"), "--limit", "1"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "evaluation failed" in proc.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_dfa_bench_eval_rejects_unknown_task(setup, tmp_path):
    root, model, env = setup
    cmd = [str(BIN / "dfa-bench"), "eval", "--model", "llava_hf", "--model-args", _model_args(model),
           "--bench", str(root / "bench"), "--output", str(tmp_path / "out"), "--tasks", "dfa_bench_fc"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "unknown tasks ['dfa_bench_fc']" in proc.stderr
