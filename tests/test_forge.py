"""Forgery generators on real aligned faces (scikit-image's astronaut, matplotlib's Grace Hopper)."""

from __future__ import annotations

import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image
from skimage import data

from dfa_bench import forge
from dfa_bench.faces import FaceAligner
from dfa_bench.regions import ARTIFACT_DESCRIPTIONS, covered_regions, describe_artifacts
from dfa_bench.schema import FORGERY_CATEGORIES

SEEDS = range(12)


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    aligner = FaceAligner(size=224)
    astronaut = aligner.align(Image.fromarray(data.astronaut())).image
    hopper = aligner.align(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")).image
    return np.asarray(astronaut), np.asarray(hopper)


def _make(category: str, faces, seed: int) -> tuple[forge.Forgery, np.ndarray]:
    a, b = faces
    rng = np.random.default_rng(seed)
    if category == "face_swapping":
        return forge.face_swap(a, b, rng), a
    if category == "entire_face_synthesis":
        return forge.face_synthesis([a, b, a[:, ::-1].copy()], rng), a
    return forge.GENERATORS[category](a, rng), a


@pytest.mark.parametrize("category", FORGERY_CATEGORIES)
def test_masks_are_exact_and_annotatable(category, faces):
    kinds = set()
    for seed in SEEDS:
        forgery, base = _make(category, faces, seed)
        assert forgery.category == category and forgery.image.shape == base.shape and forgery.image.dtype == np.uint8
        assert forgery.artifact_kind in ARTIFACT_DESCRIPTIONS and forgery.technique.startswith("mini_")
        diff = np.abs(forgery.image.astype(int) - base.astype(int)).max(axis=2)
        assert forgery.mask.any() and (diff[~forgery.mask] == 0).all()  # nothing changes outside the mask
        assert diff[forgery.mask].mean() > 2  # and the masked part really changed
        assert describe_artifacts(forgery.mask, forgery.artifact_kind).startswith("1. ")
        kinds.add(forgery.technique)
    assert len(kinds) > 1  # the seeds reach more than one variant


def test_deterministic_given_the_seed(faces):
    for category in FORGERY_CATEGORIES:
        one, _ = _make(category, faces, 5)
        two, _ = _make(category, faces, 5)
        assert one.image.tobytes() == two.image.tobytes() and one.params == two.params
    params = {str(_make("face_editing", faces, s)[0].params) for s in SEEDS}
    assert len(params) > 3


def test_edits_land_on_their_regions(faces):
    seen = {}
    for seed in range(40):
        forgery, _ = _make("face_editing", faces, seed)
        seen.setdefault(forgery.technique, covered_regions(forgery.mask))
    assert "Mouth and lips" in seen["mini_fe_lip_colour"]
    assert seen["mini_fe_hair_colour"][0] in ("Hairline", "Forehead")
    assert seen["mini_fe_eye_enlarge"][0] == "Eyes"
    assert "Cheeks and jawline" in seen["mini_fe_skin_smoothing"]


def test_a_swap_brings_in_the_source_face(faces):
    target, source = faces
    region = forge.inner_face_mask(224)
    for seed in SEEDS:
        swapped = forge.face_swap(target, source, np.random.default_rng(seed)).image

        def edges(x: np.ndarray) -> np.ndarray:  # structure, not colour: the swap recolours the donor
            grey = x.astype(float).mean(axis=2)
            return np.abs(np.diff(grey, axis=0))[region[1:]]

        assert np.corrcoef(edges(swapped), edges(source))[0, 1] > np.corrcoef(edges(swapped), edges(target))[0, 1]


def test_bad_inputs_raise(faces):
    a, b = faces
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="share one crop size"):
        forge.face_swap(a, b[:200, :200].copy(), rng)
    with pytest.raises(ValueError, match="uint8"):
        forge.face_edit(a.astype(float), rng)
    with pytest.raises(ValueError, match="square"):
        forge.face_reenactment(a[:, :200].copy(), rng)
    with pytest.raises(ValueError, match="at least two"):
        forge.face_synthesis([a], rng)
