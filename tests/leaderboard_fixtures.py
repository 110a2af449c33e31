"""Hand-built `dfa-bench eval` output directories for the leaderboard tests (no model, no lmms-eval run).

They mimic what `dfa_bench.evaluate.run_eval` writes, in lmms-eval's formats as seen in a real run
(tests/test_leaderboard_roundtrip.py checks the real thing): run.json, predictions.jsonl, metrics.json,
lmms_eval/<model>/<date>_results.json, <date>_samples_dfa_bench_<task>.jsonl and responses.jsonl.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from dfa_bench import lmms_task
from dfa_bench.bench import Bench
from dfa_bench.io import write_json, write_jsonl
from dfa_bench.lmms_task import METRICS
from dfa_bench.scoring import judge, score_predictions

DATE = "20250102_030405"
MODEL_DIR = "fake__model"


def answers_for(bench: Bench, *, seed: int = 0) -> dict[str, dict]:
    """{question_id: {"response", "score"}}: two thirds reference answers (right), one third a hedge."""
    rng = random.Random(seed)
    out = {}
    for i, item in enumerate(bench.items):
        response = item["answer"] if i % 3 else "I am not sure."
        score = rng.random() if item["task"] == "dfd" else None
        out[item["question_id"]] = {"response": response, "score": score}
    return out


def samples_rel(task: str) -> str:
    return f"lmms_eval/{MODEL_DIR}/{DATE}_samples_dfa_bench_{task}.jsonl"


RESULTS_REL = f"lmms_eval/{MODEL_DIR}/{DATE}_results.json"


def make_eval_output(
    bench: Bench,
    out: Path,
    answers: dict[str, dict] | None = None,
    *,
    model: str = "dfa_hf",
    model_args: str = "pretrained=org/fake-model,api_key=sk-secret",
    seed: int = 0,
    tasks: tuple[str, ...] = ("dfd", "dfc", "ad"),
    limit: int | None = None,
    with_responses_cache: bool = True,
) -> Path:
    answers = answers if answers is not None else answers_for(bench)
    out.mkdir(parents=True, exist_ok=True)
    items = [i for i in bench.items if i["task"] in tasks and i["question_id"] in answers]
    if limit is not None:
        items = [i for t in tasks for i in [x for x in items if x["task"] == t][:limit]]
    results: dict = {"results": {}, "n-samples": {}}
    rows = []
    for task in tasks:
        task_items = [i for i in items if i["task"] == task]
        samples = []
        for doc_id, item in enumerate(task_items):
            response = answers[item["question_id"]]["response"]
            judged = judge(item, response)  # lmms-eval's process_results: text only, no probability
            sample = {"doc_id": doc_id, "target": item["answer"], "filtered_resps": response, "input": item["question"]}
            sample.update(dict.fromkeys(METRICS[task], judged))
            samples.append(sample)
            rows.append({"question_id": item["question_id"], "response": response, "score": None})
        write_jsonl(out / samples_rel(task), samples)
        block = {"alias": f" - dfa_bench_{task}"}
        for name in METRICS[task]:
            block[f"{name},none"] = getattr(lmms_task, f"aggregate_{name}")([s[name] for s in samples])
            block[f"{name}_stderr,none"] = "N/A"
        results["results"][f"dfa_bench_{task}"] = block
        results["n-samples"][f"dfa_bench_{task}"] = {"original": len(bench.items_for(task)), "effective": len(samples)}
    results.update(config={"model": model, "model_args": model_args}, lmms_eval_version="0.7.3", date=DATE)
    (out / RESULTS_REL).write_text(json.dumps(results, indent=2))  # NaN allowed, as lmms-eval writes it

    if with_responses_cache:  # our adapters' cache carries the DF-D probabilities
        write_jsonl(
            out / "responses.jsonl",
            [{"key": str(n), "question_id": r["question_id"], "task": r["question_id"].rsplit(":", 1)[1],
              "response": r["response"], "score": answers[r["question_id"]]["score"], "error": None}
             for n, r in enumerate(rows)],
        )  # fmt: skip
        for row in rows:
            row["score"] = answers[row["question_id"]]["score"]
    write_jsonl(out / "predictions.jsonl", rows)
    predictions = {r["question_id"]: {**r, "line": n} for n, r in enumerate(rows, 1)}
    metrics, _, _ = score_predictions(bench, predictions, only_answered=True, seed=seed)
    write_json(out / "metrics.json", metrics)
    write_json(
        out / "run.json",
        {"model": model, "model_args": model_args.replace("sk-secret", "***"), "bench": str(bench.root),
         "bench_manifest_sha256": bench.manifest_sha256, "tasks": "dfa_bench", "limit": limit, "batch_size": 1,
         "seed": seed, "lmms_eval_command": "lmms-eval ...", "problems": []},
    )  # fmt: skip
    return out


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` with its bytes (to show a rejected submission changed nothing)."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj, indent=2))


def edit_lines(path: Path, edit) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))


def fake_entry(
    model: str,
    group: str = "general MLLM",
    *,
    dfd: tuple[float, float, float] | None = (0.5, 0.5, 0.5),
    dfc: float | None = 0.2,
    ad: float | None = 0.1,
    provenance: str = "measured",
    ci: float = 0.01,
    params: int | None = None,
) -> dict:
    """A valid entry with the given headline values (fractions); CIs of +-`ci` for measured entries."""

    def block(values: dict) -> dict:
        out = dict(values)
        if provenance == "measured":
            out["n"] = 100
            out["ci95"] = {k: [max(0.0, v - ci), min(1.0, v + ci)] for k, v in values.items()}
        return out

    metrics = {}
    if dfd is not None:
        metrics["dfd"] = block({"acc": dfd[0], "err": dfd[1], "acer": dfd[2]})
        metrics["dfd"]["parse_failure_rate"] = 0.05
    if dfc is not None:
        metrics["dfc"] = block({"acc": dfc})
        metrics["dfc"]["parse_failure_rate"] = 0.1
    if ad is not None:
        metrics["ad"] = block({"rouge_l": ad})
    return {
        "schema": 1,
        "model": model,
        "adapter": "dfa_hf",
        "model_args": "",
        "params": params,
        "group": group,
        "provenance": provenance,
        "citation": "Someone et al., A Paper" if provenance == "reported" else None,
        "bench": {"name": "test-bench", "version": "1", "manifest_sha256": "a" * 64},
        "metrics": metrics,
    }
