"""Speed of `dfa-bench score` on a 100,000-item bench, and of our ROUGE-L against rouge-score.

    python benchmarks/score_speed.py [--workdir DIR] [--repeats 3] [--rouge-pairs 30000]

Builds (once, cached in --workdir) a bench of 35,000 records: 30,000 forgeries, each with a
~80-word artifact description, and 5,000 bona fide faces -> 35,000 dfd + 35,000 dfc + 30,000 ad
items. Predictions mix parseable, hedged and free-text answers. Prints the median wall time of
the `dfa-bench score` command over --repeats runs, then times ROUGE-L over the ad pairs with our
implementation and with plain rouge-score side by side, checks that every value is identical,
and prints the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

N_FORGERY, N_BONA_FIDE, AD_WORDS = 30_000, 5_000, 80
VOCAB = (
    "the a face eyes eye mouth lips blending blended seam jawline cheeks forehead nose warping warped colour "
    "mismatch smoothing smoothed hairline boundary region texture skin unnatural inconsistent blurred sharp edge "
    "shadow lighting asymmetric teeth pupils reflection artifacts visible around near with and of is are shows"
).split()
DFD_ANSWERS = ["Yes.", "No.", "Yes, the face appears manipulated.", "No, this face is genuine.", "I cannot tell.",
               "The image shows no signs of forgery.", "It looks like a deepfake."]  # fmt: skip
DFC_ANSWERS = ["A", "(B)", "C.", "The answer is D", "Face swapping", "It is fully synthetic.", "FS or FR", "E"]


def description(rng: random.Random) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(AD_WORDS))


def build(workdir: Path) -> tuple[Path, Path]:
    from dfa_bench.bench import build_bench
    from dfa_bench.io import write_jsonl
    from dfa_bench.schema import FORGERY_CATEGORIES

    bench, predictions = workdir / "bench", workdir / "predictions.jsonl"
    if (bench / "manifest.json").exists() and predictions.exists():
        return bench, predictions
    rng = random.Random(0)
    source = workdir / "source"
    (source / "images").mkdir(parents=True, exist_ok=True)
    png = (Path(__file__).parent / "tiny.png").read_bytes() if (Path(__file__).parent / "tiny.png").exists() else None
    if png is None:
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (120, 90, 80)).save(buffer, format="PNG")
        png = buffer.getvalue()
    records = []
    for i in range(N_FORGERY + N_BONA_FIDE):
        category = "bona_fide" if i >= N_FORGERY else FORGERY_CATEGORIES[i % 4]
        (source / "images" / f"{i}.png").write_bytes(png + i.to_bytes(4, "big"))  # distinct files, valid PNG prefix
        records.append({"record_id": f"r{i}", "image": f"images/{i}.png", "category": category,
                        "label": "bona_fide" if category == "bona_fide" else "forgery", "technique": "",
                        "identity": f"p{i // 20}", "artifact_description": "" if category == "bona_fide" else description(rng)})  # fmt: skip
    write_jsonl(source / "records.jsonl", records)
    loaded = build_bench(source / "records.jsonl", source, bench, seed=0, name="speed")
    rows = []
    for item in loaded.items:
        if item["task"] == "dfd":
            response = rng.choice(DFD_ANSWERS)
        elif item["task"] == "dfc":
            response = rng.choice(DFC_ANSWERS)
        else:
            response = description(rng)
        rows.append({"question_id": item["question_id"], "response": response})
    write_jsonl(predictions, rows)
    return bench, predictions


def time_score(bench: Path, predictions: Path, output: Path, repeats: int) -> list[float]:
    exe = Path(sys.executable).parent / "dfa-bench"
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([str(exe), "score", "--bench", str(bench), "--predictions", str(predictions), "--output", str(output)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        times.append(time.perf_counter() - start)
    return times


def time_rouge(bench: Path, predictions: Path, pairs: int) -> tuple[float, float]:
    from rouge_score import rouge_scorer

    from dfa_bench import rouge
    from dfa_bench.bench import read_bench

    by_id = read_bench(bench).by_id
    answers = {}
    with open(predictions) as handle:
        for line in handle:
            row = json.loads(line)
            answers[row["question_id"]] = row["response"]
    work = [(i["answer"], answers[i["question_id"]]) for i in by_id.values() if i["task"] == "ad"][:pairs]
    rouge._word_tokens.clear()  # time ours from a cold memo
    start = time.perf_counter()
    ours = [rouge.rouge_l(ref, hyp) for ref, hyp in work]
    t_ours = time.perf_counter() - start
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    start = time.perf_counter()
    theirs = [scorer.score(ref, hyp)["rougeL"].fmeasure for ref, hyp in work]
    t_theirs = time.perf_counter() - start
    mismatches = sum(a != b for a, b in zip(ours, theirs))
    print(f"rouge-l: {len(work)} pairs, ours {t_ours:.2f} s, rouge-score {t_theirs:.2f} s, "
          f"speed-up {t_theirs / t_ours:.1f}x, identical values: {len(work) - mismatches}/{len(work)}")  # fmt: skip
    if mismatches:
        raise SystemExit("ROUGE-L values differ from rouge-score")
    return t_ours, t_theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/.work/score_speed"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rouge-pairs", type=int, default=30_000)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    bench, predictions = build(args.workdir)
    times = time_score(bench, predictions, args.workdir / "metrics.json", args.repeats)
    metrics = json.loads((args.workdir / "metrics.json").read_text())
    n = sum(metrics[t]["n"] for t in ("dfd", "dfc", "ad"))
    print(f"dfa-bench score: {n} items, median {statistics.median(times):.2f} s over {len(times)} runs "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)})")  # fmt: skip
    time_rouge(bench, predictions, args.rouge_pairs)


if __name__ == "__main__":
    main()
