"""Turn a `dfa-bench eval` output directory into a leaderboard entry, trusting none of its numbers.

Every metric is recomputed with `dfa_bench.scoring.score_predictions` from the logged per-sample
responses (lmms-eval's samples JSONL; predictions.jsonl when there are no lmms-eval logs) against the
leaderboard's own copy of the bench, and every metric the submission reports (metrics.json and
lmms-eval's results JSON) must agree with the recomputed value within TOLERANCE. The checks run in
this order and the first failure rejects the submission with a message naming the file, line and item:

1. files: only JSON is parsed; paths outside the directory, non-regular files and oversized files
   are refused (see files.py); malformed JSON and missing or mistyped fields are rejected; lmms-eval's
   logs are required (a hand-made predictions.jsonl alone is never a measured entry);
2. bench: run.json's manifest sha256 must be the leaderboard's;
3. samples: every logged question id must belong to the bench and to the task of its file, none may
   repeat, every one must log the bench's reference as its target, and every bench item of each task
   that ran must be there (a --limit run is rejected); predictions.jsonl, when present, must hold
   exactly the same responses;
4. metrics: metrics.json and lmms-eval's results must match the recomputed metrics.

5. uniqueness: samples files identical to an existing entry's are the same run under another name.

Nothing is written until all checks pass; the entry is then written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path

from dfa_bench import __version__
from dfa_bench.bench import Bench, read_bench
from dfa_bench.evaluate import TASK_PREFIX, redact_model_args
from dfa_bench.io import atomic_write_bytes, sha256_file
from dfa_bench.leaderboard.entries import (
    ABSTAIN,
    ANNOTATIONS,
    GROUPS,
    SCHEMA,
    answers_path,
    bench_path,
    entry_path,
    is_fraction,
    load_entries,
    read_config,
    slug,
    validate_entry,
    write_entry,
)
from dfa_bench.leaderboard.files import MAX_FILE_BYTES, SubmissionFiles, SubmissionRejected
from dfa_bench.leaderboard.significance import outcomes_from_rows
from dfa_bench.lmms_task import METRICS
from dfa_bench.rundir import LMMS_DIR, METRICS_FILE, PREDICTIONS_FILE, RESPONSES_FILE, RUN_FILE, carry_probabilities
from dfa_bench.schema import TASKS, ValidationError
from dfa_bench.scoring import read_predictions, score_predictions

# Recomputation runs the same code on the same inputs in the same order, so values agree bit for bit
# on one machine; the tolerance only absorbs float summation differences across platforms/BLAS builds.
TOLERANCE = 1e-9
_SHOWN = 5  # how many missing items an error message lists

__all__ = ["SubmissionRejected", "TOLERANCE", "MAX_FILE_BYTES", "build_entry", "submit", "default_group"]


def default_group(adapter: str) -> str:
    """Our linear-probe adapter is a vision-only model; everything else evaluated zero-shot is a general MLLM."""
    return "vision-only" if adapter == "dfa_probe" else "general MLLM"


def _require_str(obj: object, field: str, where: str) -> str:
    value = obj.get(field) if isinstance(obj, dict) else None
    if not isinstance(value, str):
        raise SubmissionRejected(f"{where}: field {field!r}: expected a string, got {value!r}")
    return value


# ---- reading the logged samples ---------------------------------------------------------------


def _latest_lmms_run(files: SubmissionFiles) -> tuple[str, str] | None:
    """(results file, its date prefix) of the newest lmms-eval run in the submission, if any.

    A re-run into the same output directory adds a new `<date>_results.json`; run_eval's
    predictions.jsonl and metrics.json belong to the newest, which is the one we check.
    """
    # lmms-eval writes into a folder named after `pretrained=`, or straight into the output path without one
    found = files.glob(f"{LMMS_DIR}/*_results.json") + files.glob(f"{LMMS_DIR}/*/*_results.json")
    if not found:
        return None
    latest = max(found, key=lambda rel: (rel.rsplit("/", 1)[1], rel))
    return latest, latest[: -len("_results.json")]


def _read_samples(files: SubmissionFiles, rel: str, task: str, bench: Bench) -> list[dict]:
    """Rows {"question_id", "response", "score", "line", "file"} from one lmms-eval samples file."""
    rows: list[dict] = []
    names = METRICS[task]
    for line_no, sample in files.iter_jsonl(rel):
        where = f"{rel}:{line_no}"
        if not isinstance(sample, dict) or not isinstance(sample.get(names[0]), dict):
            raise SubmissionRejected(f"{where}: malformed sample: expected an object with a {names[0]!r} object")
        logged = [sample[name] for name in names if name in sample]
        first = logged[0]
        qid = first.get("question_id")
        response = first.get("response")
        if not isinstance(qid, str) or (response is not None and not isinstance(response, str)):
            raise SubmissionRejected(f"{where}: malformed sample: question_id/response of {names[0]!r}")
        for other in logged[1:]:
            if not isinstance(other, dict) or (other.get("question_id"), other.get("response")) != (qid, response):
                raise SubmissionRejected(f"{where}: item {qid!r}: the metric entries log different responses")
        item = bench.by_id.get(qid)
        if item is None:
            raise SubmissionRejected(f"{where}: item {qid!r} is not in the leaderboard's bench")
        if item["task"] != task:
            raise SubmissionRejected(f"{where}: item {qid!r} is a {item['task']} item in the {task} samples")
        if not isinstance(sample.get("target"), str):
            # lmms-eval logs the reference next to every answer: without it, any bench's answers would pass
            raise SubmissionRejected(f"{where}: item {qid!r}: the logged sample has no target")
        if sample["target"] != item["answer"]:
            # the run saw other references than ours: another bench hiding behind a copied hash
            raise SubmissionRejected(f"{where}: item {qid!r}: logged target differs from the bench's reference answer")
        rows.append({"question_id": qid, "response": response, "score": None, "line": line_no, "file": rel})
    return rows


def _read_lmms(files: SubmissionFiles, bench: Bench, run: dict) -> tuple[str, dict, dict[str, list[dict]]]:
    """(results file, results JSON, {task: sample rows}) of the newest lmms-eval run."""
    results_rel, prefix = _latest_lmms_run(files)
    results = files.read_json(results_rel)
    if not isinstance(results, dict) or not isinstance(results.get("results"), dict):
        raise SubmissionRejected(f"{results_rel}: malformed results: no 'results' object")
    config_model = (results.get("config") or {}).get("model") if isinstance(results.get("config"), dict) else None
    if config_model is not None and config_model != run["model"]:
        raise SubmissionRejected(f"{results_rel}: model {config_model!r} differs from run.json's {run['model']!r}")
    tasks = [t.removeprefix(TASK_PREFIX) for t in results["results"] if t in {TASK_PREFIX + x for x in TASKS}]
    if not tasks:
        raise SubmissionRejected(f"{results_rel}: no DFA-Bench task in the results")
    samples = {}
    for task in tasks:
        rel = f"{prefix}_samples_{TASK_PREFIX}{task}.jsonl"
        if not files.exists(rel):
            raise SubmissionRejected(
                f"{rel}: missing: {results_rel} reports {TASK_PREFIX}{task} but its samples were not logged"
            )
        samples[task] = _read_samples(files, rel, task, bench)
    return results_rel, results, samples


def _read_predictions_file(files: SubmissionFiles) -> dict[str, dict]:
    real = files.resolve(PREDICTIONS_FILE)
    try:
        predictions, problems = read_predictions(real)
    except ValidationError as exc:  # non-UTF-8 bytes included: read_predictions names the line
        raise SubmissionRejected(f"malformed {PREDICTIONS_FILE}: {exc}") from None
    if problems:  # read_predictions reports duplicates and keeps the first; a submission may not have any
        raise SubmissionRejected(f"duplicated sample: {problems[0]}")
    files.hashes[PREDICTIONS_FILE] = sha256_file(real)
    return predictions


def _check_coverage(rows_by_task: dict[str, list[dict]], bench: Bench, run: dict) -> None:
    """Each task that ran answers every bench item of that task exactly once."""
    for task, rows in rows_by_task.items():
        seen: dict[str, dict] = {}
        for row in rows:
            if row["question_id"] in seen:
                first = seen[row["question_id"]]
                raise SubmissionRejected(
                    f"{row['file']}:{row['line']}: duplicated sample {row['question_id']!r} "
                    f"(first on line {first['line']})"
                )
            seen[row["question_id"]] = row
        missing = [item["question_id"] for item in bench.items_for(task) if item["question_id"] not in seen]
        if missing:
            hint = f"; run.json says limit={run.get('limit')}" if run.get("limit") is not None else ""
            source = rows[0]["file"] if rows else task
            raise SubmissionRejected(
                f"{source}: samples missing: {len(missing)} of {len(bench.items_for(task))} {task} items have no "
                f"logged sample (e.g. {', '.join(missing[:_SHOWN])}){hint}; the leaderboard needs the whole bench"
            )


def _check_predictions(predictions: dict[str, dict], rows: dict[str, dict]) -> None:
    """predictions.jsonl must log exactly the responses of lmms-eval's samples (it is what metrics.json scored)."""
    for qid, prediction in predictions.items():
        row = rows.get(qid)
        where = f"{PREDICTIONS_FILE}:{prediction['line']}"
        if row is None:
            raise SubmissionRejected(f"{where}: item {qid!r} has no lmms-eval logged sample")
        if prediction["response"] != row["response"]:
            raise SubmissionRejected(
                f"{where}: item {qid!r}: response differs from lmms-eval's logged sample ({row['file']}:{row['line']})"
            )
    missing = [qid for qid in rows if qid not in predictions]
    if missing:
        raise SubmissionRejected(f"{PREDICTIONS_FILE}: samples missing: {', '.join(missing[:_SHOWN])}")


