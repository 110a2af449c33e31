"""Forgery generators on real aligned faces (scikit-image's astronaut, matplotlib's Grace Hopper)."""

from __future__ import annotations

import json
import time

import cv2
import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image
from skimage import data

from dfa_bench.instruct import forge
from dfa_bench.instruct.faces import FaceAligner
from dfa_bench.instruct.regions import ARTIFACT_DESCRIPTIONS, FIVE_POINT_TEMPLATE, covered_regions, describe_artifacts
from dfa_bench.schema import FORGERY_CATEGORIES

SEEDS = range(10)
INNER = {"Eyes", "Nose", "Cheeks and jawline", "Mouth and lips"}


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    """Two real people aligned to 224 x 224 by MTCNN (about a second on CPU, once per module)."""
    aligner = FaceAligner(size=224)
    astronaut = aligner.align(Image.fromarray(data.astronaut()))
    hopper = aligner.align(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    assert astronaut.status == "ok" and hopper.status == "ok"
    return np.asarray(astronaut.image), np.asarray(hopper.image)


def _make(category: str, target: np.ndarray, other: np.ndarray, seed: int, **kwargs) -> forge.Forgery:
    rng = np.random.default_rng(seed)
    if category == "face_swapping":
        return forge.face_swap(target, other, rng, **kwargs)
    if category == "entire_face_synthesis":
        return forge.face_synthesis([target, other, other[:, ::-1]], rng, **kwargs)
    return forge.GENERATORS[category](target, rng, **kwargs)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).max(axis=2)


def _check_forgery(forgery: forge.Forgery, base: np.ndarray, category: str) -> None:
    size = base.shape[0]
    assert forgery.category == category and forgery.technique.startswith("mini_")
    assert forgery.image.shape == base.shape and forgery.image.dtype == np.uint8
    assert forgery.mask.shape == (size, size) and forgery.mask.dtype == bool
    assert forgery.artifact_kind in ARTIFACT_DESCRIPTIONS
    json.dumps(forgery.params)  # provenance goes into the JSONL journal as it is
    diff = _diff(forgery.image, base)
    assert forgery.mask.any()
    assert (diff[~forgery.mask] == 0).all()  # nothing changes outside the mask, not even by one level
    assert diff[forgery.mask].mean() > 2  # and the masked part really changed
    assert (diff[forgery.mask] > 0).mean() > 0.3
    assert covered_regions(forgery.mask)
    assert describe_artifacts(forgery.mask, forgery.artifact_kind).startswith("1. ")


@pytest.mark.parametrize("category", FORGERY_CATEGORIES)
def test_forgeries_are_well_formed_with_exact_masks(category, faces):
    a, b = faces
    before = (a.copy(), b.copy())
    techniques = set()
    for target, other in ((a, b), (b, a)):
        for seed in SEEDS:
            forgery = _make(category, target, other, seed)
            _check_forgery(forgery, target, category)
            techniques.add(forgery.technique)
    assert len(techniques) > 1  # the seeds reach more than one variant
    assert np.array_equal(a, before[0]) and np.array_equal(b, before[1])  # inputs are not written to


@pytest.mark.parametrize("size", [112, 160])
def test_smaller_crops_work(size, faces):
    # a resized aligned crop is an aligned crop: the template scales with the crop
    a, b = (cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in faces)
    for category in FORGERY_CATEGORIES:
        for seed in range(6):
            _check_forgery(_make(category, a, b, seed), a, category)


def test_deterministic_given_the_seed(faces):
    a, b = faces
    for category in FORGERY_CATEGORIES:
        one, two = _make(category, a, b, 5), _make(category, a, b, 5)
        assert one.image.tobytes() == two.image.tobytes() and np.array_equal(one.mask, two.mask)
        assert (one.technique, one.artifact_kind, one.params) == (two.technique, two.artifact_kind, two.params)
        params = [json.dumps(_make(category, a, b, seed).params, sort_keys=True) for seed in SEEDS]
        assert len(set(params)) == len(params), category  # every seed makes its own choices


