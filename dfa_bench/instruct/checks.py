"""What makes a finished build unusable: training images leaked into dev or test, a split of one label, an
empty test split, or too many refused inputs. `finish_build` writes everything, then raises UnusableBuild
naming each problem, so a user sees the summary and the report before fixing the source."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from dfa_bench.io import iter_jsonl
from dfa_bench.schema import ValidationError

SPLITS = ("train", "dev", "test")
HELD_OUT = ("dev", "test")
DEFAULT_MAX_DROPPED = 0.25
DROPPING_STAGES = ("source", "align")  # where an input is refused before it becomes a record


class UnusableBuild(ValidationError):
    """A build that finished but whose benches cannot be used (build_problems): everything is written."""


def _image_digests(out: Path, split: str) -> dict[str, str]:
    from dfa_bench.io import sha256_file

    return {sha256_file(out / r["image"]): r["record_id"] for _, r in iter_jsonl(out / f"records/{split}.jsonl")}


def check_splits_do_not_leak(out: Path) -> None:
    """No training image has the bytes of a dev or test image (under any name)."""
    train = _image_digests(out, "train")
    for split in HELD_OUT:
        leaks = [(train[d], rid) for d, rid in _image_digests(out, split).items() if d in train]
        if leaks:
            shown = "; ".join(f"train {a} == {split} {b}" for a, b in leaks[:5])
            raise ValidationError(f"{len(leaks)} training images are also {split} images: {shown}")


def dropped_by_reason(report_rows: Iterable[dict]) -> dict[str, int]:
    """Inputs refused before becoming records, counted by stage and reason (the reason's words before any
    path or detail: "align: no face found", "source: file not found")."""
    counts: Counter = Counter()
    for row in report_rows:
        if row["stage"] not in DROPPING_STAGES:
            continue
        parts = [p for p in row["reason"].split(": ") if not ("/" in p or "\\" in p or re.fullmatch(r"\S+:\d+", p))]
        reason = re.sub(r"\s*'[^']*'", "", parts[0]).strip() if parts else "other"
        counts[f"{row['stage']}: {reason}"] += 1
    return dict(counts.most_common())


def build_problems(summary: dict, max_dropped: float) -> list[str]:
    """Why a build's benches cannot be used as they are: a split with records but one label only (no DF-D AUC,
    no probe), no test records, or more of the inputs refused than `max_dropped`."""
    problems = []
    for split in SPLITS:
        counts = summary["categories"][split]
        n_forged = sum(n for category, n in counts.items() if category != "bona_fide")
        n_real = counts.get("bona_fide", 0)
        if (n_forged == 0) != (n_real == 0):
            problems.append(f"the {split} split has {n_real} bona fide and {n_forged} forged records (needs both)")
    if not summary["records"]["test"]:
        problems.append("the test split has no records")
    dropped, kept = sum(summary["dropped"].values()), sum(summary["records"].values())
    if dropped and dropped / (dropped + kept) > max_dropped:
        problems.append(
            f"{dropped} of {dropped + kept} inputs were refused ({dropped / (dropped + kept):.0%} > --max-dropped "
            f"{max_dropped:.0%}): {summary['dropped']}"
        )
    return problems
