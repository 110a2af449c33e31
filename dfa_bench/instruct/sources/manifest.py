"""Read a generic source: a CSV manifest of images and videos with their labels.

Columns: `path`, `label`, `category`, `technique`, `identity`, and optionally `source` (the bona fide
image a FS/FR/FE forgery was made from: the offline annotator derives its region mask from the pair),
`related_identities` (';'-separated, e.g. a face swap's source identity) and `description` (a forgery's
artifact description, e.g. written by a person: its AD reference, no annotator needed). Paths are
relative to the manifest's folder. A bad row is reported with its line and reason and skipped; the rest
is read.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from dfa_bench.schema import CATEGORIES, LABELS, ValidationError, label_of

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})
NEEDS_SOURCE = frozenset({"face_swapping", "face_reenactment", "face_editing"})
REQUIRED_COLUMNS = ("path", "label", "category", "technique", "identity")


@dataclass(frozen=True)
class SourceItem:
    path: Path
    label: str
    category: str
    technique: str
    identity: str
    source: Path | None = None
    related_identities: tuple[str, ...] = field(default=())
    line: int = 0
    description: str = ""

    @property
    def is_video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_SUFFIXES


def read_manifest(manifest: Path | str) -> tuple[list[SourceItem], list[str]]:
    """(items, problems): one problem line per rejected row, naming the manifest line and reason.

    A manifest that cannot be read, or whose header lacks a required column, raises ValidationError: no row
    of it could be read."""
    manifest = Path(manifest)
    root = manifest.parent
    items: list[SourceItem] = []
    problems: list[str] = []
    if not manifest.is_file():
        why = "is a directory" if manifest.is_dir() else "file not found"
        raise ValidationError(f"manifest {why}", path=str(manifest))
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ValidationError(f"unreadable CSV header: {exc}", path=str(manifest), line=1) from None
        missing_columns = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing_columns:
            raise ValidationError(
                f"missing columns {', '.join(missing_columns)} (a manifest has {', '.join(REQUIRED_COLUMNS)})",
                path=str(manifest),
                line=1,
            )
        for row in reader:
            line = reader.line_num
            where = f"{manifest}:{line}"
            label, category = (row.get("label") or "").strip(), (row.get("category") or "").strip()
            if label not in LABELS:
                problems.append(f"{where}: unknown label {label!r}")
                continue
            if category not in CATEGORIES or label_of(category) != label:
                problems.append(f"{where}: category {category!r} does not fit label {label!r}")
                continue
            identity = (row.get("identity") or "").strip()
            if not identity:
                problems.append(f"{where}: empty identity")
                continue
            path = root / row["path"].strip()
            if not path.is_file():
                problems.append(f"{where}: file not found: {path}")
                continue
            source = (row.get("source") or "").strip()
            source_path = root / source if source else None
            if category in NEEDS_SOURCE and source_path is not None and not source_path.is_file():
                problems.append(f"{where}: source file not found: {source_path}")
                continue
            related = tuple(i.strip() for i in (row.get("related_identities") or "").split(";") if i.strip())
            description = (row.get("description") or "").strip()
            if description and label != "forgery":
                problems.append(f"{where}: a description is an artifact description: bona fide faces have none")
                continue
            items.append(SourceItem(path, label, category, (row.get("technique") or "").strip(), identity, source_path,
                                    related, line, description))  # fmt: skip
    return items, problems
