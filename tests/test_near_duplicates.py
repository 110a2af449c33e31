"""The cross-split copy check catches an augmented copy (flipped, rescaled, re-compressed) that sha256 cannot."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dfa_bench.instruct.faces import FaceAligner
from dfa_bench.instruct.mini import augment, locate, photo_specs
from dfa_bench.instruct.near_duplicates import THRESHOLD, best_match, copies_across_splits
from dfa_bench.io import sha256_file


@pytest.fixture(scope="module")
def faces():
    aligner = FaceAligner(size=224)
    photos = {p.name: p for p in photo_specs()}
    out = {}
    for name in ("astronaut", "grace_hopper", "franz_kafka"):
        path, _, problem = locate(photos[name])
        assert problem is None, problem
        with Image.open(path) as image:
            out[name] = np.asarray(aligner.align(image.convert("RGB")).image)
    return out


def flipped_copy(face: np.ndarray, path) -> None:
    """The mini's own augmentation (scale, shift, JPEG), with a seed that flips."""
    seed = next(
        s for s in range(100) if augment(face, np.ones(face.shape[:2], bool), np.random.default_rng(s))[2]["flip"]
    )
    png, _, params = augment(face, np.ones(face.shape[:2], bool), np.random.default_rng(seed))
    assert params["flip"] and params["jpeg_quality"] < 96
    path.write_bytes(png)


def test_a_flipped_recompressed_copy_in_another_split_is_caught(faces, tmp_path):
    flipped_copy(faces["astronaut"], tmp_path / "copy.png")
    Image.fromarray(faces["astronaut"]).save(tmp_path / "original.png")
    assert sha256_file(tmp_path / "copy.png") != sha256_file(tmp_path / "original.png")
    owners = [("astronaut", faces["astronaut"], "train"), ("grace_hopper", faces["grace_hopper"], "dev"),
              ("franz_kafka", faces["franz_kafka"], "test")]  # fmt: skip
    found = copies_across_splits(owners, [(str(tmp_path / "copy.png"), "test")])
    assert [(f.face, f.face_split, f.record_split) for f in found] == [("astronaut", "train", "test")]
    assert found[0].similarity >= THRESHOLD
    # in its own split the copy is no leak, and another person's face is not a copy
    assert copies_across_splits(owners, [(str(tmp_path / "copy.png"), "train")]) == []
    flipped_copy(faces["grace_hopper"], tmp_path / "hopper.png")
    assert copies_across_splits(owners[:1] + owners[2:], [(str(tmp_path / "hopper.png"), "dev")]) == []


def test_similarity_is_high_for_copies_only(faces):
    names = list(faces)
    similarity = best_match([faces[n] for n in names], [faces[n] for n in names])
    assert np.all(np.diag(similarity) > 0.99)
    assert np.all(similarity[~np.eye(len(names), dtype=bool)] < THRESHOLD)
