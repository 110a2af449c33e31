from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dfa_bench.bench import build_bench, read_bench
from dfa_bench.io import sha256_file
from dfa_bench.schema import ValidationError


def _rewrite_questions(bench: Path, edit) -> None:
    """Edit questions.jsonl lines and re-sign the manifest, so only the content check can catch it."""
    path = bench / "questions.jsonl"
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    manifest = json.loads((bench / "manifest.json").read_text())
    manifest["files"]["questions.jsonl"] = sha256_file(path)
    (bench / "manifest.json").write_text(json.dumps(manifest))


def _set_field(line_index: int, field: str, value):
    def edit(lines):
        obj = json.loads(lines[line_index])
        if value is KeyError:
            del obj[field]
        else:
            obj[field] = value
        lines[line_index] = json.dumps(obj)

    return edit


def test_valid_bench_reads(bench_dir):
    bench = read_bench(bench_dir)
    counts = bench.manifest["counts"]
    assert counts["records"] == 30
    assert counts["tasks"] == {"dfd": 30, "dfc": 30, "ad": 24}
    assert len(bench.items) == 84 and len(bench.by_id) == 84
    assert set(bench.manifest["files"]) == {"questions.jsonl", *(f"images/syn{i:06d}.png" for i in range(30))}


@pytest.mark.parametrize(
    ("edit", "line", "field", "message"),
    [
        (_set_field(0, "label", "fake"), 1, "label", "unknown label 'fake'"),
        (_set_field(3, "category", "morphing"), 4, "category", "unknown category 'morphing'"),
        (_set_field(3, "label", "bona_fide"), 4, "label", "contradicts category"),
        (_set_field(1, "task", "fc"), 2, "task", "unknown task 'fc'"),
        (_set_field(0, "polarity", "maybe"), 1, "polarity", "expected one of"),
        (
            _set_field(1, "options", [{"letter": "A", "category": "bona_fide", "text": "x"}]),
            2,
            "options",
            "five options",
        ),
        (_set_field(0, "question", KeyError), 1, "question", "missing"),
        (_set_field(0, "image", "images/elsewhere.png"), 1, "image", "not a file of this bench"),
        (lambda lines: lines.__setitem__(4, lines[3]), 5, "question_id", "duplicate question_id"),
        (lambda lines: lines.__setitem__(2, lines[2][:-5]), 3, None, "malformed JSON"),
        (lambda lines: lines.__setitem__(2, "[1, 2]"), 3, None, "expected a JSON object"),
        (lambda lines: lines.pop(5), None, "task", "has items"),
    ],
)
def test_content_errors_name_file_line_and_field(bench_dir, edit, line, field, message):
    _rewrite_questions(bench_dir, edit)
    with pytest.raises(ValidationError) as info:
        read_bench(bench_dir)
    error = info.value
    assert message in str(error)
    assert error.path.endswith("questions.jsonl")
    if line is not None:
        assert error.line == line and f"questions.jsonl:{line}:" in str(error)
    assert error.field == field


def test_checksum_mismatch_is_reported(bench_dir):
    path = bench_dir / "questions.jsonl"
    path.write_text(path.read_text().replace("This face image is", "This face image was", 1))
    with pytest.raises(ValidationError, match="sha256 mismatch") as info:
        read_bench(bench_dir)
    assert info.value.path == str(path)


def test_tampered_image_is_reported(bench_dir):
    image = bench_dir / "images" / "syn000004.png"
    image.write_bytes(image.read_bytes() + b"x")
    with pytest.raises(ValidationError, match="sha256 mismatch") as info:
        read_bench(bench_dir)
    assert info.value.path == str(image)


def test_missing_image_is_reported(bench_dir):
    (bench_dir / "images" / "syn000002.png").unlink()
    with pytest.raises(ValidationError, match="missing") as info:
        read_bench(bench_dir)
    assert info.value.path.endswith("syn000002.png")


def test_missing_or_malformed_manifest(bench_dir):
    (bench_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ValidationError, match="malformed JSON"):
        read_bench(bench_dir)
    (bench_dir / "manifest.json").unlink()
    with pytest.raises(ValidationError, match="manifest not found"):
        read_bench(bench_dir)


def _records(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOOD = {"record_id": "r1", "image": "images/face_000000.png", "label": "forgery", "category": "face_editing",
        "technique": "stargan", "identity": "p1", "artifact_description": "1. Hairline: colour shift."}  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "line", "field", "message"),
    [
        ([{**GOOD, "label": "fake"}], 1, "label", "unknown label"),
        ([{**GOOD, "category": "swap"}], 1, "category", "unknown category"),
        ([{**GOOD, "artifact_description": ["not", "text"]}], 1, "artifact_description", "expected a string"),
        ([GOOD, GOOD], 2, "record_id", "duplicate record_id"),
        ([{**GOOD, "image": "images/nope.png"}], 1, "image", "image not found"),
    ],
)
def test_build_rejects_bad_records(synthetic_source, tmp_path, rows, line, field, message):
    with pytest.raises(ValidationError, match=message) as info:
        build_bench(_records(tmp_path, rows), synthetic_source, tmp_path / "bench", seed=0)
    assert (info.value.line, info.value.field) == (line, field)
    assert not (tmp_path / "bench").exists()  # nothing half-built left behind


def test_a_forgery_without_a_description_has_no_ad_item(synthetic_source, tmp_path):
    rows = [GOOD, {**GOOD, "record_id": "r2", "artifact_description": "  "}]
    bench = build_bench(_records(tmp_path, rows), synthetic_source, tmp_path / "bench", seed=0)
    tasks = {(i["record_id"], i["task"]) for i in bench.items}
    assert tasks == {("r1", "dfd"), ("r1", "dfc"), ("r1", "ad"), ("r2", "dfd"), ("r2", "dfc")}
    assert read_bench(tmp_path / "bench").manifest["counts"]["tasks"] == {"dfd": 2, "dfc": 2, "ad": 1}


def test_failed_rebuild_keeps_the_previous_bench(synthetic_source, tmp_path):
    build_bench(_records(tmp_path, [GOOD]), synthetic_source, tmp_path / "bench", seed=0)
    before = (tmp_path / "bench" / "questions.jsonl").read_bytes()
    with pytest.raises(ValidationError):
        build_bench(
            _records(tmp_path, [{**GOOD, "image": "missing.png"}]), synthetic_source, tmp_path / "bench", seed=0
        )
    assert (tmp_path / "bench" / "questions.jsonl").read_bytes() == before
    shutil.rmtree(tmp_path / "bench")


def test_checks_in_a_worker_process_raise_the_same_error(bench_dir):
    from dfa_bench.scoring import rouge_worker

    image = bench_dir / "images" / "syn000004.png"
    with rouge_worker() as worker:
        assert len(read_bench(bench_dir, executor=worker).items) == 84
        image.write_bytes(image.read_bytes() + b"x")
        with pytest.raises(ValidationError, match="sha256 mismatch") as info:
            read_bench(bench_dir, executor=worker)
    assert info.value.path == str(image)
