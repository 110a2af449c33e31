"""Is a measured row significantly different from the best measured row of its column?

A measured entry keeps its per-item outcomes (`outcomes`: DF-D and DF-C as a string of 0/1, one character
per bench item in bench order; AD as one ROUGE-L value per item). Entries on one leaderboard share one
bench and answered every item of each task they ran (submit checks both), so two entries' outcomes are
paired item by item. The tests are `dfa-bench compare`'s: McNemar's exact test for DF-D ACC (and ERR,
its complement) and DF-C ACC, the paired bootstrap for AD ROUGE-L. DF-D ACER has no per-item form and
is not tested.
"""

from __future__ import annotations

import numpy as np

from dfa_bench.compare import ALPHA, paired_test
from dfa_bench.leaderboard.entries import COLUMNS, ROUGE_DIGITS, Column, metric_value

TESTED = {"dfd_acc": "dfd", "dfd_err": "dfd", "dfc_acc": "dfc", "ad_rouge_l": "ad"}
MARK = "†"
NOTE = (
    f"{MARK} significantly different from the best measured row of its column (p < {ALPHA}: McNemar's exact test "
    "for DF-D ACC/ERR and DF-C ACC, paired bootstrap for AD ROUGE-L, over the same items); DF-D ACER is not tested."
)


def outcomes_from_rows(rows: list[dict]) -> dict:
    """Per-item outcomes of judged rows (in bench order), as an entry stores them."""
    out: dict = {}
    for task in ("dfd", "dfc"):
        task_rows = [r for r in rows if r["task"] == task]
        if task_rows:
            out[task] = "".join("1" if r["correct"] else "0" for r in task_rows)
    ad = [round(float(r["rouge_l"]), ROUGE_DIGITS) for r in rows if r["task"] == "ad"]
    if ad:
        out["ad"] = ad
    return out


def _values(entry: dict, task: str) -> np.ndarray | None:
    values = (entry.get("outcomes") or {}).get(task)
    if values is None or task in (entry.get("abstained") or ()):
        return None
    return np.array([c == "1" for c in values]) if task != "ad" else np.array(values, float)


def significance(entries: list[dict], *, seed: int = 0) -> dict[tuple[str, str], dict]:
    """{(model, column key): {p, vs, test, significant}} for every measured row that can be paired with the
    best measured row of that column (the best row itself is absent)."""
    out: dict[tuple[str, str], dict] = {}
    for column in COLUMNS:
        task = TESTED.get(column.key)
        if task is None:
            continue
        measured = [
            e for e in entries if e["provenance"] == "measured" and metric_value(e, column) is not None
            and _values(e, task) is not None
        ]  # fmt: skip
        if len(measured) < 2:
            continue
        best = min(measured, key=lambda e: _rank(e, column))
        reference = _values(best, task)
        for entry in measured:
            values = _values(entry, task)
            if entry is best or values is None or len(values) != len(reference):
                continue
            _, p, test = paired_test(reference, values, seed=seed)
            out[(entry["model"], column.key)] = {"p": p, "vs": best["model"], "test": test, "significant": p < ALPHA}
    return out


def _rank(entry: dict, column: Column) -> tuple:
    value = metric_value(entry, column)
    return (-value if column.higher_is_better else value, entry["model"].lower())
