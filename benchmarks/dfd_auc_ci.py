"""The DF-D AUC of an evaluation run with its 95% bootstrap interval, and how many faces each verdict got.

    python benchmarks/dfd_auc_ci.py ev11

Reads RUN/details.jsonl (`dfa-bench eval`'s per-item rows: truth, prediction, score) and uses
`dfa_bench.metrics.auc_ci95`, the interval `benchmarks/mini_learnability.py` reports.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from sklearn.metrics import roc_auc_score

from dfa_bench.metrics import auc_ci95


def main() -> None:
    rows = [json.loads(line) for line in (Path(sys.argv[1]) / "details.jsonl").read_text().splitlines()]
    dfd = [row for row in rows if row["task"] == "dfd"]
    truth, scores = [row["truth"] == "forgery" for row in dfd], [row["score"] for row in dfd]
    low, high = auc_ci95(truth, scores)
    print(f"DF-D AUC {100 * roc_auc_score(truth, scores):.2f} [{100 * low:.2f}, {100 * high:.2f}] over {len(dfd)} items;"
          f" verdicts {dict(Counter(row['prediction'] for row in dfd))}")  # fmt: skip


if __name__ == "__main__":
    main()
