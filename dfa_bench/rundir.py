"""A `dfa-bench eval` output directory, as bench.py is for a bench: its layout, and writing and reading it.
evaluate writes it; compare, submit and audit read it; nothing else names its files.

    OUTPUT/run.json           what ran (model, redacted model_args, bench sha256, versions, the lmms-eval command),
                              status "ok" or "failed", the error and problems; written last
    OUTPUT/predictions.jsonl  one answer per item: question_id, task, response, score (DF-D P(forgery))
    OUTPUT/metrics.json       the bench's metrics with their 95% CIs
    OUTPUT/details.jsonl      each item judged: prediction, correct, rouge_l
    OUTPUT/responses.jsonl    our adapters' response cache (a re-run resumes from it)
    OUTPUT/lmms_eval/         lmms-eval's logs: [<model>/]<date>_results.json and _samples_<task>.jsonl
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dfa_bench.io import iter_jsonl, read_json, write_json, write_jsonl
from dfa_bench.schema import ValidationError

RUN_FILE = "run.json"
PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
DETAILS_FILE = "details.jsonl"
RESPONSES_FILE = "responses.jsonl"
LMMS_DIR = "lmms_eval"
RESULT_FILES = (PREDICTIONS_FILE, METRICS_FILE, DETAILS_FILE)  # what only a finished run has


def clear_results(output: Path) -> None:
    """Before a (re-)run: a failed one must not leave the previous run's metrics looking current."""
    for name in RESULT_FILES:
        (output / name).unlink(missing_ok=True)


def record_failure(output: Path, run: dict, error: str, problems: list[str]) -> None:
    """A failed run: run.json says why, and lmms-eval's results files, whose metrics a failed run does not
    have, are removed (its per-sample logs and the response cache stay, for a look and a resumed run)."""
    for stale in (output / LMMS_DIR).rglob("*_results.json"):
        stale.unlink()
    write_json(output / RUN_FILE, {**run, "status": "failed", "error": error, "problems": problems})


def write_results(output: Path, run: dict, predictions: list[dict], metrics: dict, details: list[dict]) -> None:
    """A finished run's files, run.json last: a directory with an "ok" run.json holds all of them."""
    write_jsonl(output / PREDICTIONS_FILE, predictions)
    write_json(output / METRICS_FILE, metrics)
    write_jsonl(output / DETAILS_FILE, details)
    write_json(output / RUN_FILE, {**run, "status": "ok"})


def read_run(run: Path | str) -> tuple[dict, dict[str, dict]]:
    """(run.json, {question_id: judged row}) of a finished `dfa-bench eval` output directory."""
    run = Path(run)
    for name in (RUN_FILE, DETAILS_FILE):
        if not (run / name).is_file():
            raise ValidationError(f"no {name}: not a finished `dfa-bench eval` output directory", path=str(run))
    info = read_json(run / RUN_FILE)
    if not isinstance(info, dict) or not isinstance(info.get("bench_manifest_sha256"), str):
        raise ValidationError("expected a JSON object with bench_manifest_sha256", path=str(run / RUN_FILE))
    rows: dict[str, dict] = {}
    for line, row in iter_jsonl(run / DETAILS_FILE):
        where = {"path": str(run / DETAILS_FILE), "line": line}
        if not isinstance(row, dict) or not isinstance(row.get("question_id"), str):
            raise ValidationError("expected a JSON object with a question_id", **where)
        if row["question_id"] in rows:
            raise ValidationError(f"question_id {row['question_id']!r} repeats", **where)
        rows[row["question_id"]] = row
    return info, rows


def carry_probabilities(rows: Iterable[dict], latest: dict[str, dict]) -> list[str]:
    """Give each answer row the DF-D forgery probability that lmms-eval's text-only samples lose, from the
    response cache's latest line per question id: only when that attempt succeeded and its text is the row's
    response. Returns the question ids whose latest attempt failed. `dfa-bench eval` and `submit` both use it."""
    rows = list(rows)
    for row in rows:
        entry = latest.get(row["question_id"])
        if row.get("score") is None and entry and not entry.get("error") and entry.get("response") == row["response"]:
            row["score"] = entry.get("score")
    return sorted(row["question_id"] for row in rows if (latest.get(row["question_id"]) or {}).get("error"))
