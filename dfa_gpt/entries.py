"""Training entries: LLaVA-format JSON in, checked conversations out, bad ones counted in a report.

An entry is LLaVA's `{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}, ...]}` with
`<image>` in the first human turn, as `dfa-bench data build` writes it. A malformed entry or a missing
image is skipped, never fatal: it goes to the run's `bad_samples.jsonl` with its file and index.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from dfa_bench.io import read_json
from dfa_bench.templates import dfd_answer_label

IMAGE_PLACEHOLDER = "<image>"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass(frozen=True)
class Entry:
    """One valid training conversation."""

    file: str
    index: int
    id: str
    image: Path
    turns: tuple[tuple[str, str], ...]  # (role, text) with role user|assistant, the image placeholder removed
    ability: str

    def messages(self) -> list[dict]:
        """Chat-template messages, the image first in the first user turn (as the bench asks at inference)."""
        out = []
        for i, (role, text) in enumerate(self.turns):
            content = [{"type": "image"}] if i == 0 else []
            out.append({"role": role, "content": [*content, {"type": "text", "text": text}]})
        return out


class BadSampleReport:
    """Appends one JSON line per skipped sample to `path` (safe across dataloader workers and ranks)."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path else None
        self.count = 0
        self._lock = threading.Lock()

    def add(self, file: str, index: int, sample_id: str | None, reason: str) -> None:
        self.count += 1
        if self.path is None:
            return
        line = json.dumps({"file": file, "index": index, "id": sample_id, "reason": reason}, ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # one write of a short line to an O_APPEND file: lines from several processes never interleave
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)


def read_report(path: Path | str) -> list[dict]:
    """The distinct bad samples in a report (a sample found bad in two epochs or two ranks counts once)."""
    path = Path(path)
    if not path.exists():
        return []
    seen: dict[tuple, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        seen.setdefault((row["file"], row["index"]), row)
    return list(seen.values())


def entry_ability(raw: dict) -> str:
    """dfd|dfc|ad|fc from the entry's "task" field or its id's suffix; "other" for anything else."""
    task = raw.get("task")
    if isinstance(task, str):
        return task
    sample_id = str(raw.get("id", ""))
    suffix = sample_id.rsplit(":", 1)[-1] if ":" in sample_id else ""
    return suffix if suffix in {"dfd", "dfc", "ad", "fc"} else "other"


def parse_entry(raw: object, *, file: str, index: int, images: Path) -> Entry:
    """A checked Entry; ValueError says what is wrong with the raw entry."""
    if not isinstance(raw, dict):
        raise ValueError("entry is not a JSON object")
    conversations = raw.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise ValueError('no "conversations" list')
    image = raw.get("image")
    if not isinstance(image, str) or not image:
        raise ValueError('no "image" (text-only entries are not supported)')
    turns = []
    for k, turn in enumerate(conversations):
        if not isinstance(turn, dict) or turn.get("from") not in ROLES or not isinstance(turn.get("value"), str):
            raise ValueError(f'turn {k} needs "from" (human|gpt) and a string "value"')
        role = ROLES[turn["from"]]
        if role != ("user" if k % 2 == 0 else "assistant"):
            raise ValueError(f"turn {k} is {turn['from']!r}: turns alternate human, gpt, human, ...")
        text = turn["value"]
        if IMAGE_PLACEHOLDER in text and k != 0:
            raise ValueError(f"{IMAGE_PLACEHOLDER} in turn {k}: one image, in the first human turn")
        text = text.replace(IMAGE_PLACEHOLDER, "").strip() if k == 0 else text.strip()
        if not text:
            raise ValueError(f"turn {k} is empty")
        turns.append((role, text))
    if turns[-1][0] != "assistant":
        raise ValueError("the conversation ends on a human turn (nothing to learn from it)")
    path = Path(image) if Path(image).is_absolute() else images / image
    if not path.is_file():
        raise ValueError(f"image not found: {path}")
    return Entry(
        file=file, index=index, id=str(raw.get("id", f"{file}#{index}")), image=path, turns=tuple(turns),
        ability=entry_ability(raw),
    )  # fmt: skip


def load_entries(
    files: list[Path], images: Path, *, abilities: tuple[str, ...] | None, report: BadSampleReport
) -> tuple[list[Entry], dict[str, int]]:
    """Every valid entry of the given abilities (None: all), and counts per ability / skipped / filtered."""
    entries: list[Entry] = []
    counts: dict[str, int] = {"skipped": 0, "filtered": 0}
    keep_other = abilities is None or set(abilities) >= {"dfd", "dfc", "ad", "fc"}
    for file in files:
        rows = read_json(file)  # names file and line on malformed JSON
        if not isinstance(rows, list):
            raise ValueError(f"{file}: expected a JSON array of LLaVA conversations")
        for index, raw in enumerate(rows):
            ability = entry_ability(raw) if isinstance(raw, dict) else "other"
            if abilities is not None and ability not in abilities and not (ability == "other" and keep_other):
                counts["filtered"] += 1
                continue
            try:
                entry = parse_entry(raw, file=str(file), index=index, images=images)
            except ValueError as exc:
                sample_id = raw.get("id") if isinstance(raw, dict) else None
                report.add(str(file), index, sample_id, str(exc))
                counts["skipped"] += 1
                continue
            entries.append(entry)
            counts[entry.ability] = counts.get(entry.ability, 0) + 1
    return entries, counts


def balance_dfd(entries: list[Entry]) -> tuple[list[Entry], dict[str, int]]:
    """The entries with each bona fide DF-D conversation repeated round(forged / bona fide) times in all.

    DF-40 and DFA-Bench-mini are mostly forged (the mini 4:1), so a model can fit DF-D by its prior alone; the
    repeats make the verdict a coin flip without the image, as class-balanced sampling would. The label is read
    from the reference answer (`dfd_answer`'s verdict); a DF-D answer in another format cannot be balanced."""
    by_label: dict[str, list[Entry]] = {"bona_fide": [], "forgery": []}
    for entry in entries:
        if entry.ability != "dfd":
            continue
        label = dfd_answer_label(entry.turns[-1][1])
        if label is None:
            raise ValueError(
                f"{entry.file}: entry {entry.index} ({entry.id}): cannot balance DF-D, its answer "
                f'{entry.turns[-1][1][:80]!r} is not a DF-D reference answer ("This face image is ...")'
            )
        by_label[label].append(entry)
    bona_fide, forged = by_label["bona_fide"], by_label["forgery"]
    if not bona_fide or not forged:
        raise ValueError(f"cannot balance DF-D: {len(bona_fide)} bona fide and {len(forged)} forged DF-D conversations")
    repeats = max(1, round(len(forged) / len(bona_fide)))
    return [*entries, *bona_fide * (repeats - 1)], {
        "bona_fide": len(bona_fide), "forgery": len(forged), "bona_fide_repeats": repeats,
    }  # fmt: skip
