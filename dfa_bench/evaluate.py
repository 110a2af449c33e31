"""Run a DFA-Bench evaluation through lmms-eval's Python API and score it with our metrics.

We drive lmms-eval's TaskManager, simple_evaluate and EvaluationTracker directly, so its results
and per-sample logs are written as its CLI writes them, but a failure raises (the `lmms-eval`
command exits 0 on failure) and our command exits non-zero. The equivalent lmms-eval command is
recorded in run.json for anyone who wants to rerun it by hand.

Under N processes (`accelerate launch`, `dfa-bench eval --num-processes N`) every process runs this:
lmms-eval answers each process's shard and gathers results and samples on rank 0, which alone writes
the outputs. The other processes return None.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from dfa_bench.bench import Bench, read_bench
from dfa_bench.environment import model_identity, package_versions
from dfa_bench.lmms_task import METRICS, serving
from dfa_bench.responses import merge_rank_files, read_responses
from dfa_bench.rundir import (
    LMMS_DIR,
    RESPONSES_FILE,
    carry_probabilities,
    clear_results,
    record_failure,
    write_results,
)
from dfa_bench.schema import TASKS, ValidationError
from dfa_bench.scoring import score_predictions

TASK_PREFIX = "dfa_bench_"


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


# words of an argument's name (split at _ - .) that make its value a secret: api_key, HF_TOKEN, password,
# but not max_new_tokens or tokenizer, whose values a run must record to be reproduced
_SECRET_WORDS = frozenset(
    {"key", "apikey", "token", "secret", "password", "passwd", "auth", "credential", "credentials"}
)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s,]+@")


def is_secret_name(name: str) -> bool:
    return any(word in _SECRET_WORDS for word in re.split(r"[_.\-]+", name.strip().lower()))


def redact_url_credentials(text: str) -> str:
    """`http://user:PASSWORD@host/v1` -> `http://***@host/v1`, anywhere in `text`."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def redact_model_args(model_args: str) -> str:
    """Mask the values of secret model_args (api_key=..., token=...) and the credentials in URLs
    (base_url=http://user:pass@host) before they reach a file or a log."""
    parts = []
    for part in model_args.split(","):
        name, sep, _ = part.partition("=")
        parts.append(f"{name}=***" if sep and is_secret_name(name) else redact_url_credentials(part))
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


