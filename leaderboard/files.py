"""Read a submission directory defensively: JSON only, nothing outside the directory, capped sizes.

A submission is untrusted input. We never execute or unpickle anything from it (only `json.loads`),
refuse any path that leaves the directory (`..`, absolute paths, symlinks whose target lies outside,
including through a symlinked folder), refuse anything but regular files, and refuse files larger than
`max_bytes` before reading them. Every error names the file (and line) relative to the submission.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

# 256 MiB per file. lmms-eval's per-sample logs repeat each response once per metric (six times for
# DF-D) and AD answers run to 512 tokens, so a full-size test split (~20k AD items) logs ~150 MB in one
# file; the cap leaves room for that while bounding what a hostile submission can make us read.
MAX_FILE_BYTES = 256 * 2**20


class SubmissionRejected(ValueError):
    """The submission is not accepted; the message says why and names the file, line and item."""


class SubmissionFiles:
    """The files of one submission directory, reached only through checked relative paths."""

    def __init__(self, root: Path | str, *, max_bytes: int = MAX_FILE_BYTES):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SubmissionRejected(f"{self.root}: not a directory")
        self.real_root = Path(os.path.realpath(self.root))
        self.max_bytes = max_bytes
        self.hashes: dict[str, str] = {}  # sha256 of every file read, for the entry's provenance

    def resolve(self, rel: str) -> Path:
        """The real path of `rel`, or SubmissionRejected if it leaves the submission or is not a small file."""
        parts = PurePosixPath(rel).parts
        if PurePosixPath(rel).is_absolute() or ".." in parts or not parts:
            raise SubmissionRejected(f"{rel}: path outside the submission refused")
        path = self.root / rel
        real = Path(os.path.realpath(path))
        if real != self.real_root and self.real_root not in real.parents:
            raise SubmissionRejected(f"{rel}: resolves to {real}, outside the submission ({self.real_root}); refused")
        if not real.is_file():
            raise SubmissionRejected(f"{rel}: not a regular file")
        size = real.stat().st_size
        if size > self.max_bytes:
            raise SubmissionRejected(
                f"{rel}: {size} bytes exceeds the {self.max_bytes}-byte limit per submitted file; refused unread"
            )
        return real

    def exists(self, rel: str) -> bool:
        """True when `rel` is present, even as a dangling or outside-pointing link (so it gets refused, not skipped)."""
        path = self.root / rel
        return path.exists() or path.is_symlink()

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching `pattern`, sorted. Matches are checked when read, so an outside link is refused."""
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.glob(pattern))

    def read_bytes(self, rel: str) -> bytes:
        data = self.resolve(rel).read_bytes()
        if len(data) > self.max_bytes:  # it grew after the stat
            raise SubmissionRejected(f"{rel}: exceeds the {self.max_bytes}-byte limit per submitted file")
        self.hashes[rel] = hashlib.sha256(data).hexdigest()
        return data

    def read_json(self, rel: str) -> object:
        return _loads(self.read_bytes(rel), rel)

    def iter_jsonl(self, rel: str, *, allow_torn_tail: bool = False) -> Iterator[tuple[int, object]]:
        """(line number, object) for every non-blank line, streamed. `allow_torn_tail` skips an unterminated
        last line that is not JSON: an append-only log whose writer was killed (our response cache)."""
        digest, total = hashlib.sha256(), 0
        with open(self.resolve(rel), "rb") as handle:
            for line_no, raw in enumerate(handle, 1):
                digest.update(raw)
                total += len(raw)
                if total > self.max_bytes:  # it grew after the stat
                    raise SubmissionRejected(f"{rel}: exceeds the {self.max_bytes}-byte limit per submitted file")
                if not raw.strip():
                    continue
                try:
                    obj = _loads(raw, f"{rel}:{line_no}", jsonl=True)
                except SubmissionRejected:
                    if allow_torn_tail and not raw.endswith(b"\n") and not handle.read(1):
                        break
                    raise
                yield line_no, obj
        self.hashes[rel] = digest.hexdigest()


def _loads(raw: bytes, where: str, *, jsonl: bool = False) -> object:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SubmissionRejected(f"{where}: malformed file: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        at = f"column {exc.colno}" if jsonl else f"line {exc.lineno} column {exc.colno}"
        raise SubmissionRejected(f"{where}: malformed JSON: {exc.msg} ({at})") from None
    except ValueError as exc:  # an integer longer than Python converts (4300 digits)
        raise SubmissionRejected(f"{where}: malformed JSON: {str(exc).split(';')[0]}") from None
    except RecursionError:
        raise SubmissionRejected(f"{where}: malformed JSON: nested too deeply") from None
