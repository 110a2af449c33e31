"""JSONL reading and atomic writing: a malformed line names its file and line; a crash never
leaves a half-written file in place of a good one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from dfa_bench.schema import ValidationError


def iter_jsonl(path: Path | str) -> Iterator[tuple[int, object]]:
    """Yield (line number, parsed object) for every non-blank line."""
    path = Path(path)
    if not path.is_file():
        raise ValidationError("file not found", path=str(path))
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    f"malformed JSON: {exc.msg} (column {exc.colno})", path=str(path), line=line_no
                ) from None


def atomic_write_text(path: Path | str, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: Path | str, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_json(path: Path | str, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