def _merge_probabilities(
    files: SubmissionFiles, rows: dict[str, dict], predictions: dict[str, dict] | None
) -> list[str]:
    """DF-D forgery probabilities, which lmms-eval's text-only samples cannot carry.

    Our adapters' responses.jsonl is read as `dfa-bench eval` reads it (the last line per question id;
    a probability is taken only when that answer succeeded and its text is the scored response).
    Without it, predictions.jsonl's `score` field is used (its responses were checked against the samples).
    """
    if files.exists(RESPONSES_FILE):
        latest: dict[str, dict] = {}
        for line_no, obj in files.iter_jsonl(RESPONSES_FILE, allow_torn_tail=True):
            where = f"{RESPONSES_FILE}:{line_no}"
            if not isinstance(obj, dict) or not isinstance(obj.get("question_id"), str):
                raise SubmissionRejected(f"{where}: malformed response line: expected an object with a question_id")
            score = obj.get("score")
            if score is not None and (
                isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score)
            ):
                raise SubmissionRejected(f"{where}: field 'score': expected a finite number or null, got {score!r}")
            latest[obj["question_id"]] = obj
        failed = carry_probabilities(rows.values(), latest)
        return [f"{len(failed)} items failed in the adapter (e.g. {', '.join(failed[:_SHOWN])})"] if failed else []
    for qid, row in rows.items():
        if predictions and qid in predictions and row["score"] is None:
            row["score"] = predictions[qid]["score"]
    return []


