"""Frames/s of face detection + alignment through the build driver, and how it scales with worker processes.

    python benchmarks/detect_speed.py [--frames 64] [--repeats 3] [--workers 1,2] [--size 224]

Frames are real photos from installed packages (scikit-image's astronaut, matplotlib's Grace Hopper),
each written in several crops and sizes so no two files are the same. Every configuration runs the
same jobs through `dfa_bench.instruct.align.align_sources` into a fresh directory, one torch thread per
worker; the figure is the median over repeats of frames / wall-clock seconds, pool start-up included
(it is part of what a user waits for), and again with start-up excluded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_frames(root: Path, n: int) -> list:
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    from dfa_bench.instruct.align import AlignJob

    photos = [Image.fromarray(data.astronaut()), Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg"))]
    jobs = []
    for i in range(n):
        photo = photos[i % 2].convert("RGB")
        w, h = photo.size
        k = i // 2
        box = (k % 5 * 4, k % 7 * 3, w - k % 3 * 5, h - k % 4 * 4)
        scale = 1.0 - 0.02 * (k % 10)
        frame = photo.crop(box).resize((int((box[2] - box[0]) * scale), int((box[3] - box[1]) * scale)))
        path = root / f"frame{i:04d}.png"
        frame.save(path)
        jobs.append(AlignJob(str(path), str(path), "bona_fide", "bona_fide", "", f"id{i % 2}"))
    return jobs


def run_once(jobs: list, workers: int, size: int) -> tuple[float, float]:
    """(seconds in all, seconds after the first frame came back)."""
    from dfa_bench.instruct.align import align_sources

    first: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        counts = align_sources(
            jobs, out, size=size, workers=workers, progress=lambda _: first or first.append(time.perf_counter())
        )
        total = time.perf_counter() - start
    assert counts["records"] == len(jobs), counts
    return total, total - (first[0] - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    import os

    with tempfile.TemporaryDirectory() as tmp:
        jobs = make_frames(Path(tmp), args.frames)
        results = {}
        for workers in (int(w) for w in args.workers.split(",")):
            runs = [run_once(jobs, workers, args.size) for _ in range(args.repeats)]
            total = statistics.median(r[0] for r in runs)
            steady = statistics.median(r[1] for r in runs)
            results[workers] = (args.frames / total, (args.frames - 1) / steady)
            print(f"workers={workers}: {results[workers][0]:.2f} frames/s in all, "
                  f"{results[workers][1]:.2f} frames/s after start-up (median of {args.repeats}; "
                  f"{[round(r[0], 2) for r in runs]} s)", flush=True)  # fmt: skip
    base = min(results)
    print(f"machine: {os.cpu_count()} CPUs; {args.frames} frames at {args.size} px")
    for workers, (fps, steady) in results.items():
        print(f"speed-up over {base} worker(s) at {workers}: {fps / results[base][0]:.2f}x in all, "
              f"{steady / results[base][1]:.2f}x after start-up")  # fmt: skip


if __name__ == "__main__":
    main()
