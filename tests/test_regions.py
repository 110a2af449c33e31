from __future__ import annotations

import numpy as np
import pytest

from dfa_bench.instruct.regions import REGIONS, covered_regions, describe_artifacts, region_masks

SIZE = 224


def test_regions_are_where_a_face_has_them():
    masks = region_masks(SIZE)
    assert tuple(masks) == REGIONS
    assert all(m.any() for m in masks.values())
    centre_row = lambda m: np.argwhere(m)[:, 0].mean() / SIZE  # noqa: E731
    assert centre_row(masks["Hairline"]) < centre_row(masks["Forehead"]) < centre_row(masks["Eyes"])
    assert centre_row(masks["Eyes"]) < centre_row(masks["Nose"]) < centre_row(masks["Mouth and lips"])
    assert not (masks["Eyes"] & masks["Nose"]).any()


def test_mouth_edit_names_only_the_mouth():
    mask = region_masks(SIZE)["Mouth and lips"].copy()
    assert covered_regions(mask) == ["Mouth and lips"]
    text = describe_artifacts(mask, "colour_shift")
    assert text == "1. Mouth and lips: an unnatural colour shift on the mouth and lips."


def test_face_swap_mask_covers_inner_face_and_boundary():
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    inner_face = ((yy - 0.58) / 0.42) ** 2 + ((xx - 0.5) / 0.36) ** 2 <= 1
    regions = covered_regions(inner_face)
    assert {"Eyes", "Nose", "Mouth and lips", "Cheeks and jawline", "Face boundary"} <= set(regions)
    assert "Hairline" not in regions
    text = describe_artifacts(inner_face, "blending_seam")
    assert text.splitlines()[0].startswith("1. ") and all(
        ": a visible blending seam" in line for line in text.splitlines()
    )
    assert describe_artifacts(inner_face, "blending_seam") == text  # deterministic


def test_bad_masks_and_kinds_are_errors():
    with pytest.raises(ValueError, match="empty"):
        covered_regions(np.zeros((SIZE, SIZE), bool))
    with pytest.raises(ValueError, match="square"):
        covered_regions(np.ones((10, 20), bool))
    with pytest.raises(KeyError, match="sparkles"):
        describe_artifacts(np.ones((SIZE, SIZE), bool), "sparkles")


def test_a_source_pair_difference_is_the_changed_region():
    from dfa_bench.instruct.regions import covered_regions, difference_mask

    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    noisy = np.clip(source.astype(int) + rng.integers(-6, 7, source.shape), 0, 255).astype(np.uint8)
    assert difference_mask(noisy, source) is None  # compression-level noise is no manipulation
    forged = noisy.copy()
    forged[70:95, 30:82] = (200, 40, 40)  # the mouth repainted
    mask = difference_mask(forged, source)
    assert mask is not None and 0.8 < mask[70:95, 30:82].mean() and mask[:50].mean() < 0.01
    assert covered_regions(mask)[0] == "Mouth and lips"
    with pytest.raises(ValueError, match="differ in shape"):
        difference_mask(forged[:100], source)