def parse_model_args(model_args: str) -> dict[str, str]:
    """`a=1,b=two` as a dict; a part without `=` is named in the error."""
    args = {}
    for part in filter(None, (p.strip() for p in model_args.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValidationError(f"model argument {redact_model_args(part)!r} is not name=value", field="model-args")
        if name.strip() in args:  # which one wins would be the adapter's guess
            raise ValidationError(f"model argument {name.strip()!r} is given twice", field="model-args")
        args[name.strip()] = value
    return args


def join_model_args(args: dict[str, object]) -> str:
    """The dict as lmms-eval's comma-joined `name=value` string (what its --model_args takes)."""
    return ",".join(f"{name}={value}" for name, value in args.items())


def parse_max_failures(value: str | int | float) -> tuple[int | None, float | None]:
    """(count, fraction): "3" allows 3 failed items, "0.05" or "5%" allows 5% of them."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            fraction = float(text[:-1]) / 100
        elif "." in text:
            fraction = float(text)
        else:
            count = int(text)
            if count < 0:
                raise ValueError
            return count, None
    except ValueError:
        raise ValidationError(
            f"expected a count (3) or a fraction (0.05 or 5%), got {text!r}", field="max-failures"
        ) from None
    if not 0 <= fraction <= 1:
        raise ValidationError(f"a fraction must lie in [0, 1], got {text!r}", field="max-failures")
    return None, fraction


def model_class(model: str) -> type:
    """The class lmms-eval would build for `model`; an unknown name names what is registered."""
    import difflib

    from lmms_eval import models

    names = models.list_available_models(include_aliases=True)
    if model not in names:
        ours = sorted(n for n in names if n.startswith("dfa_"))
        close = difflib.get_close_matches(model, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "."
        raise ValidationError(
            f"unknown model {model!r}{hint} DFA-Bench's adapters: {', '.join(ours)}. Any other lmms-eval model "
            "name works too; a new adapter registers through the `lmms_eval.models` entry point (docs/adapters.md)",
            field="model",
        )
    try:
        return models.get_model(model)
    except Exception as exc:
        raise EvaluationFailed(f"model {model!r} cannot be imported: {type(exc).__name__}: {exc}") from exc


def uses_dfa_adapter(model: str) -> bool:
    """Whether `model` is a DFAAdapter (ours or a third party's): decided by class, not by name."""
    from dfa_bench.contract import is_dfa_adapter

    return is_dfa_adapter(model_class(model))


@dataclass
class AdapterFailures:
    question_ids: list[str]
    errors: dict[str, str]
    unlogged: int = 0  # answers with no line in the response cache (another machine's, on its own disk)

    def describe(self, responses_path: Path, shown: int = 5) -> str:
        first = ", ".join(f"{q} ({self.errors[q]})" for q in self.question_ids[:shown])
        return f"{len(self.question_ids)} items failed in the adapter (errors in {responses_path}): {first}"


def _merge_adapter_responses(rows: list[dict], responses_path: Path, bench_sha256: str) -> AdapterFailures:
    """Carry what lmms-eval's text-only samples lose from a DFA adapter's response cache: the DF-D
    forgery probability (for AUC/EER), matched by question id and response text; and find the
    items whose last attempt on this bench failed (answers kept for other benches are ignored)."""
    latest: dict[str, dict] = {}
    for entry in read_responses(responses_path):
        if entry.get("bench") in (None, bench_sha256):
            latest[entry["question_id"]] = entry
    failed = carry_probabilities(rows, latest)
    unlogged = sum(1 for row in rows if row["question_id"] not in latest)
    return AdapterFailures(failed, {q: latest[q]["error"] for q in failed}, unlogged)


class _InfoLog:
    """lmms-eval lowers loguru to WARNING when it is imported; DFA-Bench's own INFO lines (answers from
    the cache, run summaries) are shown all the same, on stderr, while a run lasts."""

    def __enter__(self) -> _InfoLog:
        import sys

        import lmms_eval.llm_judge.launcher  # noqa: F401  (these two modules reset loguru's sinks on import:
        import lmms_eval.models  # noqa: F401  add ours after them)
        from loguru import logger

        def ours(record: dict) -> bool:
            return record["name"].startswith("dfa_bench") and record["level"].no < 30  # WARNING+ already shown

        self._id = logger.add(sys.stderr, level="INFO", filter=ours, format="{time:HH:mm:ss} | {level} | {message}")
        return self

    def __exit__(self, *exc: object) -> None:
        from loguru import logger

        try:
            logger.remove(self._id)
        except ValueError:  # something else removed every sink meanwhile
            pass


def process_rank() -> int:
    """This process's rank under torchrun / accelerate launch; 0 when it runs alone."""
    return int(os.environ.get("RANK", 0))


def _simple_evaluate(
    model: str, model_args: str, tasks: str, lmms_dir: Path, *, limit: int | None, batch_size: int, seed: int
) -> tuple[dict | None, dict]:
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
        if process_rank() != 0:  # lmms-eval gathered this process's results on rank 0
            return None, {}
        raise EvaluationFailed("lmms-eval returned no results")
    samples = results.pop("samples", None) or {}
    for task_samples in samples.values():  # rank 0 gathers shard after shard: back to the bench's order
        task_samples.sort(key=lambda sample: sample["doc_id"])
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


def check_eval_inputs(output: Path, model_args: str, limit: int | None, batch_size: int) -> dict[str, str]:
    """Faults of the command line, found before anything is loaded or written; returns the parsed model_args."""
    if output.exists() and not output.is_dir():
        raise ValidationError("--output must be a directory; this is an existing file", path=str(output))
    if limit is not None and limit < 1:
        raise ValidationError(f"--limit counts items per task and must be at least 1, got {limit}", field="limit")
    if batch_size < 1:
        raise ValidationError(f"--batch-size must be at least 1, got {batch_size}", field="batch-size")
    return parse_model_args(model_args)


def tasks_on_bench(tasks: str, present: set[str]) -> str:
    """The lmms-eval tasks to run on a bench whose items have the tasks `present`. A bench built without AD
    references has no AD items, and lmms-eval fails on a task with no documents: there the `dfa_bench` group
    becomes its subtasks that have items. A subtask named on its own with no items is refused."""
    if set(TASKS) <= present:
        return tasks
    run = []
    for name in (t.strip() for t in tasks.split(",") if t.strip()):
        task = name.removeprefix("dfa_bench_")
        if name == "dfa_bench":
            run += [f"dfa_bench_{t}" for t in TASKS if t in present]
        elif task in TASKS and task not in present:
            raise ValidationError(f"the bench has no {task} items (its forgeries have no AD reference), so {name} "
                                  "cannot run")  # fmt: skip
        else:
            run.append(name)
    return ",".join(dict.fromkeys(run))


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
    max_failures: str | int | float = 0,
) -> EvalOutputs | None:
    """Evaluate, score and write OUTPUT/{predictions.jsonl, metrics.json, details.jsonl, run.json}.

    More failed items than `max_failures` (a count, or a fraction such as 0.05) fails the run: run.json
    records why, no metrics are written, and the response cache is kept so a re-run resumes.
    Under several processes only rank 0 writes and returns the outputs; the others return None.
    """
    bench_dir, output = Path(bench_dir).resolve(), Path(output)
    given_args = check_eval_inputs(output, model_args, limit, batch_size)  # parsed once, here
    allowed = parse_max_failures(max_failures)
    bench = read_bench(bench_dir)
    with serving(bench):  # the task hooks use this bench as read here; DFA_BENCH_DIR is restored after
        return _run_eval(model, bench, output, given_args=given_args, tasks=tasks, limit=limit,
                         batch_size=batch_size, seed=seed, max_failures=max_failures, allowed=allowed)  # fmt: skip


def _run_eval(
    model: str, bench: Bench, output: Path, *, given_args: dict[str, str], tasks: str, limit: int | None,
    batch_size: int, seed: int, max_failures: str | int | float, allowed: tuple[int | None, float | None],
) -> EvalOutputs | None:  # fmt: skip
    bench_dir = bench.root
    allowed_count, allowed_fraction = allowed
    run_tasks = tasks_on_bench(tasks, {item["task"] for item in bench.items})
    responses_path = Path(given_args.get("response_cache") or output / RESPONSES_FILE)
    dfa_adapter = uses_dfa_adapter(model)
    args = dict(given_args)
    if dfa_adapter and "response_cache" not in args:
        # DFA adapters append every answer here as it arrives; re-running the command resumes from it
        args["response_cache"] = str(responses_path.resolve())
    model_args = join_model_args(args)  # lmms-eval takes the string
    lmms_dir = output / LMMS_DIR
    argv = lmms_eval_argv(model, model_args, run_tasks, lmms_dir, limit=limit, batch_size=batch_size, seed=seed)
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    launcher = ["accelerate", "launch", "--num_processes", str(world_size), "--multi_gpu", "-m", "lmms_eval"]
    command = shlex.join([*(launcher if world_size > 1 else ["lmms-eval"]), *argv])
    run = {"model": model, "model_args": redact_model_args(model_args), "bench": str(bench_dir),
           "bench_manifest_sha256": bench.manifest_sha256, "tasks": tasks, "limit": limit, "batch_size": batch_size,
           "seed": seed, "max_failures": str(max_failures), "lmms_eval_command": command,
           "versions": package_versions(), "num_processes": world_size}  # fmt: skip
    writer = process_rank() == 0
    if writer:
        # Answers an interrupted multi-process run left per process join the cache first, so that this
        # run's answers come after them (the last line of a question is its current answer).
        merge_rank_files(responses_path)
        clear_results(output)
    try:
        with _InfoLog():
            results, answers_by_task = _simple_evaluate(
                model, model_args, run_tasks, lmms_dir, limit=limit, batch_size=batch_size, seed=seed
            )
        if results is None:
            return None
        merge_rank_files(responses_path)  # every process has finished answering (lmms-eval waited for them)
        expected = [t for t in results.get("configs", {}) if t.startswith(TASK_PREFIX)]
        if not expected:
            raise EvaluationFailed(f"no DFA-Bench task ran (requested {tasks!r})")
        missing = [t for t in expected if not answers_by_task.get(t)]
        if missing:
            raise EvaluationFailed(f"no samples were logged for {missing}")
    except EvaluationFailed as exc:
        if writer:
            record_failure(output, run, str(exc), [])
        raise

    rows = [row for task in expected for row in answers_by_task[task]]
    problems = []
    failures = AdapterFailures([], {})
    if dfa_adapter:
        failures = _merge_adapter_responses(rows, responses_path, bench.manifest_sha256)
        if failures.question_ids:
            problems.append(failures.describe(responses_path))
        if failures.unlogged:
            problems.append(
                f"{failures.unlogged} of {len(rows)} answers have no line in the response cache {responses_path}, "
                "so their DF-D scores are missing; under several machines, --output must be on a filesystem "
                "they all share"
            )
    blank = sum(1 for row in rows if not (row["response"] or "").strip())
    if blank:
        problems.append(f"{blank} of {len(rows)} responses are empty")
    allowed = allowed_count if allowed_count is not None else int(allowed_fraction * len(rows))
    if len(failures.question_ids) > allowed:
        error = (
            f"{len(failures.question_ids)} of {len(rows)} items failed, more than --max-failures {max_failures} "
            f"allows; no metrics written. {failures.describe(responses_path)}"
        )
        record_failure(output, run, error, problems)
        raise EvaluationFailed(error)

    predictions = {row["question_id"]: {**row, "line": i} for i, row in enumerate(rows, 1)}
    metrics, details, scoring_problems = score_predictions(bench, predictions, only_answered=True, seed=seed)
    problems += scoring_problems
    identity = model_identity(given_args)  # after the run: hub downloads are cached by now
    write_results(output, {**run, "model_identity": identity, "failed_items": len(failures.question_ids),
                           "problems": problems}, rows, metrics, details)  # fmt: skip
    return EvalOutputs(metrics, problems, lmms_dir, command)
