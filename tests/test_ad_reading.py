"""The AD reader on hand-labelled sentences (tests/data/ad_labelled.jsonl: the regions each one says show artifacts,
and its stance), on the mini's references, and the region and consistency scores built on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dfa_bench.ad_reading import claimed_regions, consistent, region_scores, regions, stance, vocabulary
from dfa_bench.instruct.regions import ARTIFACT_DESCRIPTIONS, REGIONS, covered_regions, describe_artifacts, region_masks

LABELLED = [json.loads(line) for line in (Path(__file__).parent / "data/ad_labelled.jsonl").read_text().splitlines()]


def test_the_labelled_set_covers_what_the_issue_asks():
    assert len(LABELLED) >= 60
    negations = [c for c in LABELLED if c["stance"] == "none" and claimed_regions(c["text"]) == frozenset()
                 and any(w in c["text"].lower() for w in ("eye", "lip", "mouth", "cheek", "jaw", "skin", "face"))]  # fmt: skip
    assert len(negations) >= 10  # sentences naming a region only to deny artifacts there
    assert sum("," in c["text"] and " but " in c["text"] for c in LABELLED) >= 2  # a denial and a claim in one
    plurals = ("eyes", "lips", "cheeks", "eyebrows", "irises", "pupils", "nostrils", "eyelids", "temples", "ears")
    assert sum(any(p in c["text"].lower() for p in plurals) for c in LABELLED) >= 15
    assert {r for c in LABELLED for r in c["regions"]} == set(regions())  # every region of the vocabulary
    assert {c["stance"] for c in LABELLED} == {"claimed", "none", "unclear"}


@pytest.mark.parametrize("case", LABELLED, ids=[c["text"][:40] for c in LABELLED])
def test_hand_labelled_regions_and_stance(case):
    assert sorted(claimed_regions(case["text"])) == sorted(case["regions"])
    assert stance(case["text"]) == case["stance"]


# The mini's annotator names a mask's regions in its own words; the reader must give back exactly those regions.
MINI_TO_CANONICAL = {"Forehead": {"forehead"}, "Eyes": {"eyes"}, "Nose": {"nose"}, "Cheeks and jawline":
                     {"cheeks", "jawline"}, "Mouth and lips": {"mouth"}, "Hairline": {"hairline"},
                     "Face boundary": {"face_boundary"}}  # fmt: skip


def test_on_the_mini_a_reference_names_exactly_the_regions_its_mask_touched():
    assert set(MINI_TO_CANONICAL) == set(REGIONS)
    masks = region_masks(112)
    rng = np.random.default_rng(0)
    for trial in range(40):
        chosen = rng.choice(REGIONS, size=rng.integers(1, 4), replace=False)
        mask = np.logical_or.reduce([masks[r] for r in chosen])
        for kind in ARTIFACT_DESCRIPTIONS:
            reference = describe_artifacts(mask, kind)
            touched = set().union(*(MINI_TO_CANONICAL[r] for r in covered_regions(mask)))
            assert claimed_regions(reference) == touched, (trial, kind, reference)
            assert stance(reference) == "claimed"


def test_region_scores_by_hand():
    scores = region_scores(frozenset({"eyes", "mouth"}), frozenset({"eyes", "nose", "skin"}))
    assert scores == pytest.approx({"region_precision": 1 / 3, "region_recall": 1 / 2, "region_f1": 0.4})
    assert region_scores(frozenset({"eyes"}), frozenset()) == {"region_precision": 0.0, "region_recall": 0.0,
                                                                "region_f1": 0.0}  # fmt: skip
    assert region_scores(frozenset(), frozenset({"eyes"})) is None  # nothing to ground against
    assert region_scores(frozenset({"eyes", "nose"}), frozenset({"nose", "eyes"}))["region_f1"] == 1.0


def test_consistency_truth_table():
    assert consistent("forgery", "claimed") is True
    assert consistent("forgery", "none") is False
    assert consistent("forgery", "unclear") is False
    assert consistent("bona_fide", "none") is True
    assert consistent("bona_fide", "claimed") is False
    assert consistent("unparseable", "claimed") is None
    assert consistent(None, "none") is None


def test_the_vocabulary_compiles_and_names_ten_regions():
    assert len(regions()) == 10 and set(vocabulary()["region_labels"]) == set(regions())


def test_the_word_start_scan_finds_what_finditer_finds():
    import random

    from dfa_bench.ad_reading import _matches, _patterns, normalise

    scan = _patterns()["scan"]
    words = ("no not doesn't without the eyes 'eyes eye brows brow ridge blending boundary is blurred natural look "
             "i cannot can't tell tale free of lacks any surrounding skin over smoothed looks fine don't know edges "
             "of the face colour shift unclearly manipulated_x wasn't , .").split()  # fmt: skip
    rng = random.Random(0)
    texts = [normalise(c["text"]) for c in LABELLED]
    texts += [" ".join(rng.choice(words) for _ in range(30)) for _ in range(2000)]
    for text in texts:
        assert [(m.lastgroup, m.span()) for m in _matches(text)] == [(m.lastgroup, m.span())
                                                                           for m in scan.finditer(text)]  # fmt: skip
