"""DFA-Bench metrics over parsed predictions. All values are fractions in [0, 1].

DF-D follows ISO/IEC 30107-3: APCER is the share of forgeries not called forgeries, BPCER the
share of bona fide faces not called bona fide; an unparseable answer is an error for its true
class. Headline metrics carry a seeded percentile bootstrap 95% interval (`ci95`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from dfa_bench.ad_reading import STANCES
from dfa_bench.schema import CATEGORIES, UNPARSEABLE

BOOTSTRAP_RESAMPLES = 1000
_CHUNK = 50


def bootstrap_ci(
    statistics: Callable[[np.ndarray], dict[str, np.ndarray]],
    n: int,
    *,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, list[float] | None]:
    """Percentile 95% intervals. `statistics` maps an index matrix (resamples x n) to one value per row."""
    if n == 0 or resamples == 0:
        return {}
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, resamples, _CHUNK):
        rows = min(_CHUNK, resamples - start)
        idx = rng.integers(0, n, size=(rows, n), dtype=np.int32 if n < 2**31 else np.int64)
        for name, values in statistics(idx).items():
            parts.setdefault(name, []).append(values)
    out: dict[str, list[float] | None] = {}
    for name, chunks in parts.items():
        values = np.concatenate(chunks)
        values = values[~np.isnan(values)]
        out[name] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values.size else None
    return out


def _rate(errors: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Per-row error share among members; NaN where a resample holds no members."""
    total = members.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (errors & members).sum(axis=-1) / np.maximum(total, 1), np.nan)


def _as_float(x: float | np.floating) -> float | None:
    return None if np.isnan(x) else float(x)