def test_edits_land_on_their_regions(faces):
    for face in faces:
        first = {}
        for seed in range(60):
            forgery = forge.face_edit(face, np.random.default_rng(seed))
            first.setdefault(forgery.technique, (covered_regions(forgery.mask), forgery.artifact_kind))
        assert set(first) == {
            "mini_fe_lip_colour",
            "mini_fe_hair_colour",
            "mini_fe_skin_smoothing",
            "mini_fe_eye_enlarge",
        }
        assert first["mini_fe_lip_colour"] == (["Mouth and lips"], "colour_shift")
        assert first["mini_fe_hair_colour"][0][0] in ("Hairline", "Forehead")
        assert (
            first["mini_fe_hair_colour"][0][:2] != ["Face boundary"] and "Eyes" not in first["mini_fe_hair_colour"][0]
        )
        assert first["mini_fe_eye_enlarge"] == (["Eyes"], "warping")
        skin, kind = first["mini_fe_skin_smoothing"]
        assert kind == "over_smoothing" and {"Cheeks and jawline", "Nose"} <= set(skin)


def test_reenactment_moves_the_named_features(faces):
    for face in faces:
        first = {}
        for seed in range(40):
            forgery = forge.face_reenactment(face, np.random.default_rng(seed))
            assert forgery.artifact_kind == "warping"
            first.setdefault(forgery.params["motion"], covered_regions(forgery.mask))
        assert set(first) == {"smile", "mouth_open", "brow_raise"}
        assert first["smile"][0] == "Mouth and lips" and first["mouth_open"][0] == "Mouth and lips"
        assert first["brow_raise"][0] in ("Eyes", "Forehead") and "Mouth and lips" not in first["brow_raise"]


def test_swaps_and_syntheses_replace_the_inner_face(faces):
    a, b = faces
    for seed in SEEDS:
        for category in ("face_swapping", "entire_face_synthesis"):
            assert len(INNER & set(covered_regions(_make(category, a, b, seed).mask))) == 4


def _detail(image: np.ndarray) -> np.ndarray:
    grey = image.astype(np.float32).mean(axis=2)
    return grey - cv2.GaussianBlur(grey, (0, 0), 3)


def test_a_swap_brings_in_the_source_face(faces):
    region = forge.inner_face_mask(224, scale=0.9)  # inside every swap's mask
    for target, source in (faces, faces[::-1]):
        before = np.abs(target.astype(int) - source.astype(int))[region].mean()
        detail_before = np.abs(_detail(target) - _detail(source))[region].mean()
        blends = set()
        for seed in SEEDS:
            swap = forge.face_swap(target, source, np.random.default_rng(seed))
            blends.add(swap.params["blend"])
            assert swap.mask[region].all()
            assert _diff(swap.image, target)[region].mean() > 10  # differs from the target inside the mask
            # closer to the source than the target was: in colour a little (the donor is recoloured to
            # the target's skin), in fine structure (eyes, wrinkles, teeth) almost entirely
            assert np.abs(swap.image.astype(int) - source.astype(int))[region].mean() < before
            assert np.abs(_detail(swap.image) - _detail(source))[region].mean() < 0.3 * detail_before
        assert blends == {"poisson", "alpha"}


def test_a_poisson_swap_takes_the_target_colours(faces):
    target, source = faces
    region = forge.inner_face_mask(224)
    for seed in SEEDS:
        swap = forge.face_swap(target, source, np.random.default_rng(seed))
        if swap.params["blend"] != "poisson":
            continue
        assert swap.artifact_kind == "blending_seam"
        mean_swap, mean_target, mean_source = (x[region].mean(axis=0) for x in (swap.image, target, source))
        assert np.abs(mean_swap - mean_target).max() < np.abs(mean_source - mean_target).max() / 2


