"""The cross-split near-duplicate check catches an augmented copy that sha256 cannot."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from dfa_bench.bench import sha256_file
from dfa_bench.instruct.mini import locate, photo_specs
from dfa_bench.instruct.near_duplicates import near_duplicates


def test_a_flipped_recompressed_copy_in_another_split_is_caught(tmp_path):
    photos = {p.name: p for p in photo_specs()}
    images = {}
    for name in ("astronaut", "grace_hopper", "franz_kafka"):
        path, _, problem = locate(photos[name])
        assert problem is None, problem
        with Image.open(path) as image:
            images[name] = image.convert("RGB").resize((224, 224))
    for name, image in images.items():
        image.save(tmp_path / f"{name}.png")
    # the copy: mirrored, slightly rescaled, JPEG at quality 60, saved as PNG again
    buffer = io.BytesIO()
    ImageOps.mirror(images["astronaut"]).resize((210, 210)).resize((224, 224)).save(buffer, "JPEG", quality=60)
    Image.open(buffer).save(tmp_path / "copy.png")
    assert sha256_file(tmp_path / "copy.png") != sha256_file(tmp_path / "astronaut.png")

    splits = [
        ("astronaut.png", "train"),
        ("grace_hopper.png", "test"),
        ("franz_kafka.png", "dev"),
        ("copy.png", "test"),
    ]
    found = near_duplicates((str(tmp_path / name), split) for name, split in splits)
    assert [(f.first_split, f.second_split) for f in found] == [("train", "test")]
    assert found[0].first.endswith("astronaut.png") and found[0].second.endswith("copy.png")
    # the same copy inside one split is no leak
    assert near_duplicates([(str(tmp_path / "astronaut.png"), "train"), (str(tmp_path / "copy.png"), "train")]) == []


def test_different_faces_are_not_near_duplicates(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    assert near_duplicates((str(tmp_path / f"{i}.png"), f"s{i}") for i in range(4)) == []
