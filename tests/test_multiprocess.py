"""Two processes (gloo, CPU) evaluate the tiny LLaVA: the same answers and outputs as one process, and a
run whose rank-1 process is killed resumes, asking only what was left unanswered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dfa_bench.bench import build_bench
from dfa_bench.evaluate import run_eval
from dfa_bench.instruct.synthetic import make_source
from dfa_bench.launch import free_port
from dfa_bench.responses import rank_paths, read_responses
from dfa_bench.tiny_models import build_tiny_llava

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
HERE = Path(__file__).parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    make_source(root / "src", 5, seed=3)  # odd task sizes: lmms-eval pads the shorter shard with a repeat
    build_bench(root / "src" / "records.jsonl", root / "src", root / "bench", seed=0)
    model = build_tiny_llava(root / "tiny-llava")
    model_args = f"pretrained={model},device=cpu,dtype=float32"
    baseline = root / "one"
    run_eval("dfa_llava", root / "bench", baseline, model_args=model_args, batch_size=1)
    return root, model_args, baseline


def eval_argv(root: Path, model: str, model_args: str, output: Path) -> list[str]:
    return ["eval", "--model", model, "--model-args", model_args, "--bench", str(root / "bench"),
            "--output", str(output), "--batch-size", "1"]  # fmt: skip


def samples(output: Path) -> dict[str, str]:
    return {p.name.split("_samples_")[1]: p.read_text() for p in output.glob("lmms_eval/*/*_samples_*.jsonl")}


def test_two_processes_resume_a_killed_run_and_answer_as_one(setup):
    root, model_args, baseline = setup
    out = root / "two"
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(HERE)}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
              "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port())]  # fmt: skip
    killed = subprocess.run(
        [*launch, str(HERE / "dying_llava.py"), *eval_argv(root, "dying_llava", model_args, out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert killed.returncode != 0, killed.stderr[-3000:]
    assert "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    parts = rank_paths(out / "responses.jsonl")
    assert [p.name for p in parts] == ["responses.rank0.jsonl", "responses.rank1.jsonl"]  # one file per process
    before = {row["question_id"] for row in read_responses(out / "responses.jsonl")}
    expected = [json.loads(line)["question_id"] for line in (baseline / "predictions.jsonl").read_text().splitlines()]
    assert 0 < len(before) < len(expected)
    assert not (out / "metrics.json").exists()

    resumed = subprocess.run(
        [str(BIN / "dfa-bench"), *eval_argv(root, "dfa_llava", model_args, out), "--num-processes", "2"],
        env={**os.environ, **OFFLINE}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "launching: accelerate launch --num_processes 2" in resumed.stderr
    assert resumed.stdout.count("wrote ") == 1  # rank 0 alone reports and writes

    # Only the unanswered items were asked again: every item has exactly one line, now in one file.
    rows = read_responses(out / "responses.jsonl")
    assert sorted(row["question_id"] for row in rows) == sorted(expected)
    assert not rank_paths(out / "responses.jsonl") and not any(row["error"] for row in rows)
    # Every answer, score, metric, detail and logged sample is the one-process run's.
    assert {r["key"]: (r["response"], r["score"]) for r in rows} == {
        r["key"]: (r["response"], r["score"]) for r in read_responses(baseline / "responses.jsonl")
    }
    for name in ("predictions.jsonl", "metrics.json", "details.jsonl"):
        assert (out / name).read_text() == (baseline / name).read_text(), name
    assert samples(out) == samples(baseline) and len(samples(out)) == 3
    run = json.loads((out / "run.json").read_text())
    assert run["num_processes"] == 2 and run["lmms_eval_command"].startswith("accelerate launch --num_processes 2")
