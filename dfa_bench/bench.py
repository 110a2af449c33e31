"""Build and read DFA-Bench directories: manifest.json, questions.jsonl and images/.

Reading validates everything (checksums, fields, uniqueness, images) and stops at the first
problem with an error that names the file, line and field. Nothing is silently skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

from dfa_bench import __version__
from dfa_bench.io import iter_jsonl, read_json, sha256_file, write_jsonl
from dfa_bench.schema import CATEGORIES, TASKS, ValidationError, validate_question, validate_record
from dfa_bench.templates import question_items

MANIFEST = "manifest.json"
QUESTIONS = "questions.jsonl"
IMAGES = "images"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Bench:
    """A validated DFA-Bench directory held in memory."""

    root: Path
    manifest: dict
    items: list[dict] = field(repr=False)

    @cached_property
    def by_id(self) -> dict[str, dict]:
        return {item["question_id"]: item for item in self.items}

    def items_for(self, task: str) -> list[dict]:
        return [item for item in self.items if item["task"] == task]

    def image_path(self, item: dict) -> Path:
        return self.root / item["image"]

    def image_sha256(self, item: dict) -> str:
        """The manifest's sha256 of the item's image bytes (read_bench checked it against the file)."""
        return self.manifest["files"][item["image"]]

    @cached_property
    def manifest_sha256(self) -> str:
        return sha256_file(self.root / MANIFEST)


def read_records(path: Path) -> list[dict]:
    records, seen = [], {}
    for line_no, obj in iter_jsonl(path):
        record = validate_record(obj, path=str(path), line=line_no)
        if record["record_id"] in seen:
            raise ValidationError(
                f"duplicate record_id {record['record_id']!r} (first on line {seen[record['record_id']]})",
                path=str(path),
                line=line_no,
                field="record_id",
            )
        seen[record["record_id"]] = line_no
        records.append(record)
    return records


def build_bench(
    records_path: Path, images_dir: Path, output: Path, *, seed: int, name: str = "dfa-bench", version: str = "0"
) -> Bench:
    """Turn records + images into a bench directory. Writes to a sibling temp dir, then swaps it in.

    `output` may be missing, an empty directory or an earlier bench (replaced); anything else is refused,
    never deleted. A build that fails leaves `output` as it was."""
    records_path, images_dir, output = Path(records_path), Path(images_dir), Path(output)
    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise ValidationError("--output exists and is not a directory", path=str(output))
    if output.is_dir() and any(output.iterdir()) and not (output / MANIFEST).is_file():
        raise ValidationError("--output holds files but no bench (no manifest.json); give a new directory",
                              path=str(output))  # fmt: skip
    records = read_records(records_path)
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        manifest, items = _write_bench(records, records_path, images_dir, staging, seed=seed, name=name,
                                       version=version)  # fmt: skip
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if output.exists():
        shutil.rmtree(output)
    os.replace(staging, output)
    return Bench(output, manifest, items)


def _write_bench(
    records: list[dict], records_path: Path, images_dir: Path, staging: Path, *, seed: int, name: str, version: str
) -> tuple[dict, list[dict]]:
    (staging / IMAGES).mkdir(parents=True)

    items: list[dict] = []
    image_names: dict[str, str] = {}
    line_of = {r["record_id"]: i for i, r in enumerate(records, 1)}
    for record in records:
        source = images_dir / record["image"]
        if not source.is_file():
            raise ValidationError(
                f"image not found: {source}", path=str(records_path), line=line_of[record["record_id"]], field="image"
            )
        dest_name = _UNSAFE.sub("_", record["record_id"]) + source.suffix.lower()
        if dest_name in image_names:
            raise ValidationError(
                f"record_id maps to the same image name as {image_names[dest_name]!r}",
                path=str(records_path),
                line=line_of[record["record_id"]],
                field="record_id",
            )
        image_names[dest_name] = record["record_id"]
        shutil.copyfile(source, staging / IMAGES / dest_name)
        items.extend(question_items(record, seed, f"{IMAGES}/{dest_name}"))

    write_jsonl(staging / QUESTIONS, items)
    files = {QUESTIONS: sha256_file(staging / QUESTIONS)}
    files.update({f"{IMAGES}/{n}": sha256_file(staging / IMAGES / n) for n in sorted(image_names)})
    manifest = {
        "name": name,
        "version": version,
        "seed": seed,
        "builder": f"dfa-bench {__version__}",
        "counts": {
            "records": len(records),
            "tasks": {t: sum(1 for i in items if i["task"] == t) for t in TASKS},
            "categories": {c: sum(1 for r in records if r["category"] == c) for c in CATEGORIES},
        },
        "files": files,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest, items


def verify_files(root: str, files: dict[str, str], verify_checksums: bool = True) -> None:
    """Every file the manifest lists lies inside the bench directory, exists and (optionally) has its sha256.

    Inside means a relative path without `..` that, symlinks followed, resolves under the bench's real path:
    a bench is shared and downloaded, and an image path must not make an eval read (and show a model, or an
    API) a file elsewhere on the machine."""
    real_root = os.path.realpath(root)
    for rel, expected in files.items():
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or os.path.isabs(rel) or ".." in parts:
            raise ValidationError(f"file {rel!r} listed in the manifest is outside the bench; refused", path=root)
        path = os.path.join(root, rel)  # plain strings: Path objects cost more than hashing 35k small files
        real = os.path.realpath(path)
        if not real.startswith(real_root + os.sep):
            raise ValidationError(f"resolves to {real}, outside the bench ({real_root}); refused", path=path)
        try:
            actual = sha256_file(path) if verify_checksums else os.stat(path) and expected
        except OSError:
            raise ValidationError("file listed in the manifest is missing or unreadable", path=path) from None
        if actual != expected:
            raise ValidationError(f"sha256 mismatch (manifest says {expected})", path=path)


def decode_images(bench: Bench) -> None:
    """Decode every image of the bench in full; ValidationError naming each one that is damaged.

    A checksum only proves the file is the one the manifest lists: a truncated PNG whose hash was
    updated passes it, and lmms-eval would then show the model a partly black face.
    """
    from dfa_bench.imaging import load_rgb

    bad = []
    for name in sorted({item["image"] for item in bench.items}):
        try:
            load_rgb(bench.root / name)
        except ValidationError as exc:
            bad.append(str(exc))
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise ValidationError(f"{len(bad)} images cannot be decoded: " + "; ".join(bad[:5]) + more)


def read_bench(root: Path | str, *, verify_checksums: bool = True, executor: Executor | None = None) -> Bench:
    """Load and validate a bench directory.

    Given an `executor` (a worker process), file checks run there while this process parses
    questions.jsonl; any error is raised here all the same.
    """
    root = Path(root)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ValidationError("bench manifest not found", path=str(manifest_path))
    manifest = read_json(manifest_path)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or QUESTIONS not in files:
        raise ValidationError(
            f"must list the sha256 of every file, {QUESTIONS} included", path=str(manifest_path), field="files"
        )
    if executor is None:
        verify_files(os.fspath(root), files, verify_checksums)
        pending = None
    else:
        pending = executor.submit(verify_files, os.fspath(root), files, verify_checksums)

    questions_path = root / QUESTIONS
    items, first_line = [], {}
    tasks_of: dict[str, tuple[int, str, set]] = {}
    for line_no, obj in iter_jsonl(questions_path):
        item = validate_question(obj, path=str(questions_path), line=line_no)
        qid = item["question_id"]
        if qid in first_line:
            raise ValidationError(
                f"duplicate question_id {qid!r} (first on line {first_line[qid]})",
                path=str(questions_path),
                line=line_no,
                field="question_id",
            )
        first_line[qid] = line_no
        if item["image"] not in files:
            raise ValidationError(
                f"image {item['image']!r} is not a file of this bench",
                path=str(questions_path),
                line=line_no,
                field="image",
            )
        items.append(item)
        tasks_of.setdefault(item["record_id"], (line_no, item["label"], set()))[2].add(item["task"])
    for record_id, (line_no, label, tasks) in tasks_of.items():
        # every record has DF-D and DF-C; a forgery has AD where a reference description exists
        expected = [{"dfd", "dfc"}, {"dfd", "dfc", "ad"}] if label == "forgery" else [{"dfd", "dfc"}]
        if tasks not in expected:
            raise ValidationError(
                f"record {record_id!r} has items {sorted(tasks)}, expected "
                + " or ".join(str(sorted(e)) for e in expected),
                path=str(questions_path),
                line=line_no,
                field="task",
            )
    if pending is not None:
        pending.result()  # re-raises the worker's ValidationError
    counts = Counter(item["task"] for item in items)
    expected_counts = manifest.get("counts", {}).get("tasks", {})
    for task, n in expected_counts.items():
        if counts.get(task, 0) != n:
            raise ValidationError(
                f"{task}: manifest says {n} items, found {counts.get(task, 0)}", path=str(manifest_path), field="counts"
            )
    return Bench(root, manifest, items)
