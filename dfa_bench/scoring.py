"""Score responses against a bench: judge each item, then aggregate per task.

`judge` is the one per-item function, used both by `dfa-bench score` and by the lmms-eval
hooks, so the two paths cannot disagree. It is pure and thread-safe.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from dfa_bench.ad_reading import claimed_regions, consistent, read, region_scores
from dfa_bench.bench import Bench
from dfa_bench.io import iter_jsonl
from dfa_bench.metrics import BOOTSTRAP_RESAMPLES, ad_metrics, dfc_metrics, dfd_metrics
from dfa_bench.parsing import parse
from dfa_bench.rouge import rouge_l, warm_up
from dfa_bench.schema import UNPARSEABLE, ValidationError


@lru_cache(maxsize=2**16)
def reference_regions(reference: str) -> frozenset[str]:
    """The regions an AD reference names (references repeat across runs and retries: read each once)."""
    return claimed_regions(reference)


REGION_METRICS = ("region_precision", "region_recall", "region_f1")


def judge(
    item: dict,
    response: str | None,
    score: float | None = None,
    *,
    rouge: float | None = None,
    reference: frozenset[str] | None = None,
    reading: tuple[frozenset[str], str] | None = None,
) -> dict:
    """One scored row: the parsed prediction and whether it is right; for ad, ROUGE-L, the regions the answer
    claims against its reference's (precision, recall, F1; None where the reference names no region) and the
    answer's stance (see dfa_bench.ad_reading).

    `rouge`, `reference` (the reference's regions) and `reading` (ad_reading.read of the response) pass in what
    was computed elsewhere (see score_predictions).
    """
    row = {"question_id": item["question_id"], "record_id": item["record_id"], "task": item["task"],
           "response": response}  # fmt: skip
    if item["task"] == "ad":
        row["rouge_l"] = rouge if rouge is not None else rouge_l(item["answer"], response or "")
        answer, answer_stance = reading or read(response or "")
        reference = reference if reference is not None else reference_regions(item["answer"])
        row.update(regions=sorted(answer), reference_regions=sorted(reference),
                   **(region_scores(reference, answer) or dict.fromkeys(REGION_METRICS)), stance=answer_stance)  # fmt: skip
        return row
    truth = item["label"] if item["task"] == "dfd" else item["category"]
    prediction = parse(item, response) if response is not None else UNPARSEABLE
    row.update(truth=truth, prediction=prediction, correct=prediction == truth)
    if item["task"] == "dfd":
        row["score"] = score
    return row


def rouge_many(pairs: list[tuple[str, str]]) -> list[float]:
    return [rouge_l(reference, response) for reference, response in pairs]


def reference_work(pairs: list[tuple[str, str]]) -> tuple[list[float], list[frozenset[str]]]:
    """What an AD item's score needs of its reference: ROUGE-L against the response, and the regions the
    reference names (the worker process's share of the work; see score_predictions)."""
    return rouge_many(pairs), [reference_regions(reference) for reference, _ in pairs]


def verdict_consistency(ad_rows: list[dict], dfd_rows: list[dict]) -> list[bool | None]:
    """Per ad row: does its stance agree with the DF-D verdict the same answers gave on the same record?
    None where that record has no parsed DF-D answer among `dfd_rows`."""
    verdicts = {row["record_id"]: row["prediction"] for row in dfd_rows}
    return [consistent(verdicts.get(row["record_id"]), row["stance"]) for row in ad_rows]


def _ad_block(ad: list[dict], dfd: list[dict], *, seed: int, resamples: int) -> dict:
    return ad_metrics(
        [r["rouge_l"] for r in ad],
        regions=[None if r["region_f1"] is None else {k: r[k] for k in REGION_METRICS} for r in ad],
        stances=[r["stance"] for r in ad],
        consistency=verdict_consistency(ad, dfd),
        seed=seed,
        resamples=resamples,
    )


def aggregate(rows: Iterable[dict], *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Metrics JSON from judged rows: {"dfd": ..., "dfc": ..., "ad": ...} for the tasks present."""
    by_task: dict[str, list[dict]] = {"dfd": [], "dfc": [], "ad": []}
    for row in rows:
        by_task[row["task"]].append(row)
    dfd, dfc, ad = by_task["dfd"], by_task["dfc"], by_task["ad"]
    out = {}
    if dfd:
        out["dfd"] = dfd_metrics(
            [r["truth"] for r in dfd],
            [r["prediction"] for r in dfd],
            [r.get("score") for r in dfd],
            seed=seed,
            resamples=resamples,
        )
    if dfc:
        out["dfc"] = dfc_metrics(
            [r["truth"] for r in dfc], [r["prediction"] for r in dfc], seed=seed, resamples=resamples
        )
    if ad:
        out["ad"] = _ad_block(ad, dfd, seed=seed, resamples=resamples)
    return out


# A predictions file larger than this per bench item (plus a margin) cannot be one: refused by its size,
# before it is read (an AD answer of 512 tokens is about 3 KB).
MAX_PREDICTION_BYTES_PER_ITEM = 64 * 1024


def check_predictions_size(path: Path | str, n_items: int) -> None:
    """Refuse a predictions file too large for a bench of `n_items` items, before reading it."""
    path = Path(path)
    if path.is_file():
        size, limit = path.stat().st_size, (n_items + 16) * MAX_PREDICTION_BYTES_PER_ITEM
        if size > limit:
            raise ValidationError(
                f"{size / 2**20:.0f} MiB is more than predictions for {n_items} items can be "
                f"({limit / 2**20:.0f} MiB at most); is it the right file?",
                path=str(path),
            )


def read_predictions(path: Path | str) -> tuple[dict[str, dict], list[str]]:
    """Load {"question_id", "response"[, "score"]} lines. Duplicates keep the first and are reported."""
    predictions: dict[str, dict] = {}
    problems: list[str] = []
    for line_no, obj in iter_jsonl(path):
        where = {"path": str(path), "line": line_no}
        if not isinstance(obj, dict):
            raise ValidationError("expected a JSON object", **where)
        qid = obj.get("question_id")
        if not isinstance(qid, str) or not qid:
            raise ValidationError(f"expected a non-empty string, got {qid!r}", field="question_id", **where)
        response = obj.get("response")
        if response is not None and not isinstance(response, str):
            raise ValidationError(f"expected a string or null, got {response!r}", field="response", **where)
        score = obj.get("score")
        if score is not None and (
            isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score)
        ):
            raise ValidationError(f"expected a finite number or null, got {score!r}", field="score", **where)
        if score is not None and not 0 <= score <= 1:
            raise ValidationError(f"a forgery probability lies in [0, 1], got {score!r}", field="score", **where)
        if qid in predictions:
            problems.append(
                f"{path}:{line_no}: duplicate question_id {qid!r} (first on line {predictions[qid]['line']}); kept the first"
            )
            continue
        predictions[qid] = {"response": response, "score": score, "line": line_no}
    blank = [p["line"] for p in predictions.values() if not (p["response"] or "").strip()]
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (" ..." if len(blank) > 10 else "")
        problems.append(f"{path}: {len(blank)} responses are null or empty (lines {shown}); scored as unparseable")
    return predictions, problems


# Below this many ad items a second process costs more than it saves.
_PARALLEL_AD_MIN = 5000


@contextmanager
def rouge_worker() -> Iterator[Executor | None]:
    """A forked process that starts importing nltk at once, to take ROUGE-L work later.

    Open it before reading the bench so the ~2 s nltk import overlaps that I/O. Yields None where
    fork is unavailable. Fork only from a process that runs no other threads (the CLI's `score`).
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        yield None
        return
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    pool.submit(warm_up)
    try:
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)


def score_predictions(
    bench: Bench,
    predictions: dict[str, dict],
    *,
    only_answered: bool = False,
    seed: int = 0,
    executor: Executor | None = None,
) -> tuple[dict, list[dict], list[str]]:
    """Judge every bench item (a missing answer is unparseable) and aggregate.

    Returns (metrics, per-item rows, problems). With `only_answered`, items without a prediction
    are left out instead (used for partial runs such as lmms-eval's --limit). Given an `executor`
    (see rouge_worker), the references' share of many ad items (ROUGE-L, the regions each names) runs there
    while this process parses and aggregates the dfd and dfc answers and reads the ad answers.
    """
    problems = [
        f"unknown question_id {qid!r} (line {p['line']})" for qid, p in predictions.items() if qid not in bench.by_id
    ]
    answered = [(item, predictions.get(item["question_id"])) for item in bench.items]
    missing = sum(1 for _, p in answered if p is None)
    if only_answered:
        answered = [(item, p) for item, p in answered if p is not None]
    elif missing:
        problems.append(f"{missing} bench items have no prediction; scored as unparseable")

    ad_answered = [(item, p) for item, p in answered if item["task"] == "ad"]
    ad_pairs = [(item["answer"], (p and p["response"]) or "") for item, p in ad_answered]
    future = executor.submit(reference_work, ad_pairs) if executor and len(ad_pairs) >= _PARALLEL_AD_MIN else None
    rows = [judge(item, p and p["response"], p and p.get("score")) for item, p in answered if item["task"] != "ad"]
    metrics = aggregate(rows, seed=seed)
    readings = [read(response) for _, response in ad_pairs]  # meanwhile the worker reads the references
    ad_values, references = future.result() if future else reference_work(ad_pairs)
    ad_rows = [judge(item, p and p["response"], rouge=value, reference=regions, reading=reading)
               for (item, p), value, regions, reading in zip(ad_answered, ad_values, references, readings)]  # fmt: skip
    dfd_rows = [row for row in rows if row["task"] == "dfd"]
    for row, agrees in zip(ad_rows, verdict_consistency(ad_rows, dfd_rows)):
        row["consistent"] = agrees
    if ad_rows:
        metrics["ad"] = _ad_block(ad_rows, dfd_rows, seed=seed, resamples=BOOTSTRAP_RESAMPLES)
    order = {item["question_id"]: i for i, item in enumerate(bench.items)}
    rows = sorted(rows + ad_rows, key=lambda row: order[row["question_id"]])
    return metrics, rows, problems