# ---- comparing reported with recomputed metrics -----------------------------------------------


def _same(reported: object, recomputed: object) -> bool:
    if recomputed is None:
        return reported is None or (isinstance(reported, float) and math.isnan(reported))
    if isinstance(recomputed, bool) or isinstance(reported, bool):
        return reported is recomputed
    if isinstance(recomputed, (int, float)):
        return (
            isinstance(reported, (int, float)) and math.isfinite(reported) and abs(reported - recomputed) <= TOLERANCE
        )
    return reported == recomputed


def _compare(reported: object, recomputed: object, where: str, path: str) -> None:
    """Walk both metric trees; the first difference rejects, named by its dotted key."""
    if isinstance(recomputed, dict):
        if not isinstance(reported, dict):
            raise SubmissionRejected(f"{where}: {path or 'metrics'}: expected an object, got {reported!r}")
        for key in sorted(set(reported) | set(recomputed), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in recomputed:
                raise SubmissionRejected(f"{where}: {sub}: reported, but nothing in the logged samples gives it")
            if key not in reported:
                raise SubmissionRejected(f"{where}: {sub}: missing (the logged samples give {recomputed[key]!r})")
            _compare(reported[key], recomputed[key], where, sub)
    elif isinstance(recomputed, list):
        if not isinstance(reported, list) or len(reported) != len(recomputed):
            raise SubmissionRejected(f"{where}: {path}: reported {reported!r}, the logged samples give {recomputed!r}")
        for i, (a, b) in enumerate(zip(reported, recomputed)):
            _compare(a, b, where, f"{path}[{i}]")
    elif not _same(reported, recomputed):
        raise SubmissionRejected(
            f"{where}: {path}: reported {reported!r}, but the logged samples give {recomputed!r} "
            f"(tolerance {TOLERANCE})"
        )


def _check_lmms_results(results_rel: str, results: dict, metrics: dict, samples: dict[str, list[dict]]) -> None:
    for task, block in metrics.items():
        reported = results["results"].get(f"{TASK_PREFIX}{task}")
        if not isinstance(reported, dict):
            raise SubmissionRejected(f"{results_rel}: results.{TASK_PREFIX}{task}: missing")
        for name in METRICS[task]:
            key = f"{name},none"
            if key not in reported:
                raise SubmissionRejected(f"{results_rel}: results.{TASK_PREFIX}{task}.{key}: missing")
        for key, value in reported.items():
            name, _, _filter = key.partition(",")
            if not _filter or name.endswith(("_stderr", "_stderr_clt", "_stderr_clustered")):
                continue  # alias, and lmms-eval's own standard errors (not ours to check)
            if name not in METRICS[task]:
                raise SubmissionRejected(f"{results_rel}: results.{TASK_PREFIX}{task}.{key}: unknown metric")
            _compare(value, block[name], results_rel, f"results.{TASK_PREFIX}{task}.{key}")
        counts = (results.get("n-samples") or {}).get(f"{TASK_PREFIX}{task}")
        if isinstance(counts, dict) and "effective" in counts:
            _compare(counts["effective"], len(samples[task]), results_rel, f"n-samples.{TASK_PREFIX}{task}.effective")


# ---- the entry --------------------------------------------------------------------------------


def _default_name(run: dict) -> str:
    """The basename of `pretrained=` (e.g. llava-1.5-7b-hf), else the lmms-eval model name."""
    for part in run["model_args"].split(","):
        name, _, value = part.partition("=")
        if name.strip() == "pretrained" and value.strip():
            return value.strip().rstrip("/").rsplit("/", 1)[-1]
    return run["model"]


def _eval_date(results: dict | None) -> str | None:
    """lmms-eval's run date (`20250102_030405`) as ISO 8601."""
    raw = (results or {}).get("date")
    try:
        return datetime.strptime(str(raw), "%Y%m%d_%H%M%S").isoformat()
    except ValueError:
        return None


def build_entry(
    results_dir: Path | str,
    bench: Bench,
    *,
    model_name: str | None = None,
    group: str | None = None,
    params: int | None = None,
    annotations: str | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> tuple[dict, bytes]:
    """Check a submission against `bench`; returns (its entry, its answers as JSONL bytes). Nothing is written."""
    files = SubmissionFiles(results_dir, max_bytes=max_file_bytes)
    run = files.read_json(RUN_FILE) if files.exists(RUN_FILE) else None
    if run is None:
        raise SubmissionRejected(f"{RUN_FILE}: missing: submit the output directory of `dfa-bench eval`")
    for field in ("model", "model_args", "bench_manifest_sha256"):
        _require_str(run, field, RUN_FILE)
    seed = run.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SubmissionRejected(f"{RUN_FILE}: field 'seed': expected an integer, got {seed!r}")
    if run["bench_manifest_sha256"] != bench.manifest_sha256:
        raise SubmissionRejected(
            f"{RUN_FILE}: bench manifest sha256 {run['bench_manifest_sha256']} differs from the leaderboard's bench "
            f"{bench.manifest.get('name')!r} v{bench.manifest.get('version')} ({bench.manifest_sha256})"
        )

    predictions = _read_predictions_file(files) if files.exists(PREDICTIONS_FILE) else None
    if not _latest_lmms_run(files):
        # a hand-made predictions.jsonl can say anything: it scores locally (`dfa-bench score`), never as measured
        raise SubmissionRejected(
            f"no lmms-eval logs: a measured entry needs lmms-eval's logged samples ({LMMS_DIR}/[*/]*_results.json "
            f"and its samples files, as `dfa-bench eval` writes them); score a predictions file with `dfa-bench score`"
        )
    results_rel, results, rows_by_task = _read_lmms(files, bench, run)
    source = "lmms-eval samples"
    _check_coverage(rows_by_task, bench, run)
    rows = {row["question_id"]: row for task_rows in rows_by_task.values() for row in task_rows}
    if predictions is not None:
        _check_predictions(predictions, rows)
    notes = _merge_probabilities(files, rows, predictions)

    scored = {qid: {"response": r["response"], "score": r["score"], "line": r["line"]} for qid, r in rows.items()}
    metrics, judged, problems = score_predictions(bench, scored, only_answered=True, seed=seed)
    if problems:  # unreachable after the coverage checks; kept so a scorer change cannot slip through
        raise SubmissionRejected(f"scoring: {problems[0]}")
    if not files.exists(METRICS_FILE):
        raise SubmissionRejected(f"{METRICS_FILE}: missing: the submission must report its metrics")
    _compare(files.read_json(METRICS_FILE), metrics, METRICS_FILE, "")
    _check_lmms_results(results_rel, results, metrics, rows_by_task)

    run_versions = run.get("versions") if isinstance(run.get("versions"), dict) else {}
    answers = answers_jsonl(judged)
    name = (model_name or _default_name(run)).strip()
    if not slug(name):
        raise SubmissionRejected(f"model name {name!r} has no usable characters")
    group = group or default_group(run["model"])
    if group not in GROUPS:
        raise SubmissionRejected(f"group {group!r}: expected one of {list(GROUPS)}")
    if annotations is not None and (annotations not in ANNOTATIONS or group != "tuned"):
        raise SubmissionRejected(
            f"annotations {annotations!r}: a tuned model's training annotations, one of {list(ANNOTATIONS)}"
            + ("" if group == "tuned" else f" (this entry's group is {group!r})")
        )
    entry = {
        "schema": SCHEMA,
        "model": name,
        "adapter": run["model"],
        "model_args": redact_model_args(run["model_args"]),
        "params": params,
        "group": group,
        "provenance": "measured",
        "annotations": annotations,  # Table II: what a tuned model was trained on
        "citation": None,
        "bench": {
            "name": bench.manifest.get("name"),
            "version": bench.manifest.get("version"),
            "manifest_sha256": bench.manifest_sha256,
        },
        "metrics": metrics,
        # tasks the model declined item by item (every answer ABSTAIN): scored and checked, but shown as "-"
        "abstained": sorted(
            t for t, task_rows in rows_by_task.items() if all(r["response"] == ABSTAIN for r in task_rows)
        ),
        "parse_failure_rates": {t: metrics[t]["parse_failure_rate"] for t in ("dfd", "dfc") if t in metrics},
        # per item, in bench order: what the leaderboard's significance marks pair between entries
        "outcomes": outcomes_from_rows(judged),
        # the submitted answers, kept beside the entry for audits (answers/<entry>.jsonl); this is their hash
        "answers_sha256": hashlib.sha256(answers).hexdigest(),
        "versions": {
            # run.json's, when it records the installed package; lmms-eval's own field is a git description
            "lmms_eval": run_versions.get("lmms-eval") or (results or {}).get("lmms_eval_version"),
            "dfa_bench_run": run_versions.get("dfa-bench"),  # null when the run did not record it
            "dfa_bench_scorer": __version__,  # the version that recomputed these metrics
            "transformers": run_versions.get("transformers"),
            "torch": run_versions.get("torch"),
        },
        # what answered, as run.json recorded it: weights by sha256, hub ids by revision (null: not recorded)
        "model_identity": run.get("model_identity") if isinstance(run.get("model_identity"), dict) else None,
        "date": _eval_date(results),
        "submitted": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "source": {
            "samples": source,
            "seed": seed,
            "limit": run.get("limit"),
            "files": dict(sorted(files.hashes.items())),
        },
        "notes": notes + [p for p in run.get("problems") or [] if isinstance(p, str)],
    }
    judges = _judges(files, bench)
    if judges:
        entry["judges"] = judges  # `dfa-bench judge`: the submitter's, not recomputed (see leaderboard/README.md)
    return validate_entry(entry), answers


def _judges(files: SubmissionFiles, bench: Bench) -> list[dict]:
    """The run's `dfa-bench judge` results (RUN/judge/*.json), checked for shape and bench, kept as the judge
    reported them: grades come from an API and cannot be recomputed here, so the entry says so."""
    from dfa_bench.judge import JUDGE_DIR, rubric_sha256

    out = []
    for rel in files.glob(f"{JUDGE_DIR}/*.json"):
        result = files.read_json(rel)
        judge = result.get("judge") if isinstance(result, dict) else None
        ok = (
            isinstance(judge, dict) and isinstance(judge.get("model"), str)
            and isinstance(judge.get("rubric_sha256"), str) and isinstance(judge.get("settings"), dict)
            and (result.get("score") is None or is_fraction(result.get("score")))
            and isinstance(result.get("n_graded"), int) and isinstance(result.get("spearman"), dict)
        )  # fmt: skip
        if not ok:
            raise SubmissionRejected(f"{rel}: malformed judge result: expected judge {{model, rubric_sha256, "
                                     "settings}, score, n_graded and spearman")  # fmt: skip
        if (result.get("run") or {}).get("bench_manifest_sha256") != bench.manifest_sha256:
            raise SubmissionRejected(f"{rel}: the judge graded answers on another bench")
        out.append({
            "judge": {k: judge.get(k) for k in ("model", "base_url", "rubric_version", "rubric_sha256", "settings")},
            "score": result["score"], "ci95": result.get("ci95"), "n_graded": result["n_graded"],
            "n": result.get("n"), "spearman": result["spearman"],
            "rubric_current": judge["rubric_sha256"] == rubric_sha256(), "recomputed": False,
        })  # fmt: skip
    return out


def answers_jsonl(judged: list[dict]) -> bytes:
    """The submitted answers in bench order, one {"question_id", "response"[, "score"]} line each (a DF-D
    answer's forgery probability, when the run gave one: audits compare it too)."""
    lines = (
        json.dumps({"question_id": r["question_id"], "response": r["response"],
                    **({"score": r["score"]} if r.get("score") is not None else {})}, ensure_ascii=False)
        for r in judged
    )  # fmt: skip
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def _answer_hashes(entry: dict) -> set[str]:
    """sha256 of the lmms-eval samples files an entry was recomputed from: the answers themselves."""
    files = (entry.get("source") or {}).get("files") or {}
    return {digest for rel, digest in files.items() if "_samples_" in rel}


def _same_run(entry: dict, existing: list[dict], *, replacing: str | None) -> str | None:
    """The name of an existing entry made from the very same samples files by the same model, if any. Two
    models with different weights may write the same answers (short answers, a barely trained model): the
    model's identity (its weights' hashes, as run.json records them) tells them apart."""
    mine = _answer_hashes(entry)
    for other in existing:
        if other["model"] != replacing and mine and _answer_hashes(other) == mine:
            if entry.get("model_identity") == other.get("model_identity"):
                return other["model"]
    return None


def submit(
    results_dir: Path | str,
    leaderboard_dir: Path | str,
    *,
    model_name: str | None = None,
    group: str | None = None,
    params: int | None = None,
    annotations: str | None = None,
    replace: bool = False,
    bench_dir: Path | str | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> tuple[dict, Path]:
    """Check a `dfa-bench eval` output against the leaderboard's bench and add its entry.

    Returns (entry, path written). Raises SubmissionRejected (the leaderboard is left unchanged) or
    ValidationError (the leaderboard itself or its bench is broken). `bench_dir` overrides the bench
    path stored in leaderboard.json; its manifest must still hash to the stored sha256.
    """
    config = read_config(leaderboard_dir)
    bench = read_bench(bench_dir or bench_path(leaderboard_dir, config))
    if bench.manifest_sha256 != config["bench"]["manifest_sha256"]:
        raise ValidationError(
            f"the bench at {bench.root} (manifest sha256 {bench.manifest_sha256}) is not the leaderboard's "
            f"({config['bench']['manifest_sha256']})",
            path=str(Path(leaderboard_dir) / "leaderboard.json"),
        )
    entry, answers = build_entry(
        results_dir,
        bench,
        model_name=model_name,
        group=group,
        params=params,
        annotations=annotations,
        max_file_bytes=max_file_bytes,
    )
    if entry_path(leaderboard_dir, entry["model"]).exists() and not replace:
        raise SubmissionRejected(
            f"an entry named {entry['model']!r} is already on the leaderboard; pass --replace or --model-name"
        )
    same = _same_run(entry, load_entries(leaderboard_dir), replacing=entry["model"] if replace else None)
    if same is not None:
        raise SubmissionRejected(
            f"these logged samples are already on the leaderboard as {same!r} (identical files); one run, one entry"
        )
    try:
        path = write_entry(leaderboard_dir, entry, replace=replace)
    except FileExistsError as exc:  # a concurrent submission of the same name won
        raise SubmissionRejected(str(exc)) from None
    atomic_write_bytes(answers_path(leaderboard_dir, entry["model"]), answers)
    return entry, path
