from __future__ import annotations

import json

import pytest

from dfa_bench.instruct.sources.deepfakebench import read_deepfakebench_json
from dfa_bench.instruct.taxonomy import category_of
from dfa_bench.schema import ValidationError


def _frames(root, video, n):
    folder = root / "frames" / video
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        (folder / f"{i:03d}.png").write_bytes(b"png")
        paths.append(f"frames/{video}/{i:03d}.png")
    return paths


def test_walks_varying_nesting_and_reports_missing_frames(tmp_path):
    data = {
        "simswap_ff": {
            "FF-real": {"train": {"c23": {"000": {"label": "FF-real", "frames": _frames(tmp_path, "000", 2)}}}},
            "simswap": {
                "train": {"c23": {"000_003": {"label": "simswap", "frames": _frames(tmp_path, "000_003", 2)}}},
                "test": {"c23": {"004_009": {"label": "simswap", "frames": ["frames/004_009/000.png"]}}},
            },
        }
    }
    path = tmp_path / "simswap_ff.json"
    path.write_text(json.dumps(data))
    entries, missing = read_deepfakebench_json(path, tmp_path)
    assert len(entries) == 4
    real = [e for e in entries if e.is_real]
    assert len(real) == 2 and all(e.technique == "" and e.split == "train" for e in real)
    fake = [e for e in entries if not e.is_real]
    assert {e.video for e in fake} == {"000_003"} and category_of(fake[0].technique) == "face_swapping"
    assert missing == [f"{path}: simswap_ff/simswap/test/c23/004_009: frame not found: frames/004_009/000.png"]


def test_shallow_fake_real_layout(tmp_path):
    data = {"stargan": {"fake": {"img1": {"label": "fake", "frames": _frames(tmp_path, "img1", 1)}},
                        "real": {"img2": {"label": "real", "frames": _frames(tmp_path, "img2", 1)}}}}  # fmt: skip
    path = tmp_path / "stargan.json"
    path.write_text(json.dumps(data))
    entries, missing = read_deepfakebench_json(path, tmp_path)
    assert not missing
    assert {(e.video, e.is_real, e.technique, e.split) for e in entries} == {
        ("img1", False, "stargan", ""), ("img2", True, "", "")}  # fmt: skip


def test_malformed_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(ValidationError, match="broken.json"):
        read_deepfakebench_json(path, tmp_path)


def test_a_video_entry_may_carry_a_description(tmp_path):
    fake = {"label": "FF-DF", "frames": _frames(tmp_path, "000_003", 2), "description": " 1. Face boundary: a seam. "}
    real = {"label": "FF-real", "frames": _frames(tmp_path, "000", 1), "description": "ignored for bona fide"}
    data = {"ff": {"FF-DF": {"test": {"000_003": fake}}, "FF-real": {"test": {"000": real}}}}
    (tmp_path / "ff.json").write_text(json.dumps(data))
    entries, _ = read_deepfakebench_json(tmp_path / "ff.json", tmp_path)
    assert [e.description for e in entries] == ["1. Face boundary: a seam."] * 2 + [""]
    fake["description"] = ["not", "text"]
    (tmp_path / "ff.json").write_text(json.dumps(data))
    with pytest.raises(ValidationError, match="description is not a string"):
        read_deepfakebench_json(tmp_path / "ff.json", tmp_path)
