"""The DFA-Instruct build driver: sources -> aligned records -> split -> annotations -> QA -> outputs.

A build directory holds everything one build writes:

    work/records.jsonl     journal of finished records (append-only; what a resumed run skips)
    build_report.jsonl     every bad input with its stage and reason (append-only)
    images/, masks/        aligned crops (and known manipulation masks)
    split.json             which identities went to which split
    records/{split}.jsonl  final records, annotated
    instruct/              LLaVA-format training JSON (train split): one file per ability + merged
    bench/dev, bench/test  DFA-Bench directories (the core contract)
    build_summary.json     counts, skipped stages and where the report is

Images stream through a bounded window of worker processes, one record at a time is journaled, and
everything after the journal streams over it, so memory stays flat however large the source.
Every file other than the two journals is written to a temp name and swapped in.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from dfa_bench.concurrency import bounded_map
from dfa_bench.instruct.checks import (  # noqa: F401  (UnusableBuild, check_splits_do_not_leak: this module's API too)
    DEFAULT_MAX_DROPPED,
    HELD_OUT,
    SPLITS,
    UnusableBuild,
    build_problems,
    check_splits_do_not_leak,
    dropped_by_reason,
)
from dfa_bench.instruct.regions import PAIR_ARTIFACT_KIND
from dfa_bench.instruct.split import check_disjoint, identities_of, plan_split
from dfa_bench.io import AppendLog, atomic_open, atomic_write_bytes, iter_jsonl, write_json, write_json_array
from dfa_bench.schema import ValidationError, label_of, validate_record
from dfa_bench.templates import question_items

JOURNAL = "work/records.jsonl"
DONE_JOBS = "work/done_jobs.txt"  # a job's key is added once all its records and reports are journaled
REPORT = "build_report.jsonl"
ABILITIES = ("dfd", "dfc", "ad", "fc")


class BuildReport(AppendLog):
    """Bad inputs, one line each: {"item", "stage", "reason"}; a resumed run does not repeat a line."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path)
        self._seen = {(r["item"], r["stage"], r["reason"]) for r in self.rows()}

    def add(self, item: str, stage: str, reason: str) -> None:
        if (item, stage, reason) not in self._seen:
            self._seen.add((item, stage, reason))
            self.append({"item": item, "stage": stage, "reason": reason})


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


# -- stage 2 and 3: split, annotate, QA, outputs ---------------------------------------------------------


class Annotator:
    """Writes the AD reference of forgeries: describe(records, root) -> ({record_id: text}, {record_id: reason}).

    `prepare` sees every forgery still to describe before the chunked pass (a Batch API run sends them
    all at once there)."""

    name = "annotator"

    def prepare(self, records: Iterable[dict], root: Path) -> None:
        pass

    def describe(self, records: list[dict], root: Path) -> tuple[dict[str, str], dict[str, str]]:
        raise NotImplementedError


class MaskAnnotator(Annotator):
    """The offline, deterministic annotator: regions under the known mask + the generator's artifact kind.

    The mask is the generator's (DFA-Bench-mini) or the difference from the forgery's aligned bona fide source
    (a manifest's `source` column). A forgery with neither is left undescribed, not failed: it keeps its DF-D
    and DF-C items and has no AD item."""

    name = "offline-mask"

    def describe(self, records: list[dict], root: Path) -> tuple[dict[str, str], dict[str, str]]:
        import numpy as np
        from PIL import Image

        from dfa_bench.instruct.regions import describe_artifacts

        texts, failures = {}, {}
        for record in records:
            if not record.get("mask") or not record.get("artifact_kind"):
                continue
            try:
                with Image.open(root / record["mask"]) as mask:
                    texts[record["record_id"]] = describe_artifacts(np.asarray(mask) > 127, record["artifact_kind"])
            except (OSError, ValueError, KeyError) as exc:
                failures[record["record_id"]] = f"{type(exc).__name__}: {exc}"
        return texts, failures


class OpenAIRecordAnnotator(Annotator):
    """GPT-4o (or any OpenAI-compatible server) through `dfa_bench.instruct.annotate.OpenAIAnnotator`."""

    name = "openai"

    def __init__(self, annotator) -> None:
        self.annotator = annotator
        self.batch_failures: dict[str, str] = {}

    @staticmethod
    def _requests(records: Iterable[dict], root: Path) -> list:
        from dfa_bench.instruct.annotate import AnnotationRequest

        return [
            AnnotationRequest(r["record_id"], r["category"], root / r["image"], Path(r["source"]) if r.get("source") else None)
            for r in records
        ]  # fmt: skip

    def prepare(self, records: Iterable[dict], root: Path) -> None:
        # one Batch API run for everything (its answers land in the cache), not one blocking batch per chunk
        if getattr(self.annotator, "batch", False):
            _, self.batch_failures = self.annotator.annotate_batch(self._requests(records, root))

    def describe(self, records: list[dict], root: Path) -> tuple[dict[str, str], dict[str, str]]:
        requests = self._requests(records, root)
        if not getattr(self.annotator, "batch", False):
            return self.annotator.annotate(requests)
        texts = {r.key: text for r in requests if (text := self.annotator.cached(r)) is not None}
        reason = "not answered by the Batch API run"
        return texts, {r.key: self.batch_failures.get(r.key, reason) for r in requests if r.key not in texts}


