"""Can DFA-Bench-mini tell a trained model from chance?

Builds the mini, trains the EfficientNet-Lite0 probe (the paper's vision-only baseline) on its train
split, evaluates it on the test split through `dfa-bench eval`, and prints DF-D ACC, AUC and ACER and DF-C
ACC with 95% bootstrap intervals, beside a majority-class and a random baseline scored by the same code.

    python benchmarks/mini_learnability.py [--work DIR] [--seed 0]

Required: the lower 95% bound of DF-D AUC above 0.5 and that of DF-C ACC above 20% (exit 1 otherwise).
Target: DF-D AUC >= 0.85 and DF-C ACC >= 50%.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dfa_bench.bench import read_bench
from dfa_bench.floors import score_floor
from dfa_bench.metrics import auc_ci95

BIN = Path(sys.executable).parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def run(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "dfa-bench"), *args], check=True, env={**os.environ, **OFFLINE}, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def with_ci(value: float | None, ci: list[float] | None) -> str:
    return pct(value) + (f" [{pct(ci[0])}, {pct(ci[1])}]" if ci else "")


def baselines(bench, seed: int) -> dict[str, dict]:
    """The bench's majority-class and uniform random floors (dfa_bench.floors), chosen on the test split itself."""
    out = {}
    for name in ("majority", "random"):
        metrics, _, lines = score_floor(bench, name, seed=seed)
        scores = {line["question_id"]: line["score"] for line in lines}
        dfd = bench.items_for("dfd")
        auc_ci = auc_ci95([i["label"] == "forgery" for i in dfd], [scores[i["question_id"]] for i in dfd], seed=seed)
        out[name] = {**metrics, "dfd": {**metrics["dfd"], "auc_ci": auc_ci}}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="Working directory (default: a new temp dir).")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the mini build, the probe and the bootstraps.")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mini-learnability-"))
    mini, probe, evaluation = work / "mini", work / "probe", work / "eval"
    seconds = {
        "build": run("data", "build-mini", "--output", str(mini), "--seed", str(args.seed)),
        "train": run("probe", "train", "--data", str(mini), "--output", str(probe), "--device", "cpu",
                     "--seed", str(args.seed)),
        "eval": run("eval", "--model", "dfa_probe", "--model-args", f"head={probe},device=cpu", "--bench",
                    str(mini / "bench/test"), "--output", str(evaluation), "--batch-size", "32", "--seed",
                    str(args.seed)),
    }  # fmt: skip
    bench = read_bench(mini / "bench/test")
    metrics = json.loads((evaluation / "metrics.json").read_text())
    details = [json.loads(line) for line in (evaluation / "details.jsonl").read_text().splitlines()]
    scores = {json.loads(line)["question_id"]: json.loads(line)["score"]
              for line in (evaluation / "predictions.jsonl").read_text().splitlines()}  # fmt: skip
    dfd_rows = [r for r in details if r["task"] == "dfd"]
    probe_auc_ci = auc_ci95([r["truth"] == "forgery" for r in dfd_rows], [scores[r["question_id"]] for r in dfd_rows],
                            seed=args.seed)  # fmt: skip
    rows = {"probe (EfficientNet-Lite0)": {**metrics, "dfd": {**metrics["dfd"], "auc_ci": probe_auc_ci}}}
    rows.update(baselines(bench, args.seed))

    print(f"DFA-Bench-mini v{bench.manifest['version']} test split: {len(bench.items_for('dfd'))} DF-D, "
          f"{len(bench.items_for('dfc'))} DF-C items; seed {args.seed}; work dir {work}")  # fmt: skip
    print(f"build {seconds['build']:.1f} s, probe train {seconds['train']:.1f} s, eval {seconds['eval']:.1f} s")
    leaks = json.loads((mini / "build_summary.json").read_text())["near_duplicates_across_splits"]
    print(f"record images that copy a face of another split (near_duplicates check): {leaks}")
    header = f"{'':28} {'DF-D ACC':>22} {'DF-D AUC':>22} {'DF-D ACER':>22} {'DF-C ACC':>22}"
    print(header)
    for name, m in rows.items():
        d, c = m["dfd"], m["dfc"]
        cells = [with_ci(d["acc"], d["ci95"].get("acc")), with_ci(d["auc"], d.get("auc_ci")),
                 with_ci(d["acer"], d["ci95"].get("acer")), with_ci(c["acc"], c["ci95"].get("acc"))]  # fmt: skip
        print(f"{name:28} " + " ".join(f"{cell:>22}" for cell in cells))
    auc_low, dfc_low = probe_auc_ci[0], metrics["dfc"]["ci95"]["acc"][0]
    required = auc_low > 0.5 and dfc_low > 0.2
    target = metrics["dfd"]["auc"] >= 0.85 and metrics["dfc"]["acc"] >= 0.5
    print(f"required (AUC lower bound > 50%, DF-C ACC lower bound > 20%): {'met' if required else 'NOT met'} "
          f"({pct(auc_low)}, {pct(dfc_low)})")  # fmt: skip
    print(f"target (AUC >= 85%, DF-C ACC >= 50%): {'met' if target else 'not met'} "
          f"({pct(metrics['dfd']['auc'])}, {pct(metrics['dfc']['acc'])})")  # fmt: skip
    return 0 if required else 1


if __name__ == "__main__":
    sys.exit(main())
