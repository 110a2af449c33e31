"""Run a DFA-Bench evaluation through lmms-eval's Python API and score it with our metrics.

We drive lmms-eval's TaskManager, simple_evaluate and EvaluationTracker directly, so its results
and per-sample logs are written as its CLI writes them, but a failure raises (the `lmms-eval`
command exits 0 on failure) and our command exits non-zero. The equivalent lmms-eval command is
recorded in run.json for anyone who wants to rerun it by hand.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from dfa_bench.bench import read_bench
from dfa_bench.io import write_json, write_jsonl
from dfa_bench.lmms_task import BENCH_ENV, METRICS
from dfa_bench.responses import read_responses
from dfa_bench.schema import ValidationError
from dfa_bench.scoring import score_predictions

TASK_PREFIX = "dfa_bench_"
RESPONSES_FILE = "responses.jsonl"  # our adapters' response cache, next to the results


class EvaluationFailed(RuntimeError):
    """lmms-eval did not produce results for every requested task."""


@dataclass
class EvalOutputs:
    metrics: dict
    problems: list[str]
    lmms_eval_dir: Path
    command: str


def tasks_path() -> Path:
    """The installed directory of our task YAMLs (for lmms-eval's --include_path)."""
    from importlib import resources

    return Path(str(resources.files("dfa_bench.tasks")))


_SECRET_WORDS = ("key", "token", "secret", "password")


def redact_model_args(model_args: str) -> str:
    """Mask values of secret-looking model_args (api_key=..., token=...) before they reach a file."""
    parts = []
    for part in model_args.split(","):
        name, sep, _ = part.partition("=")
        secret = sep and any(word in name.lower() for word in _SECRET_WORDS)
        parts.append(f"{name}=***" if secret else part)
    return ",".join(parts)


def lmms_eval_argv(
    model: str, model_args: str, tasks: str, output: Path, *, limit: int | None, batch_size: int, seed: int
) -> list[str]:
    argv = [
        "--model", model,
        "--tasks", tasks,
        "--include_path", str(tasks_path()),
        "--batch_size", str(batch_size),
        "--output_path", str(output),
        "--log_samples",
        "--seed", f"{seed},{seed},{seed},{seed}",
    ]  # fmt: skip
    if model_args:
        argv += ["--model_args", redact_model_args(model_args)]
    if limit is not None:
        argv += ["--limit", str(limit)]
    return argv


def predictions_from_samples(samples: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """{"dfa_bench_dfd": [{"question_id", "response", "score"}...], ...} from lmms-eval's logged samples."""
    out = {}
    for task_name, task_samples in samples.items():
        if not task_name.startswith(TASK_PREFIX):
            continue
        first_metric = METRICS[task_name.removeprefix(TASK_PREFIX)][0]
        out[task_name] = [
            {
                "question_id": s[first_metric]["question_id"],
                "response": s[first_metric]["response"],
                "score": s[first_metric].get("score"),
            }
            for s in task_samples
        ]
    return out


def _is_ours(model: str) -> bool:
    from dfa_bench.adapters import ADAPTERS

    return model in ADAPTERS


def _merge_adapter_responses(rows: list[dict], responses_path: Path) -> list[str]:
    """Carry what lmms-eval's text-only samples lose from our adapters' response cache: the DF-D
    forgery probability (for AUC/EER), matched by question id and response text; and report the
    items whose last attempt failed."""
    if not responses_path.exists():
        return []
    latest: dict[str, dict] = {}
    for entry in read_responses(responses_path):
        latest[entry["question_id"]] = entry
    for row in rows:
        entry = latest.get(row["question_id"])
        if row.get("score") is None and entry and not entry.get("error") and entry["response"] == row["response"]:
            row["score"] = entry.get("score")
    failed = sorted(row["question_id"] for row in rows if (latest.get(row["question_id"]) or {}).get("error"))
    if not failed:
        return []
    shown = ", ".join(f"{q} ({latest[q]['error']})" for q in failed[:5])
    return [f"{len(failed)} items failed in the adapter (errors in {responses_path}): {shown}"]


def _simple_evaluate(
    model: str, model_args: str, tasks: str, lmms_dir: Path, *, limit: int | None, batch_size: int, seed: int
) -> tuple[dict, dict]:
    """lmms-eval's evaluation and logging, as its CLI does it, minus its habit of swallowing errors.

    We do not call its CLI entry: it also treats a task name that is a directory in the working
    directory (our `dfa_bench/` package, from the repo root) as a folder of YAMLs.
    """
    from lmms_eval import evaluator, utils
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.tasks import TaskManager

    task_manager = TaskManager("WARNING", include_path=str(tasks_path()), model_name=model)
    requested = [t.strip() for t in tasks.split(",") if t.strip()]
    unknown = [t for t in requested if not task_manager.match_tasks([t])]
    if unknown:
        raise EvaluationFailed(
            f"unknown tasks {unknown}; DFA-Bench provides dfa_bench, dfa_bench_dfd, dfa_bench_dfc, dfa_bench_ad"
        )
    tracker = EvaluationTracker(output_path=str(lmms_dir))
    datetime_str = utils.get_datetime_str()
    try:
        results = evaluator.simple_evaluate(
            model=model, model_args=model_args, tasks=task_manager.match_tasks(requested), batch_size=batch_size,
            limit=limit, bootstrap_iters=0, log_samples=True, evaluation_tracker=tracker, task_manager=task_manager,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
            datetime_str=datetime_str,
        )  # fmt: skip
    except ValidationError:
        raise
    except Exception as exc:
        raise EvaluationFailed(f"{type(exc).__name__}: {exc}") from exc
    if results is None:
        raise EvaluationFailed("lmms-eval returned no results")
    samples = results.pop("samples", None) or {}
    config = results.get("config") or {}
    if isinstance(config.get("model_args"), str):  # lmms-eval writes these into its results file as given
        config["model_args"] = redact_model_args(config["model_args"])
    # Extract before saving: the tracker's writer strips `doc` and `arguments` from samples in place.
    predictions = predictions_from_samples(samples)
    tracker.save_results_aggregated(results=results, samples=samples, datetime_str=datetime_str)
    for task_name in results.get("configs", {}):
        if task_name in samples:
            tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    return results, predictions


def run_eval(
    model: str,
    bench_dir: Path,
    output: Path,
    *,
    model_args: str = "",
    tasks: str = "dfa_bench",
    limit: int | None = None,
    batch_size: int = 1,
    seed: int = 0,
) -> EvalOutputs:
    bench_dir, output = Path(bench_dir).resolve(), Path(output)
    bench = read_bench(bench_dir)
    os.environ[BENCH_ENV] = str(bench_dir)
    responses_path = output / RESPONSES_FILE
    if _is_ours(model) and "response_cache=" not in model_args:
        # our adapters append every answer here as it arrives; re-running the command resumes from it
        model_args = ",".join(filter(None, [model_args, f"response_cache={responses_path.resolve()}"]))
    lmms_dir = output / "lmms_eval"
    argv = lmms_eval_argv(model, model_args, tasks, lmms_dir, limit=limit, batch_size=batch_size, seed=seed)
    results, answers_by_task = _simple_evaluate(
        model, model_args, tasks, lmms_dir, limit=limit, batch_size=batch_size, seed=seed
    )
    expected = [t for t in results.get("configs", {}) if t.startswith(TASK_PREFIX)]
    if not expected:
        raise EvaluationFailed(f"no DFA-Bench task ran (requested {tasks!r})")
    missing = [t for t in expected if not answers_by_task.get(t)]
    if missing:
        raise EvaluationFailed(f"no samples were logged for {missing}")

    rows = [row for task in expected for row in answers_by_task[task]]
    problems = _merge_adapter_responses(rows, responses_path)
    write_jsonl(output / "predictions.jsonl", rows)
    predictions = {row["question_id"]: {**row, "line": i} for i, row in enumerate(rows, 1)}
    metrics, details, scoring_problems = score_predictions(bench, predictions, only_answered=True, seed=seed)
    problems += scoring_problems
    empty = sum(1 for row in rows if not (row["response"] or "").strip())
    if empty:
        problems.append(f"{empty} of {len(rows)} responses are empty")
    write_json(output / "metrics.json", metrics)
    write_jsonl(output / "details.jsonl", details)
    command = shlex.join(["lmms-eval", *argv])
    write_json(
        output / "run.json",
        {"model": model, "model_args": redact_model_args(model_args), "bench": str(bench_dir), "bench_manifest_sha256": bench.manifest_sha256,
         "tasks": tasks, "limit": limit, "batch_size": batch_size, "seed": seed, "lmms_eval_command": command,
         "problems": problems},
    )  # fmt: skip
    return EvalOutputs(metrics, problems, lmms_dir, command)