@dataclass
class FinishOptions:
    ratios: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "dev": 0.1, "test": 0.1})
    seed: int = 0
    name: str = "dfa-bench"
    version: str = "0"
    chunk: int = 256  # records per annotation / conversation request batch
    max_dropped: float = DEFAULT_MAX_DROPPED  # the build fails when a larger share of its inputs was refused


def _chunks(rows: Iterable[dict], n: int) -> Iterator[list[dict]]:
    rows = iter(rows)
    while chunk := list(islice(rows, n)):
        yield chunk


def _journal_rows(out: Path) -> Iterator[dict]:
    for _, row in iter_jsonl(out / JOURNAL):
        yield row


def _split_records(out: Path, options: FinishOptions) -> dict:
    """Stream the journal into work/{split}.jsonl; preassigned splits are kept, the rest split by identity."""
    unassigned = (identities_of(r) for r in _journal_rows(out) if not r.get("split"))
    split_of, split_file = plan_split(unassigned, options.ratios, seed=options.seed)
    counts = Counter()
    seen: set[str] = set()  # a job interrupted half-way journals some records twice on resume
    with _open_all(out, [f"work/{s}.jsonl" for s in SPLITS]) as files:
        handles = dict(zip(SPLITS, files))
        for row in _journal_rows(out):
            if row["record_id"] in seen:
                continue
            seen.add(row["record_id"])
            split = row.get("split") or split_of[row["identity"]]
            if split not in handles:
                raise ValidationError(f"unknown split {split!r} for record {row['record_id']}", path=str(out / JOURNAL))
            row["split"] = split
            handles[split].write(json.dumps(row, ensure_ascii=False) + "\n")
            counts[split] += 1
            for identity in identities_of(row):
                split_of.setdefault(identity, split)
                if split_of[identity] != split:  # a preassigned split that breaks disjointness
                    raise ValidationError(
                        f"identity {identity!r} is in both {split_of[identity]!r} and {split!r} "
                        f"(record {row['record_id']})",
                        path=str(out / JOURNAL),
                    )
    identities = {s: sorted(i for i, v in split_of.items() if v == s) for s in SPLITS}
    check_disjoint(identities)
    split_file.update(counts={s: counts[s] for s in SPLITS}, identities=identities)
    write_json(out / "split.json", split_file)
    return split_file


class _open_all:
    """Several atomic files at once: all swapped in on success, none on failure."""

    def __init__(self, out: Path, names: list[str]) -> None:
        self.managers = [atomic_open(out / n) for n in names]

    def __enter__(self) -> list:
        return [m.__enter__() for m in self.managers]

    def __exit__(self, *exc) -> None:
        for manager in self.managers:
            manager.__exit__(*exc)


def _annotate_split(out: Path, split: str, annotator: Annotator, report: BuildReport, chunk: int) -> Counter:
    """records/{split}.jsonl: every aligned record, forgeries described where the source gave no text and the
    annotator can. A forgery left without a description (none given, none derivable, or the annotator failed
    on it: reported) is kept: DF-D and DF-C do not need one. Returns counts per category, and `ad_reference` /
    `no_ad_reference` over the forgeries."""
    counts = Counter()

    def annotated() -> Iterator[dict]:
        for rows in _chunks((r for _, r in iter_jsonl(out / f"work/{split}.jsonl")), chunk):
            needing = [r for r in rows if r["label"] == "forgery" and not r.get("artifact_description")]
            texts, failures = annotator.describe(needing, out) if needing else ({}, {})
            for row in rows:
                rid = row["record_id"]
                if rid in texts:
                    row["artifact_description"] = texts[rid]
                elif rid in failures:
                    report.add(row.get("job", rid), "annotate", failures[rid])
                validate_record(row, path=str(out / f"work/{split}.jsonl"))
                counts[row["category"]] += 1
                if row["label"] == "forgery":
                    counts["ad_reference" if row.get("artifact_description") else "no_ad_reference"] += 1
                yield row

    with atomic_open(out / f"records/{split}.jsonl") as handle:
        for row in annotated():
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return counts


