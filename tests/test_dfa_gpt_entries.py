"""Bad training data is skipped and reported with its file and index; presets select abilities."""

from __future__ import annotations

import json

import pytest
from dfa_gpt_fixtures import make_training_data
from transformers import AutoProcessor

from dfa_bench.tiny_models import build_tiny_llava
from dfa_gpt.dataset import TrainingSet
from dfa_gpt.entries import BadSampleReport, load_entries, read_report
from dfa_gpt.recipe import ANNOTATION_PRESETS, Recipe


def test_presets_select_abilities(tmp_path):
    data, images = make_training_data(tmp_path, 3)
    rows = json.loads(data.read_text())
    rows.append({**rows[0], "id": "someone-elses-data-7"})  # no ability in its id: kept by the full preset only
    data.write_text(json.dumps(rows))
    seen = {}
    for preset, abilities in ANNOTATION_PRESETS.items():
        entries, counts = load_entries([data], images, abilities=abilities, report=BadSampleReport(None))
        seen[preset] = sorted({e.ability for e in entries})
        assert counts["filtered"] == len(rows) - len(entries)
    assert seen == {
        "D": ["dfd"], "D+C": ["dfc", "dfd"], "D+C+AD": ["ad", "dfc", "dfd"], "D+C+AD+FC": ["ad", "dfc", "dfd", "fc", "other"]
    }  # fmt: skip
    with pytest.raises(ValueError, match="unknown annotations preset 'D\\+X'"):
        Recipe(annotations="D+X")


def test_bad_entries_are_skipped_and_reported_with_file_and_index(tmp_path):
    data, images = make_training_data(tmp_path, 2)
    rows = json.loads(data.read_text())
    good = len(rows)
    rows += [
        "not an object",
        {"id": "no-image", "conversations": rows[0]["conversations"]},
        {"id": "missing-file", "image": "nope.png", "conversations": rows[0]["conversations"]},
        {"id": "two-humans", "image": "face_0.png", "conversations": [{"from": "human", "value": "a"}] * 2},
        {"id": "ends-on-human", "image": "face_0.png", "conversations": rows[0]["conversations"][:1]},
        {"id": "bad-role", "image": "face_0.png", "conversations": [{"from": "bot", "value": "x"}]},
        {"id": "empty", "image": "face_0.png", "conversations": [{"from": "human", "value": "<image>"},
                                                                 {"from": "gpt", "value": "x"}]},
    ]  # fmt: skip
    data.write_text(json.dumps(rows))
    report = BadSampleReport(tmp_path / "bad.jsonl")
    entries, counts = load_entries([data], images, abilities=None, report=report)
    assert len(entries) == good and counts["skipped"] == 7
    bad = read_report(tmp_path / "bad.jsonl")
    assert [row["index"] for row in bad] == list(range(good, good + 7))
    assert all(row["file"] == str(data) for row in bad)
    reasons = {row["id"]: row["reason"] for row in bad}
    assert "image not found" in reasons["missing-file"] and "alternate" in reasons["two-humans"]
    assert "ends on a human turn" in reasons["ends-on-human"] and "empty" in reasons["empty"]


def test_a_corrupt_image_is_replaced_by_the_next_sample_and_reported(tmp_path):
    data, images = make_training_data(tmp_path, 2)
    (images / "face_1.png").write_bytes((images / "face_1.png").read_bytes()[:60])  # truncated PNG
    processor = AutoProcessor.from_pretrained(build_tiny_llava(tmp_path / "model"))
    report = BadSampleReport(tmp_path / "bad.jsonl")
    entries, _ = load_entries([data], images, abilities=None, report=report)
    dataset = TrainingSet(entries, processor, max_length=2048, report=report)
    broken = [i for i, e in enumerate(dataset.entries) if e.image.name == "face_1.png"]
    assert broken
    for i in broken:  # every item still yields a sample: the next one with a readable image
        sample = dataset[i]
        following = next(j % len(dataset) for j in range(i, i + len(dataset)) if j % len(dataset) not in broken)
        assert sample["input_ids"].tolist() == dataset.encoded[following].input_ids
        assert sample["pixel_values"].shape == (3, 30, 30)
    bad = read_report(tmp_path / "bad.jsonl")
    assert sorted(row["index"] for row in bad) == sorted(dataset.entries[i].index for i in broken)
    assert all("face_1.png" in row["reason"] for row in bad)


def test_balance_dfd_repeats_the_bona_fide_verdicts_until_dfd_is_balanced(tmp_path):
    from dfa_bench.templates import dfd_answer
    from dfa_gpt.entries import balance_dfd

    _, images = make_training_data(tmp_path, 1)
    labels = ["bona_fide"] * 2 + ["forgery"] * 8
    rows = [{"id": f"r{i}:dfd", "image": "face_0.png", "conversations": [
        {"from": "human", "value": "<image>\nIs this face forged?"},
        {"from": "gpt", "value": dfd_answer("forged" if i % 2 else "authentic", label)}]}
        for i, label in enumerate(labels)]  # fmt: skip
    rows.append({"id": "r9:dfc", "image": "face_0.png", "conversations": [
        {"from": "human", "value": "<image>\nWhich kind?"}, {"from": "gpt", "value": "Face swapping (FS)."}]})  # fmt: skip
    data = tmp_path / "balanced.json"
    data.write_text(json.dumps(rows))
    entries, _ = load_entries([data], images, abilities=None, report=BadSampleReport(None))
    balanced, counts = balance_dfd(entries)
    assert counts == {"bona_fide": 2, "forgery": 8, "bona_fide_repeats": 4}
    assert balanced[: len(entries)] == entries
    added = balanced[len(entries) :]
    assert sorted(e.id for e in added) == ["r0:dfd"] * 3 + ["r1:dfd"] * 3
    # a DF-D answer whose verdict cannot be read is an error naming the entry, not a silent imbalance
    rows[0]["conversations"][1]["value"] = "No."
    data.write_text(json.dumps(rows))
    entries, _ = load_entries([data], images, abilities=None, report=BadSampleReport(None))
    with pytest.raises(ValueError, match=r"balanced.json: entry 0 \(r0:dfd\): cannot balance DF-D"):
        balance_dfd(entries)
