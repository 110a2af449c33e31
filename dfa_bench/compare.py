"""Is model A better than model B on the same bench? Paired tests over the items both runs answered.

Two runs of `dfa-bench eval` on one bench answer the same items, so their per-item outcomes are paired:
- DF-D ACC, DF-C ACC and AD verdict consistency (0/1 per item): the difference, its paired-bootstrap 95% interval (items resampled
  jointly), and McNemar's exact test (a two-sided binomial test on the discordant pairs);
- AD ROUGE-L and region F1 (a value per item): the difference, its paired-bootstrap 95% interval, and a paired-bootstrap
  p-value (twice the share of resampled differences on the other side of zero, Koehn 2004, as (k + 1) / (B + 1)).

Two overlapping confidence intervals do not answer the question: the per-item pairing removes the
variance both runs share (the items' difficulty), which is most of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfa_bench.metric_specs import METRIC_SPECS
from dfa_bench.metrics import BOOTSTRAP_RESAMPLES, bootstrap_ci
from dfa_bench.rundir import read_run
from dfa_bench.schema import ValidationError

# metric key -> (task, the per-item value in details.jsonl), from dfa_bench.metric_specs
COMPARED = {spec.key: (spec.task, spec.paired) for spec in METRIC_SPECS if spec.paired}
LABELS = {spec.key: spec.label for spec in METRIC_SPECS}
ALPHA = 0.05


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> float:
    """Two-sided exact McNemar p-value for paired 0/1 outcomes (1.0 when no pair disagrees)."""
    from scipy.stats import binomtest

    only_a = int(np.sum(a_correct & ~b_correct))
    only_b = int(np.sum(~a_correct & b_correct))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[list[float] | None, float]:
    """(95% interval of mean(a) - mean(b) over items resampled jointly, two-sided bootstrap p-value)."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    draws: list[np.ndarray] = []

    def statistic(idx: np.ndarray) -> dict[str, np.ndarray]:
        values = diff[idx].mean(axis=1)
        draws.append(values)
        return {"diff": values}

    ci = bootstrap_ci(statistic, len(diff), seed=seed, resamples=resamples).get("diff")
    values = np.concatenate(draws) if draws else np.zeros(0)
    if not values.size:
        return ci, 1.0
    # (k + 1) / (B + 1): a bootstrap p-value is never 0, only below the resolution of B resamples
    extreme = min(int(np.sum(values <= 0)), int(np.sum(values >= 0)))
    return ci, float(min(1.0, 2 * (extreme + 1) / (values.size + 1)))


def paired_test(
    a: np.ndarray, b: np.ndarray, *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[list[float] | None, float, str]:
    """(paired-bootstrap 95% interval of mean(a) - mean(b), p-value, test name) for per-item outcomes:
    McNemar's exact test for 0/1 outcomes, the paired bootstrap for values such as ROUGE-L."""
    ci, p_bootstrap = paired_bootstrap(a, b, seed=seed, resamples=resamples)
    if a.dtype == bool:
        return ci, mcnemar_exact(a, b), "McNemar exact"
    return ci, p_bootstrap, "paired bootstrap"


def compare_runs(run_a: Path | str, run_b: Path | str, *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """The paired comparison of two runs on one bench (A minus B), as plain data."""
    info_a, rows_a = read_run(run_a)
    info_b, rows_b = read_run(run_b)
    if info_a["bench_manifest_sha256"] != info_b["bench_manifest_sha256"]:
        raise ValidationError(
            f"the runs were made on different benches: {run_a} on {info_a.get('bench')} (manifest sha256 "
            f"{info_a['bench_manifest_sha256'][:12]}), {run_b} on {info_b.get('bench')} (manifest sha256 "
            f"{info_b['bench_manifest_sha256'][:12]}); paired tests need the same items"
        )
    out: dict = {
        "a": {"run": str(run_a), "model": info_a.get("model"), "model_args": info_a.get("model_args")},
        "b": {"run": str(run_b), "model": info_b.get("model"), "model_args": info_b.get("model_args")},
        "bench_manifest_sha256": info_a["bench_manifest_sha256"],
        "seed": seed,
        "resamples": resamples,
        "metrics": {},
    }
    for metric, (task, field) in COMPARED.items():
        # an item counts where both runs have its value (region F1 needs a reference naming a region,
        # verdict consistency a DF-D verdict on the record)
        ids = sorted(q for q, r in rows_a.items() if r.get("task") == task and r.get(field) is not None
                     and (rows_b.get(q) or {}).get(field) is not None)  # fmt: skip
        unpaired = (
            sum(1 for r in rows_a.values() if r.get("task") == task and r.get(field) is not None)
            + sum(1 for r in rows_b.values() if r.get("task") == task and r.get(field) is not None)
            - 2 * len(ids)
        )
        if not ids:
            if unpaired:
                out.setdefault("not_compared", []).append(metric)  # only one run answered this task
            continue
        a = np.array([rows_a[q].get(field) for q in ids])
        b = np.array([rows_b[q].get(field) for q in ids])
        if field in ("correct", "consistent"):
            a, b = a.astype(bool), b.astype(bool)
        else:
            a, b = a.astype(float), b.astype(float)
        ci, p_value, test = paired_test(a, b, seed=seed, resamples=resamples)
        result = {
            "n": len(ids),
            "unpaired": unpaired,
            "a": float(a.mean()),
            "b": float(b.mean()),
            "difference": float(a.mean() - b.mean()),
            "ci95": ci,
        }
        if field in ("correct", "consistent"):
            result.update(a_only_correct=int(np.sum(a & ~b)), b_only_correct=int(np.sum(~a & b)))
        result.update(test=test, p_value=p_value, significant=p_value < ALPHA)
        out["metrics"][metric] = result
    if not out["metrics"]:
        raise ValidationError(f"{run_a} and {run_b} answered no item in common")
    return out


def verdict(result: dict) -> str:
    if not result["significant"]:
        return "no significant difference"
    return "A better" if result["difference"] > 0 else "B better"
