"""The DFA-Instruct build after alignment: aligned records -> split -> annotations -> QA -> outputs.

Stage 1 (dfa_bench.instruct.align) journals the aligned records; `finish_build` splits them by identity,
writes each forgery's AD reference (from the source, the offline mask annotator or an LLM), makes the QA
pairs and free conversations, and writes the training JSON, the dev/test benches and the summary, all
streamed over the journal. The build directory's layout: dfa_bench.instruct.build_dir.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from dfa_bench.instruct.build_dir import JOURNAL, REPORT, BuildReport
from dfa_bench.instruct.checks import (  # noqa: F401  (UnusableBuild, check_splits_do_not_leak: this module's API too)
    DEFAULT_MAX_DROPPED,
    HELD_OUT,
    SPLITS,
    UnusableBuild,
    build_problems,
    check_splits_do_not_leak,
    dropped_by_reason,
)
from dfa_bench.instruct.split import check_disjoint, identities_of, plan_split
from dfa_bench.io import atomic_open, iter_jsonl, write_json, write_json_array
from dfa_bench.schema import ValidationError, validate_record
from dfa_bench.templates import question_items

ABILITIES = ("dfd", "dfc", "ad", "fc")


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