def equal_error_rate(truth_is_forgery: np.ndarray, scores: np.ndarray) -> float:
    """EER as DeepfakeBench computes it: the ROC point where FNR and FPR are closest."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(truth_is_forgery, scores)
    fnr = 1 - tpr
    return float(fpr[np.nanargmin(np.abs(fnr - fpr))])


def auc_ci95(
    truth_is_forgery: Sequence[bool], scores: Sequence[float], *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> list[float] | None:
    """Percentile bootstrap 95% interval of the ROC AUC (Mann-Whitney form, ties counted half).

    Not part of `dfd_metrics`' ci95: ranking every resample costs seconds on a full bench, and AUC is a
    secondary DF-D figure. Benchmarks that need it (benchmarks/mini_learnability.py) ask for it.
    """
    from scipy.stats import rankdata

    positive, values = np.asarray(truth_is_forgery, dtype=bool), np.asarray(scores, dtype=float)

    def stats(idx: np.ndarray) -> dict[str, np.ndarray]:
        pos = positive[idx]
        ranks = rankdata(values[idx], axis=-1)
        p = pos.sum(axis=-1)
        q = idx.shape[-1] - p
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((ranks * pos).sum(axis=-1) - p * (p + 1) / 2) / (p * q)
        return {"auc": np.where((p > 0) & (q > 0), auc, np.nan)}

    return bootstrap_ci(stats, len(values), seed=seed, resamples=resamples).get("auc")


def dfd_metrics(
    truth: Sequence[str],
    predicted: Sequence[str],
    scores: Sequence[float | None] | None = None,
    *,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict:
    """ACC, ERR, APCER, BPCER, ACER (+ AUC, EER when every item carries a forgery probability)."""
    n = len(truth)
    is_forgery = np.array([t == "forgery" for t in truth], dtype=bool)
    wrong = np.array([p != t for t, p in zip(truth, predicted)], dtype=bool)
    unparseable = np.array([p == UNPARSEABLE for p in predicted], dtype=bool)

    def stats(idx: np.ndarray) -> dict[str, np.ndarray]:
        w, f = wrong[idx], is_forgery[idx]
        apcer, bpcer = _rate(w, f), _rate(w, ~f)
        acc = 1 - w.mean(axis=-1)
        return {"acc": acc, "err": 1 - acc, "apcer": apcer, "bpcer": bpcer, "acer": (apcer + bpcer) / 2}

    point = (
        {k: _as_float(v) for k, v in stats(np.arange(n)).items()}
        if n
        else dict.fromkeys(("acc", "err", "apcer", "bpcer", "acer"))
    )
    auc = eer = None
    if scores is not None and n and all(s is not None for s in scores) and 0 < is_forgery.sum() < n:
        from sklearn.metrics import roc_auc_score

        score_array = np.asarray(scores, dtype=float)
        auc = float(roc_auc_score(is_forgery, score_array))
        eer = equal_error_rate(is_forgery, score_array)
    return {
        **point,
        "auc": auc,
        "eer": eer,
        "parse_failure_rate": float(unparseable.mean()) if n else None,
        "n": n,
        "ci95": bootstrap_ci(stats, n, seed=seed, resamples=resamples),
    }


def dfc_metrics(
    truth: Sequence[str], predicted: Sequence[str], *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict:
    """ACC over five categories, per-class recall and a 5 x 6 confusion matrix (last column: unparseable)."""
    n = len(truth)
    columns = [*CATEGORIES, UNPARSEABLE]
    matrix = [[0] * len(columns) for _ in CATEGORIES]
    for t, p in zip(truth, predicted):
        matrix[CATEGORIES.index(t)][columns.index(p)] += 1
    correct = np.array([t == p for t, p in zip(truth, predicted)], dtype=bool)
    per_class = {c: (row[i] / sum(row) if sum(row) else None) for i, (c, row) in enumerate(zip(CATEGORIES, matrix))}
    return {
        "acc": float(correct.mean()) if n else None,
        "per_class": per_class,
        "confusion": {"rows": list(CATEGORIES), "columns": columns, "matrix": matrix},
        "parse_failure_rate": (sum(p == UNPARSEABLE for p in predicted) / n) if n else None,
        "n": n,
        "ci95": bootstrap_ci(lambda idx: {"acc": correct[idx].mean(axis=-1)}, n, seed=seed, resamples=resamples),
    }


def ad_metrics(
    rouge_values: Sequence[float],
    *,
    regions: Sequence[dict | None] | None = None,
    stances: Sequence[str] | None = None,
    consistency: Sequence[bool | None] | None = None,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict:
    """Mean ROUGE-L F-measure over AD items; given per-item region scores (None where the reference names no
    region), their means over the grounded items; given stances, their shares; given per-item verdict
    consistency (None where the item has no DF-D verdict to agree with), its rate over the items that have one."""
    values = np.asarray(rouge_values, dtype=float)
    n = values.size
    out: dict = {
        "rouge_l": float(values.mean()) if n else None,
        "n": n,
        "ci95": bootstrap_ci(lambda idx: {"rouge_l": values[idx].mean(axis=-1)}, n, seed=seed, resamples=resamples),
    }
    if regions is not None:
        grounded = [r for r in regions if r is not None]
        names = ("region_precision", "region_recall", "region_f1")
        scores = {name: np.array([r[name] for r in grounded], dtype=float) for name in names}
        out.update({name: float(scores[name].mean()) if grounded else None for name in names})
        out["ci95"].update(bootstrap_ci(lambda idx: {name: scores[name][idx].mean(axis=-1) for name in names},
                                        len(grounded), seed=seed, resamples=resamples))  # fmt: skip
        out["n_region_grounded"] = len(grounded)
    if stances is not None:
        out["stance"] = {s: (sum(1 for x in stances if x == s) / len(stances) if stances else None) for s in STANCES}
    if consistency is not None:
        paired = np.array([c for c in consistency if c is not None], dtype=bool)
        out["verdict_consistency"] = float(paired.mean()) if paired.size else None
        out["ci95"].update(bootstrap_ci(lambda idx: {"verdict_consistency": paired[idx].mean(axis=-1)}, paired.size,
                                        seed=seed, resamples=resamples))  # fmt: skip
        out["n_verdict_paired"] = int(paired.size)
    return out
