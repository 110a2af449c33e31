from __future__ import annotations

import pytest

from dfa_bench.instruct.taxonomy import FAKE_REAL_LAYOUT, TECHNIQUE_CATEGORY, TECHNIQUES_BY_CATEGORY, category_of
from dfa_bench.schema import FORGERY_CATEGORIES


def test_all_forty_techniques_with_the_paper_s_added_edits():
    assert len(TECHNIQUE_CATEGORY) == 40  # no technique listed under two categories
    assert {c: len(t) for c, t in TECHNIQUES_BY_CATEGORY.items()} == {
        "face_swapping": 10, "face_reenactment": 13, "entire_face_synthesis": 12, "face_editing": 5}  # fmt: skip
    assert set(TECHNIQUES_BY_CATEGORY) == set(FORGERY_CATEGORIES)
    for added in ("stargan", "starganv2", "styleclip"):
        assert TECHNIQUE_CATEGORY[added] == "face_editing"
    assert FAKE_REAL_LAYOUT <= set(TECHNIQUE_CATEGORY)


@pytest.mark.parametrize(
    ("name", "category"),
    [("SimSwap", "face_swapping"), ("sd-2.1", "entire_face_synthesis"), ("one-shot-free", "face_reenactment"),
     ("StyleGAN-XL", "entire_face_synthesis"), (" e4e ", "face_editing"), ("Wav2Lip", "face_reenactment")],
)  # fmt: skip
def test_category_of_normalises_names(name, category):
    assert category_of(name) == category


def test_unknown_technique_is_named():
    with pytest.raises(KeyError, match="'morphnet'"):
        category_of("morphnet")
