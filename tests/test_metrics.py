from __future__ import annotations

import random

import pytest
from rouge_score import rouge_scorer

from dfa_bench.metrics import ad_metrics, dfc_metrics, dfd_metrics
from dfa_bench.rouge import lcs_length, rouge_l
from dfa_bench.schema import UNPARSEABLE

F, B, U = "forgery", "bona_fide", UNPARSEABLE


def test_dfd_hand_computed():
    # 6 forgeries: 4 caught, 1 missed, 1 unparseable -> APCER 2/6. 4 bona fide: 3 right, 1 unparseable -> BPCER 1/4.
    truth = [F] * 6 + [B] * 4
    pred = [F, F, F, F, B, U, B, B, B, U]
    m = dfd_metrics(truth, pred)
    assert m["acc"] == pytest.approx(7 / 10)
    assert m["err"] == pytest.approx(3 / 10)
    assert m["apcer"] == pytest.approx(2 / 6)
    assert m["bpcer"] == pytest.approx(1 / 4)
    assert m["acer"] == pytest.approx((2 / 6 + 1 / 4) / 2)
    assert m["parse_failure_rate"] == pytest.approx(2 / 10)
    assert m["n"] == 10 and m["auc"] is None and m["eer"] is None
    for name in ("acc", "err", "acer", "apcer", "bpcer"):
        lo, hi = m["ci95"][name]
        assert 0 <= lo <= m[name] <= hi <= 1


def test_dfd_scores_give_auc_and_eer():
    truth = [F, F, F, B, B, B]
    m = dfd_metrics(truth, [F] * 6, [0.9, 0.8, 0.4, 0.5, 0.2, 0.1])
    # 9 positive/negative pairs, one inverted (0.4 < 0.5) -> AUC 8/9
    assert m["auc"] == pytest.approx(8 / 9)
    assert m["eer"] == pytest.approx(1 / 3)
    assert dfd_metrics(truth, [F] * 6, [0.9, None, 0.4, 0.5, 0.2, 0.1])["auc"] is None


def test_dfd_single_class_leaves_the_other_rate_undefined():
    m = dfd_metrics([F, F], [F, B])
    assert m["apcer"] == 0.5 and m["bpcer"] is None and m["acer"] is None


def test_bootstrap_is_seeded():
    truth = [F, B] * 50
    pred = [F, F, B, B] * 25
    assert dfd_metrics(truth, pred, seed=3)["ci95"] == dfd_metrics(truth, pred, seed=3)["ci95"]
    assert dfd_metrics(truth, pred, seed=3)["ci95"] != dfd_metrics(truth, pred, seed=4)["ci95"]


def test_dfc_hand_computed():
    truth = ["face_swapping", "face_swapping", "bona_fide", "face_editing", "entire_face_synthesis"]
    pred = ["face_swapping", UNPARSEABLE, "bona_fide", "face_reenactment", "entire_face_synthesis"]
    m = dfc_metrics(truth, pred)
    assert m["acc"] == pytest.approx(3 / 5)
    assert m["parse_failure_rate"] == pytest.approx(1 / 5)
    assert m["per_class"] == {"bona_fide": 1.0, "face_swapping": 0.5, "face_reenactment": None,
                              "face_editing": 0.0, "entire_face_synthesis": 1.0}  # fmt: skip
    conf = m["confusion"]
    assert conf["columns"][-1] == UNPARSEABLE and len(conf["matrix"]) == 5 and len(conf["matrix"][0]) == 6
    fs = conf["rows"].index("face_swapping")
    assert conf["matrix"][fs][conf["columns"].index("face_swapping")] == 1
    assert conf["matrix"][fs][-1] == 1
    assert sum(map(sum, conf["matrix"])) == 5


def test_ad_mean_and_interval():
    m = ad_metrics([0.2, 0.4, 0.6])
    assert m["rouge_l"] == pytest.approx(0.4) and m["n"] == 3
    lo, hi = m["ci95"]["rouge_l"]
    assert 0.2 <= lo <= 0.4 <= hi <= 0.6


def test_lcs_hand_computed():
    assert lcs_length(tuple("abcbdab"), tuple("bdcaba")) == 4
    assert lcs_length((), tuple("abc")) == 0
    assert lcs_length(tuple("aaaa"), tuple("aa")) == 2


def test_rouge_l_equals_rouge_score_on_random_pairs():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rng = random.Random(0)
    vocab = ("The face eyes eye mouth lips blending blended seam jawline cheeks forehead warping warped colour "
             "mismatch smoothing smoothed hairline running runs ran boundary, region. A-B 12 über Über it's "
             "generalization generalizing").split()  # fmt: skip
    for _ in range(1500):
        ref = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 90)))
        hyp = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 90)))
        assert rouge_l(ref, hyp) == scorer.score(ref, hyp)["rougeL"].fmeasure, (ref, hyp)


def test_auc_ci95_brackets_sklearns_auc_and_narrows_with_more_data():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from dfa_bench.metrics import auc_ci95

    rng = np.random.default_rng(0)
    truth = rng.random(400) < 0.5
    scores = np.round(truth * 0.6 + rng.random(400), 1)  # informative, with ties
    low, high = auc_ci95(truth, scores, seed=1)
    assert low < roc_auc_score(truth, scores) < high and low > 0.5
    small_low, small_high = auc_ci95(truth[:40], scores[:40], seed=1)
    assert small_high - small_low > high - low
    assert auc_ci95(truth, scores, seed=1) == [low, high]  # seeded
    # all scores tied: every resample is at chance exactly
    chance = auc_ci95(np.arange(200) % 2 == 0, np.zeros(200), seed=0)
    assert chance == [0.5, 0.5]


def test_ad_region_stance_and_consistency_by_hand():
    regions = [
        {"region_precision": 1.0, "region_recall": 0.5, "region_f1": 2 / 3},
        None,  # the reference names no region: left out
        {"region_precision": 0.0, "region_recall": 0.0, "region_f1": 0.0},
        {"region_precision": 0.5, "region_recall": 1.0, "region_f1": 2 / 3},
    ]
    out = ad_metrics([0.5, 0.1, 0.2, 0.4], regions=regions, stances=["claimed", "none", "claimed", "unclear"],
                     consistency=[True, None, False, True])  # fmt: skip
    assert out["region_precision"] == pytest.approx(0.5) and out["region_recall"] == pytest.approx(0.5)
    assert out["region_f1"] == pytest.approx(4 / 9) and out["n_region_grounded"] == 3
    assert out["stance"] == {"claimed": 0.5, "none": 0.25, "unclear": 0.25}
    assert out["verdict_consistency"] == pytest.approx(2 / 3) and out["n_verdict_paired"] == 3
    low, high = out["ci95"]["verdict_consistency"]
    assert 0 <= low <= 2 / 3 <= high <= 1
    empty = ad_metrics([0.3], regions=[None], stances=["none"], consistency=[None])
    assert empty["region_f1"] is None and empty["verdict_consistency"] is None and "region_f1" not in empty["ci95"]