def _conversations(out: Path, options: FinishOptions, conversation_generator, report: BuildReport) -> dict:
    """LLaVA training JSON for the train split: dfd/dfc/ad (+ fc when an LLM is configured) and merged; and the
    stage-1 captions (`dfa_instruct_caption.json`, not in merged: `dfa-gpt train --stage align` reads them)."""
    from dfa_bench.instruct.llava_json import caption_entry, llava_entry

    work = out / "work"
    counts = {}
    with _open_all(out, [f"work/instruct_{a}.jsonl" for a in (*ABILITIES, "caption")]) as files:
        handles = dict(zip((*ABILITIES, "caption"), files))
        for rows in _chunks((r for _, r in iter_jsonl(out / "records/train.jsonl")), options.chunk):
            for row in rows:
                for item in question_items(row, options.seed, row["image"]):
                    handles[item["task"]].write(json.dumps(llava_entry(item), ensure_ascii=False) + "\n")
                entry = caption_entry(row, row["image"], options.seed)
                handles["caption"].write(json.dumps(entry, ensure_ascii=False) + "\n")
            if conversation_generator is not None:
                entries, failures = conversation_generator.generate(rows)
                for entry in entries:
                    handles["fc"].write(json.dumps(entry, ensure_ascii=False) + "\n")
                for key, reason in failures.items():
                    report.add(key, "free_conversation", reason)
    abilities = ABILITIES if conversation_generator is not None else ABILITIES[:3]

    def lines(ability: str) -> Iterator[dict]:
        return (row for _, row in iter_jsonl(work / f"instruct_{ability}.jsonl"))

    for ability in abilities:
        counts[ability] = write_json_array(out / f"instruct/dfa_instruct_{ability}.json", lines(ability))
    counts["caption"] = write_json_array(out / "instruct/dfa_instruct_caption.json", lines("caption"))
    counts["merged"] = write_json_array(
        out / "instruct/dfa_instruct_merged.json", (row for a in abilities for row in lines(a))
    )
    stale = out / "instruct/dfa_instruct_fc.json"
    if conversation_generator is None and stale.exists():
        stale.unlink()  # from an earlier online build; this build has none
    return counts


def finish_build(
    out: Path | str,
    *,
    annotator: Annotator | None,
    options: FinishOptions | None = None,
    conversation_generator=None,
    extra_summary: dict | None = None,
) -> dict:
    """Everything after alignment. Cheap and deterministic given the journal, so it is simply redone on resume;
    the only paid step (GPT annotation or conversations) is served from its cache."""
    from dfa_bench.bench import build_bench

    out, options = Path(out), options or FinishOptions()
    if not (out / JOURNAL).exists():
        raise ValidationError("no aligned records yet (run the align stage first)", path=str(out / JOURNAL))
    _split_records(out, options)
    annotator = annotator or MaskAnnotator()
    annotator.prepare(
        (r for split in SPLITS for _, r in iter_jsonl(out / f"work/{split}.jsonl")
         if r["label"] == "forgery" and not r.get("artifact_description")),
        out,
    )  # fmt: skip
    categories, ad_references = {}, {}
    with BuildReport(out / REPORT) as report:
        for split in SPLITS:
            counts = _annotate_split(out, split, annotator, report, options.chunk)
            ad_references[split] = {"with": counts.pop("ad_reference", 0), "without": counts.pop("no_ad_reference", 0)}
            categories[split] = dict(counts)
        check_splits_do_not_leak(out)
        qa_pairs = _conversations(out, options, conversation_generator, report)
    benches = {}
    for split in HELD_OUT:
        bench = build_bench(out / f"records/{split}.jsonl", out, out / f"bench/{split}", seed=options.seed,
                            name=f"{options.name}-{split}", version=options.version)  # fmt: skip
        benches[split] = {
            "path": f"bench/{split}",
            "manifest_sha256": bench.manifest_sha256,
            **bench.manifest["counts"],
        }
    report_rows = [row for _, row in iter_jsonl(out / REPORT)] if (out / REPORT).exists() else []
    records = {s: sum(categories[s].values()) for s in SPLITS}
    summary = {
        "name": options.name,
        "version": options.version,
        "seed": options.seed,
        "annotator": annotator.name,
        "free_conversations": "generated" if conversation_generator is not None
        else "skipped: offline build (no LLM configured)",
        "records": records,
        "categories": categories,
        "ad_references": ad_references,
        "qa_pairs": qa_pairs,
        "benches": benches,
        "reported": dict(Counter(row["stage"] for row in report_rows)),
        "dropped": dropped_by_reason(report_rows),
        "report": REPORT,
        **(extra_summary or {}),
    }  # fmt: skip
    summary["problems"] = build_problems(summary, options.max_dropped)
    write_json(out / "build_summary.json", summary)
    if summary["problems"]:
        # everything is written (and a fixed source resumes from the journal); the build is still unusable
        raise UnusableBuild("the build is unusable: " + "; ".join(summary["problems"]), path=str(out))
    return summary


def annotation_dry_run(out: Path | str, annotator) -> dict:
    """What GPT annotation of the journaled forgeries would send and cost (an `OpenAIAnnotator`'s dry run)."""
    from dfa_bench.instruct.annotate import AnnotationRequest

    out = Path(out)
    requests = [
        AnnotationRequest(r["record_id"], r["category"], out / r["image"], Path(r["source"]) if r.get("source") else None)
        for r in _journal_rows(out)
        if r["label"] == "forgery" and not r.get("artifact_description")
    ]  # fmt: skip
    return annotator.dry_run(requests)