def test_synthesis_from_three_faces_makes_a_new_face(faces):
    a, b = faces
    c = np.ascontiguousarray(b[:, ::-1])  # a third "identity": Hopper mirrored
    area = forge.face_area(224)
    textures = set()
    for seed in SEEDS:
        synth = forge.face_synthesis([a, b, c], np.random.default_rng(seed))
        textures.add(synth.params["texture"])
        weights = synth.params["weights"]
        assert len(weights) == 3 and abs(sum(weights) - 1) < 1e-3 and min(weights) > 0
        assert synth.artifact_kind == ("over_smoothing" if synth.params["texture"] == "smooth" else "texture_artifact")
        assert synth.mask[area].mean() > 0.99  # the whole face is new...
        for face in (a, b, c):  # ...and a copy of none of the faces it came from
            assert _diff(synth.image, face)[area].mean() > 8
        # the background (outside a margin round the face) is the first face's
        margin = cv2.dilate(synth.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert (synth.image[~margin] == a[~margin]).all()
    assert textures == {"smooth", "grid", "tiled"}
    for n in (2, 4):
        forgery = forge.face_synthesis([a, b, c, a[::1, ::-1]][:n], np.random.default_rng(0))
        _check_forgery(forgery, a, "entire_face_synthesis")
        assert len(forgery.params["weights"]) == n


def test_landmarks_place_the_edit(faces):
    a, b = faces
    template = FIVE_POINT_TEMPLATE * 224
    shifted = template + (12.0, 6.0)
    for category in FORGERY_CATEGORIES:
        for seed in range(4):
            default = _make(category, a, b, seed)
            explicit = _make(category, a, b, seed, landmarks=template)
            assert explicit.image.tobytes() == default.image.tobytes()  # the default is the template
            moved = _make(category, a, b, seed, landmarks=shifted)
            assert moved.technique == default.technique
            shift = np.argwhere(moved.mask).mean(axis=0) - np.argwhere(default.mask).mean(axis=0)  # (y, x)
            if moved.mask[-1].any():  # cut off by the crop's bottom edge (a dropped jaw): its top row moves
                shift[0] = np.argwhere(moved.mask)[:, 0].min() - np.argwhere(default.mask)[:, 0].min()
            # the hair mask follows the hair, not the landmarks; lipstick goes where the lips' redness
            # and the landmarks' mouth overlap, so it moves part of the way; everything else moves with the face
            if default.technique == "mini_fe_lip_colour":
                assert 2 < shift[1] < 12 + 3 and 1 < shift[0] < 6 + 3, (default.technique, shift)
            elif default.technique != "mini_fe_hair_colour":
                assert abs(shift[1] - 12) < 3 and abs(shift[0] - 6) < 3, (default.technique, shift)


def test_bad_inputs_raise(faces):
    a, b = faces
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="share one crop size"):
        forge.face_swap(a, cv2.resize(b, (200, 200)), rng)
    with pytest.raises(ValueError, match="share one crop size"):
        forge.face_synthesis([a, b, cv2.resize(b, (160, 160))], rng)
    with pytest.raises(ValueError, match="uint8"):
        forge.face_edit(a.astype(np.float32), rng)
    with pytest.raises(ValueError, match="H x W x 3"):
        forge.face_edit(a[..., 0], rng)
    with pytest.raises(ValueError, match="H x W x 3"):
        forge.face_reenactment(np.dstack([a, a[..., :1]]), rng)
    with pytest.raises(ValueError, match="H x W x 3"):
        forge.face_reenactment(a.tolist(), rng)
    with pytest.raises(ValueError, match="square"):
        forge.face_reenactment(a[:, :200], rng)
    with pytest.raises(ValueError, match="at least 112"):
        forge.face_edit(cv2.resize(a, (96, 96)), rng)
    with pytest.raises(ValueError, match="at least two"):
        forge.face_synthesis([a], rng)
    with pytest.raises(ValueError, match="at least two"):
        forge.face_synthesis(np.stack([a, b]), rng)  # an array of faces is not a list of them
    with pytest.raises(ValueError, match="two different faces"):
        forge.face_swap(a, a.copy(), rng)
    with pytest.raises(ValueError, match="5 x 2"):
        forge.face_edit(a, rng, landmarks=FIVE_POINT_TEMPLATE[:4] * 224)
    with pytest.raises(ValueError, match="inside the 224"):
        forge.face_reenactment(a, rng, landmarks=FIVE_POINT_TEMPLATE * 224 + 200)
    with pytest.raises(ValueError, match="too close"):
        forge.face_edit(a, rng, landmarks=np.full((5, 2), 100.0))


def test_generators_cover_every_category():
    assert set(forge.GENERATORS) == set(FORGERY_CATEGORIES)


def test_fast_enough(faces):
    a, b = faces
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for category in FORGERY_CATEGORIES:
            times = []
            for seed in range(5):
                start = time.perf_counter()
                _make(category, a, b, seed)
                times.append(time.perf_counter() - start)
            assert np.median(times) < 0.3, (category, times)  # ~10-50 ms on one core; 0.3 s leaves slack for CI
    finally:
        cv2.setNumThreads(threads)
