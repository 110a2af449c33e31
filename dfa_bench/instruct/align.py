"""DFA-Instruct stage 1: sources (images and videos) -> aligned face crops, one journaled record at a time.

Images stream through a bounded window of worker processes (MTCNN + landmarks in each), in input order, so
the journal comes out the same with any number of workers, memory stays flat however large the source, and
a killed build resumes after the last source whose records were all journaled (build_dir.DONE_JOBS).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dfa_bench.concurrency import bounded_map
from dfa_bench.instruct.build_dir import DONE_JOBS, JOURNAL, REPORT, BuildReport
from dfa_bench.instruct.regions import PAIR_ARTIFACT_KIND
from dfa_bench.io import AppendLog, atomic_write_bytes
from dfa_bench.schema import ValidationError, label_of


def record_id_for(key: str, category: str) -> str:
    prefix = "real" if category == "bona_fide" else category.split("_")[0][:4]
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# -- stage 1: detect and align -----------------------------------------------------------------------


@dataclass(frozen=True)
class AlignJob:
    """One source image or video, with the labels its records get."""

    key: str  # unique and stable across runs: what resume skips
    path: str
    label: str
    category: str
    technique: str
    identity: str
    related_identities: tuple[str, ...] = ()
    source: str | None = None  # the bona fide source image of a FS/FR/FE forgery
    split: str | None = None  # preassigned split (DeepfakeBench JSONs name one)
    is_video: bool = False
    description: str = ""  # the forgery's artifact description from the source (e.g. a person's), if any


@dataclass
class AlignOutcome:
    key: str
    png: bytes | None = None
    reason: str | None = None  # why there is no face crop
    frame: int | None = None
    mask: bytes | None = None  # PNG of where the forgery differs from its aligned bona fide source


_ALIGNER = None


def _init_worker(size: int, threads: int) -> None:
    import torch

    from dfa_bench.instruct.faces import FaceAligner

    global _ALIGNER
    torch.set_num_threads(threads)
    _ALIGNER = FaceAligner(size=size)


def _align_one(image, key: str, frame: int | None = None, source: str | None = None) -> AlignOutcome:
    face = _ALIGNER.align(image)
    if face.status != "ok":
        why = "no face found" if face.status == "no_face" else f"{face.n_faces} faces found, expected one"
        return AlignOutcome(key, reason=why, frame=frame)
    return AlignOutcome(key, png_bytes(face.image), frame=frame, mask=_source_pair_mask(face, source))


def _source_pair_mask(face, source: str | None) -> bytes | None:
    """The region mask of a FS/FR/FE forgery made from the bona fide image `source`: the source warped by the
    forgery's own alignment and compared pixel by pixel (regions.difference_mask). None without a usable
    source: the record then simply has no offline AD reference."""
    if source is None:
        return None
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from dfa_bench.instruct.regions import difference_mask

    try:
        with Image.open(source) as image:
            warped = _ALIGNER.warp_like(image, face)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    mask = difference_mask(np.asarray(face.image), np.asarray(warped))
    return None if mask is None else png_bytes(Image.fromarray(np.uint8(mask) * 255))


def align_job(job: AlignJob, every: int, max_frames: int | None) -> tuple[str, list[AlignOutcome]]:
    """Runs in a worker: (job key, every outcome of the job); a video gives one per sampled frame."""
    return job.key, _align_outcomes(job, every, max_frames)


def _align_outcomes(job: AlignJob, every: int, max_frames: int | None) -> list[AlignOutcome]:
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(job.path):
        return [AlignOutcome(job.key, reason=f"file not found: {job.path}")]
    if job.source is not None and not os.path.isfile(job.source):
        return [AlignOutcome(job.key, reason=f"bona fide source not found: {job.source}")]
    if job.is_video:
        from dfa_bench.instruct.sources.video import sample_frames

        outcomes = []
        try:
            for index, frame in sample_frames(job.path, every, max_frames):
                outcomes.append(_align_one(frame, f"{job.key}#{index}", index))
        except ValidationError as exc:
            outcomes.append(AlignOutcome(job.key, reason=str(exc)))
        return outcomes
    try:
        with Image.open(job.path) as image:
            image.load()
            return [_align_one(image, job.key, source=job.source if job.category in PAIR_ARTIFACT_KIND else None)]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return [AlignOutcome(job.key, reason=f"unreadable image: {type(exc).__name__}: {exc}")]


class _InProcess:
    """workers=0: run jobs here, one at a time (debugging, tests)."""

    def __init__(self, size: int) -> None:
        global _ALIGNER
        from dfa_bench.instruct.faces import FaceAligner

        _ALIGNER = FaceAligner(size=size)

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _executor(workers: int, size: int, threads: int):
    if workers == 0:
        return _InProcess(size)
    import multiprocessing

    # spawn, not fork: forking a process whose torch/OpenMP threads are running can deadlock the children
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(size, threads)
    )


def _done_keys(out: Path) -> set[str]:
    path = out / DONE_JOBS
    return set(path.read_text(encoding="utf-8").splitlines()) if path.exists() else set()


def align_sources(
    jobs: Iterable[AlignJob],
    out: Path | str,
    *,
    size: int = 224,
    workers: int = 1,
    threads_per_worker: int = 1,
    every: int = 10,
    max_frames: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Detect, align and journal every job not already done by an earlier (interrupted) run."""
    from functools import partial

    out = Path(out)
    done = _done_keys(out)
    counts = Counter(skipped=0, records=0, reported=0)
    by_key: dict[str, AlignJob] = {}

    def todo() -> Iterator[AlignJob]:
        for job in jobs:
            if job.key in done:
                counts["skipped"] += 1
                continue
            by_key[job.key] = job
            yield job

    work = partial(align_job, every=every, max_frames=max_frames)
    with (
        AppendLog(out / JOURNAL) as journal,
        BuildReport(out / REPORT) as report,
        open(out / DONE_JOBS, "a", encoding="utf-8") as done_log,
        _executor(workers, size, threads_per_worker) as pool,
    ):
        for key, outcomes in bounded_map(work, todo(), pool, window=4 * max(workers, 1)):
            job = by_key.pop(key)
            for outcome in outcomes:
                if outcome.png is None:
                    report.add(outcome.key, "align", outcome.reason)
                    counts["reported"] += 1
                    continue
                record_id = record_id_for(outcome.key, job.category)
                image = f"images/{record_id}.png"
                atomic_write_bytes(out / image, outcome.png)  # the image exists before the journal names it
                extra = {}
                if outcome.mask is not None and job.label == "forgery":
                    extra = {"mask": f"masks/{record_id}.png", "artifact_kind": PAIR_ARTIFACT_KIND[job.category]}
                    atomic_write_bytes(out / extra["mask"], outcome.mask)
                journal.append(
                    {"job": job.key, "record_id": record_id, "image": image, "label": job.label,
                     "category": job.category, "technique": job.technique, "identity": job.identity,
                     "related_identities": list(job.related_identities), "source": job.source, "split": job.split,
                     "frame": outcome.frame, "artifact_description": job.description if job.label == "forgery" else "",
                     **extra}
                )  # fmt: skip
                counts["records"] += 1
            if not outcomes:  # a video with no decodable frame
                report.add(job.key, "align", "no frames decoded")
            done_log.write(job.key + "\n")
            done_log.flush()
            if progress:
                progress(1)
    return dict(counts)


def jobs_from_manifest(items) -> Iterator[AlignJob]:
    """AlignJobs from `dfa_bench.instruct.sources.manifest.SourceItem`s."""
    for item in items:
        yield AlignJob(str(item.path), str(item.path), item.label, item.category, item.technique, item.identity,
                       item.related_identities, str(item.source) if item.source else None, None, item.is_video,
                       item.description)  # fmt: skip


def jobs_from_deepfakebench(entries) -> Iterator[AlignJob]:
    """AlignJobs from DeepfakeBench frame entries. Identities come from the video name: FF++-style
    fakes are named `target_source`, so both identities are linked and stay in one split."""
    from dfa_bench.instruct.taxonomy import category_of

    for entry in entries:
        first, *rest = entry.video.split("_")
        category = "bona_fide" if entry.is_real else category_of(entry.technique)
        related = tuple(rest[:1]) if rest and rest[0].isdigit() and first.isdigit() else ()
        split = {"val": "dev"}.get(entry.split, entry.split) or None
        yield AlignJob(str(entry.path), str(entry.path), label_of(category), category, entry.technique, first,
                       related, None, split, description=entry.description)  # fmt: skip
