"""DFA-Bench-mini built offline from the photos inside installed packages (a small build: 4 per category)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dfa_bench.bench import read_bench
from dfa_bench.instruct import build_dir, mini, pipeline
from dfa_bench.instruct.regions import REGIONS
from dfa_bench.io import iter_jsonl
from dfa_bench.schema import CATEGORIES

PER_CATEGORY = 4


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("mini") / "build"
    return out, mini.build_mini(out, seed=0, per_category=PER_CATEGORY)


def _records(out: Path, split: str) -> list[dict]:
    return [r for _, r in iter_jsonl(out / f"records/{split}.jsonl")]


def _tree(root: Path) -> dict[str, bytes]:
    skip = ("work/", build_dir.REPORT)  # the journals record the order things happened in
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith(skip)}  # fmt: skip


def test_every_packaged_photo_is_found_and_checked(built):
    out, _ = built
    photos = {p["name"]: p for p in json.loads((out / "photos.json").read_text())["photos"]}
    assert set(photos) == {p.name for p in mini.photo_specs()}
    assert all(p["found"] and p["version"] for p in photos.values())
    assert photos["insightface_t1"]["faces"] >= 5  # a group photo gives every confident face
    assert photos["lfw_subset"]["faces"] >= 95
    assert all(p["faces"] == 1 for n, p in photos.items() if n not in ("insightface_t1", "lfw_subset"))
    # v2: every photo may train (the reasoning is in mini_photos.json's note and docs/pipeline.md)
    assert {p["use"] for p in photos.values()} == {"any"}


def test_splits_are_identity_disjoint_and_share_one_mix_of_sources(built):
    out, summary = built
    split_file = json.loads((out / "split.json").read_text())
    owners = {}
    for split, identities in split_file["identities"].items():
        for identity in identities:
            assert owners.setdefault(identity, split) == split
    faces = json.loads((out / "photos.json").read_text())["faces_by_split"]
    assert max(faces.values()) - min(faces.values()) <= 3  # a third of the faces each
    for split in ("train", "dev", "test"):
        records = _records(out, split)
        assert {r["category"] for r in records} == set(CATEGORIES)
        assert len(records) == 5 * PER_CATEGORY == summary["records"][split]
        for record in records:
            assert {record["identity"], *record["related_identities"]} <= set(split_file["identities"][split])
    assert summary["near_duplicates_across_splits"] == 0  # no record image copies a face of another split
    # every split draws on the same sources: a third of the LFW crops and of the group photo's faces each
    by_photo = json.loads((out / "photos.json").read_text())["faces_by_split_and_photo"]
    assert all(by_photo[s]["lfw_subset"] >= 25 and by_photo[s]["insightface_t1"] >= 1 for s in by_photo), by_photo


def test_assign_splits_spreads_each_source_and_keeps_linked_faces_together():
    image = np.zeros((4, 4, 3), np.uint8)
    faces = [mini.Face(f"lfw_{i:02d}", image, "lfw_subset", "any") for i in range(30)]
    faces += [mini.Face(f"group_{i}", image, "group", "any") for i in range(6)]
    faces += [mini.Face(name, image, name, "any") for name in ("a", "b", "c")]
    faces[0] = mini.Face("lfw_00", image, "lfw_subset", "any", ("person_1",))  # one person, two photos
    faces[1] = mini.Face("lfw_01", image, "lfw_subset", "any", ("person_1",))
    faces.append(mini.Face("held", image, "secret", "test-only"))
    splits = mini.assign_splits(faces, seed=0)
    split_of = {f.identity: s for s, members in splits.items() for f in members}
    assert split_of["lfw_00"] == split_of["lfw_01"]
    for source, n in (("lfw_subset", 30), ("group", 6)):
        counts = [sum(f.photo == source for f in splits[s]) for s in ("train", "dev", "test")]
        assert sum(counts) == n and max(counts) - min(counts) <= 2, (source, counts)
    assert {split_of[n] for n in ("a", "b", "c")} == {"train", "dev", "test"}  # singles fill what is short
    assert split_of["held"] != "train"


def test_forgeries_carry_masks_and_region_descriptions(built):
    out, _ = built
    for split in ("train", "test"):
        for record in _records(out, split):
            if record["label"] == "bona_fide":
                assert not record["artifact_description"]
                continue
            assert (out / record["mask"]).is_file() and record["technique"].startswith("mini_")
            lines = record["artifact_description"].splitlines()
            assert lines and all(line.split(". ", 1)[1].split(":")[0] in REGIONS for line in lines)


def test_outputs_benches_and_training_json(built):
    out, summary = built
    for split in pipeline.HELD_OUT:
        bench = read_bench(out / f"bench/{split}")
        assert bench.manifest["name"] == f"dfa-bench-mini-{split}"
        assert bench.manifest["counts"]["records"] == 5 * PER_CATEGORY
    merged = json.loads((out / "instruct/dfa_instruct_merged.json").read_text())
    assert len(merged) == summary["qa_pairs"]["merged"] == 5 * PER_CATEGORY * 2 + 4 * PER_CATEGORY
    assert summary["free_conversations"].startswith("skipped: offline")
    assert summary["annotator"] == "offline-mask"


def test_rerun_resumes_and_rebuilds_identically(built, tmp_path):
    out, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = _tree(copy)
    # an interruption after some records: drop the last journaled ones, as if they never finished
    done = (copy / build_dir.DONE_JOBS).read_text().splitlines()
    (copy / build_dir.DONE_JOBS).write_text("".join(line + "\n" for line in done[:-7]))
    journal = (copy / build_dir.JOURNAL).read_text().splitlines()
    (copy / build_dir.JOURNAL).write_text("".join(line + "\n" for line in journal[:-7]))
    for rid in done[-7:]:
        (copy / f"images/{rid}.png").unlink()
    summary = mini.build_mini(copy, seed=0, per_category=PER_CATEGORY)
    assert summary["records_made_this_run"] == 7
    assert _tree(copy) == before
    assert mini.build_mini(copy, seed=0, per_category=PER_CATEGORY)["records_made_this_run"] == 0


def test_a_larger_train_split_adds_train_records_only(built, tmp_path):
    out, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = _tree(copy)
    summary = mini.build_mini(copy, seed=0, per_category=PER_CATEGORY, train_per_category=PER_CATEGORY + 2)
    assert summary["records_made_this_run"] == 2 * len(CATEGORIES)
    after = _tree(copy)
    for split in ("dev", "test"):  # the benches and their images are the default build's, byte for byte
        assert {k: v for k, v in after.items() if f"/{split}" in k or f"-{split}-" in k} == {
            k: v for k, v in before.items() if f"/{split}" in k or f"-{split}-" in k
        }
    train = _records(copy, "train")
    assert sorted(r["category"] for r in train) == sorted(CATEGORIES * (PER_CATEGORY + 2))
    for r in _records(out, "train"):  # the default build's train records are kept as they were
        assert after[r["image"]] == before[r["image"]]
    assert len(train) == len(_records(out, "train")) + 2 * len(CATEGORIES)


def test_a_changed_photo_is_reported_not_used(monkeypatch, tmp_path):
    specs = mini.photo_specs()
    tampered = [mini.Photo(**{**s.__dict__, "sha256": "0" * 64}) if s.name == "astronaut" else s for s in specs]
    path, _, problem = mini.locate(tampered[0])
    assert path is None and "differs from the manifest" in problem
    missing = mini.Photo(**{**specs[0].__dict__, "distribution": "no-such-package-xyz"})
    assert "not installed" in mini.locate(missing)[2]
