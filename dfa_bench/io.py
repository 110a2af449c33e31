"""JSONL reading and atomic writing: a malformed line names its file and line; a crash never
leaves a half-written file in place of a good one."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from dfa_bench.schema import ValidationError


def sha256_file(path: Path | str) -> str:
    """The sha256 of a file's bytes, read in chunks: what manifests, run records and caches identify files by."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def parse_json(data: str | bytes, *, path: str, line: int | None = None) -> object:
    """json.loads, with every way untrusted text can fail turned into a ValidationError naming the
    file and line: bytes that are not UTF-8, malformed JSON, an integer longer than Python converts
    (4300 digits), nesting deeper than the parser recurses."""
    where = {"path": path, "line": line}
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", **where) from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        at = f"column {exc.colno}" if line is not None else f"line {exc.lineno} column {exc.colno}"
        raise ValidationError(f"malformed JSON: {exc.msg} ({at})", **where) from None
    except ValueError as exc:  # int max_str_digits
        raise ValidationError(f"unreadable JSON: {str(exc).split(';')[0]}", **where) from None
    except RecursionError:
        raise ValidationError("unreadable JSON: nested too deeply", **where) from None


def read_json(path: Path | str) -> object:
    path = Path(path)
    if path.is_dir():
        raise ValidationError("is a directory, expected a JSON file", path=str(path))
    if not path.is_file():
        raise ValidationError("file not found", path=str(path))
    return parse_json(path.read_bytes(), path=str(path))


def iter_jsonl(path: Path | str) -> Iterator[tuple[int, object]]:
    """Yield (line number, parsed object) for every non-blank line."""
    path = Path(path)
    if path.is_dir():
        raise ValidationError("is a directory, expected a JSONL file", path=str(path))
    if not path.exists():
        raise ValidationError("file not found", path=str(path))
    if not path.is_file():
        raise ValidationError("not a regular file (a FIFO, socket or device?), expected a JSONL file", path=str(path))
    with open(path, "rb") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            yield line_no, parse_json(line, path=str(path), line=line_no)


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(path: Path | str, mode: str = "w") -> Iterator[IO]:
    """Write to a temp file beside `path`; it replaces `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files owner-only; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_jsonl(path: Path | str, rows: Iterable[dict]) -> None:
    """Streams `rows` (any iterable) to a temp file, then swaps it in."""
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_json(path: Path | str, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_json_array(path: Path | str, rows: Iterable[object]) -> int:
    """A JSON list written one element at a time (LLaVA training files can outgrow memory); returns its length."""
    n = 0
    with atomic_open(path) as handle:
        handle.write("[")
        for row in rows:
            handle.write(("\n" if n == 0 else ",\n") + json.dumps(row, ensure_ascii=False))
            n += 1
        handle.write("\n]\n")
    return n


class AppendLog:
    """An append-only JSONL journal that survives a crash: a torn last line is cut off on open,
    and every line is flushed as it is written, so a resumed run sees exactly what finished."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(self.path, "r+b") as handle:
                    handle.truncate(data.rfind(b"\n") + 1)
        self._handle = open(self.path, "a", encoding="utf-8")

    def rows(self) -> Iterator[dict]:
        for _, row in iter_jsonl(self.path):
            yield row

    def append(self, row: dict) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
