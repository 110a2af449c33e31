"""The response cache: one JSONL line per answered item, appended (and flushed) as each batch arrives.

A line is `{"key", "question_id", "task", "bench", "response", "score", "error", "usage"}`. `key` hashes
the model's fingerprint, the question item (its text, options, polarity, the sha256 of its image bytes
and of the bench manifest), the prompt and the generation settings, so a re-run of the same command
finds its answers, and a different model, prompt, image or bench never does. Lines with an `error` are kept
as a record but never served: a re-run asks those items again. The file is also a valid predictions
file for `dfa-bench score` (it carries `question_id`, `response` and the DF-D `score`).

Under N processes (`accelerate launch`), process r appends only to its own file, `<stem>.rank<r>.jsonl`
beside the cache, so no two processes ever write one file. Every process reads all of them (a resumed
run may have another number of processes), and `merge_rank_files` folds them into the cache when no
process is writing (before and after `dfa-bench eval` runs lmms-eval).

No torch, no lmms-eval: `dfa-bench eval` reads it to carry DF-D probabilities into the metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

# What of a DFA-Bench doc identifies the question asked (image_path is left out: a moved bench is the same).
ITEM_KEY_FIELDS = ("question_id", "task", "question", "options", "polarity", "image", "image_sha256", "bench_sha256")


def item_identity(doc: dict) -> dict:
    """The fields of a question item that its answer depends on; {} for docs of other tasks."""
    if "image_sha256" not in doc:
        return {}
    return {name: doc.get(name) for name in ITEM_KEY_FIELDS}


def cache_key(fingerprint: dict, question_id: str, prompt: str, gen_kwargs: dict, item: dict | None = None) -> str:
    payload = json.dumps([fingerprint, question_id, prompt, gen_kwargs, item or {}], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _read_lines(path: Path) -> tuple[list[dict], int]:
    """(parsed lines, byte length of the good prefix). A torn last line (a killed writer) ends the prefix."""
    rows, good = [], 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                row = json.loads(raw)
            except ValueError:  # JSONDecodeError, not UTF-8, or an over-long integer
                if f.read(1):  # a bad line in the middle is not a torn write: someone edited the file
                    raise ValueError(f"{path}: line {len(rows) + 1} is not JSON; move the file aside") from None
                break
            rows.append(row)
            good += len(raw)
    return rows, good


def rank_path(path: Path | str, rank: int) -> Path:
    """The file process `rank` of a multi-process run writes its answers to."""
    path = Path(path)
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def rank_paths(path: Path | str) -> list[Path]:
    """The per-process files beside the cache at `path`, in rank order."""
    path = Path(path)
    pattern = re.compile(re.escape(path.stem) + r"\.rank(\d+)" + re.escape(path.suffix))
    found = [(int(m.group(1)), p) for p in path.parent.glob(f"{path.stem}.rank*") if (m := pattern.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def _repair(path: Path) -> list[dict]:
    """The file's lines, after cutting a torn tail (a killed writer) so the next line starts clean."""
    rows, good = _read_lines(path)
    if good != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good)
    return rows


def merge_rank_files(path: Path | str) -> int:
    """Append the per-process files' lines to the cache at `path`, in rank order, and delete them; the
    number of lines moved. Only while no process is writing. A crash between append and delete leaves
    lines twice, which readers take as one (same key, same answer)."""
    path = Path(path)
    parts = rank_paths(path)
    if not parts:
        return 0
    rows = [row for part in parts for row in _read_lines(part)[0]]
    if path.exists():
        _repair(path)
    _append_lines(path, rows)
    for part in parts:
        part.unlink()
    return len(rows)


def _append_lines(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        f.flush()
        os.fsync(f.fileno())


class ResponseCache:
    """Answers already given, by key; `append` writes new ones before they are returned to lmms-eval.

    `rank`: this process's rank in a multi-process run (None: the only process). It then writes to
    `rank_path(path, rank)` and reads that, the cache, and the other processes' files.
    """

    def __init__(self, path: Path | str, rank: int | None = None):
        self.path = Path(path)
        self.write_path = self.path if rank is None else rank_path(self.path, rank)
        self.answers: dict[str, dict] = {}
        self.keys_by_question: dict[str, set[str]] = {}  # to count answers kept for another question
        for source in [self.path, *rank_paths(self.path)]:
            if not source.exists():
                continue
            # only our own file is repaired: another process may be mid-append on its own
            rows = _repair(source) if source == self.write_path else _read_lines(source)[0]
            for row in rows:
                if not row.get("error") and "key" in row:
                    self._keep(row)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _keep(self, row: dict) -> None:
        self.answers[row["key"]] = row
        self.keys_by_question.setdefault(str(row.get("question_id")), set()).add(row["key"])

    def stale(self, question_id: str, key: str) -> bool:
        """Answers are cached for this question id, but none for this exact question (image, bench, ...)."""
        keys = self.keys_by_question.get(question_id)
        return bool(keys) and key not in keys

    def get(self, key: str) -> dict | None:
        return self.answers.get(key)

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        _append_lines(self.write_path, rows)
        for row in rows:
            if not row.get("error"):
                self._keep(row)


def read_responses(path: Path | str) -> list[dict]:
    """Every line of a response cache (errors included), then those of its per-process files; torn
    tails ignored."""
    path = Path(path)
    return [row for source in [path, *rank_paths(path)] if source.exists() for row in _read_lines(source)[0]]


def scores_by_answer(path: Path | str) -> dict[tuple[str, str], float]:
    """{(question_id, response): DF-D forgery probability} for the cache's answered DF-D items."""
    return {
        (row["question_id"], row["response"]): row["score"]
        for row in read_responses(path)
        if row.get("score") is not None and not row.get("error")
    }
