"""`dfa-bench data build` as a function: DFA-Instruct from real sources (a CSV manifest, DeepfakeBench/DF-40
JSON), through alignment (dfa_bench.instruct.align) and the finish stages (dfa_bench.instruct.pipeline).

Every option and source is checked before the build directory is touched or a face aligned; a bad one raises
ValidationError. A build whose benches cannot be used raises UnusableBuild after writing everything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from dfa_bench.instruct import align, build_dir, pipeline
from dfa_bench.instruct.checks import DEFAULT_MAX_DROPPED
from dfa_bench.instruct.split import check_ratios
from dfa_bench.schema import ValidationError

ANNOTATORS = ("none", "openai")


@dataclass
class BuildRequest:
    output: Path
    manifest: Path | None = None
    deepfakebench_json: list[Path] = field(default_factory=list)
    root: Path | None = None  # what DeepfakeBench frame paths are relative to (default: each JSON's folder)
    annotator: str = "none"
    model: str = "gpt-4o"
    base_url: str | None = None
    free_conversations: bool = False
    batch: bool = False
    poll_interval: float = 30.0
    dry_run: bool = False
    workers: int = 1
    size: int = 224
    every: int = 10
    train: float = 0.8
    dev: float = 0.1
    seed: int = 0
    name: str = "dfa-bench"
    max_dropped: float = DEFAULT_MAX_DROPPED

    @property
    def ratios(self) -> dict[str, float]:
        return {"train": self.train, "dev": self.dev, "test": round(1 - self.train - self.dev, 6)}


def check_request(request: BuildRequest) -> None:
    """The options' faults, found before anything is read or written."""
    if not request.manifest and not request.deepfakebench_json:
        raise ValidationError("give --manifest and/or --deepfakebench-json")
    if not 0 <= request.max_dropped <= 1:
        raise ValidationError(f"--max-dropped is a share of the inputs, from 0 to 1; got {request.max_dropped}")
    if request.annotator not in ANNOTATORS:
        raise ValidationError(f"unknown annotator {request.annotator!r}; use none or openai")
    if request.annotator == "openai" and not request.dry_run and not os.environ.get("OPENAI_API_KEY"):
        raise ValidationError("--annotator openai needs OPENAI_API_KEY in the environment (--dry-run needs none)")
    if request.free_conversations and request.annotator != "openai":
        raise ValidationError("--free-conversations needs --annotator openai")
    for option, value, least in (("--size", request.size, 16), ("--every", request.every, 1),
                                 ("--workers", request.workers, 0)):  # fmt: skip
        if value < least:
            raise ValidationError(f"{option} must be at least {least}, got {value}")
    check_ratios(request.ratios)


def read_sources(request: BuildRequest) -> list[tuple[Iterator[align.AlignJob], list[tuple[str, str]]]]:
    """(align jobs, [(item, problem)]) per source file; an unreadable file raises ValidationError."""
    sources = []
    if request.manifest:
        from dfa_bench.instruct.sources.manifest import read_manifest

        items, problems = read_manifest(request.manifest)
        sources.append((align.jobs_from_manifest(items), [(p.split(": ")[0], p) for p in problems]))
    for json_file in request.deepfakebench_json:
        from dfa_bench.instruct.sources.deepfakebench import read_deepfakebench_json

        entries, missing = read_deepfakebench_json(json_file, request.root or json_file.parent)
        sources.append((align.jobs_from_deepfakebench(entries), [(p.rsplit(": ", 1)[-1], p) for p in missing]))
    return sources


def build(request: BuildRequest, echo: Callable[[str], object] = print) -> dict:
    """Run the build; returns its summary (build_summary.json), or {"dry_run": counts and cost} with dry_run."""
    check_request(request)
    sources = read_sources(request)
    output = request.output
    with build_dir.BuildReport(output / build_dir.REPORT) as report:
        for _, problems in sources:
            for item, problem in problems:
                report.add(item, "source", problem)
    jobs = chain(*(source_jobs for source_jobs, _ in sources))
    counts = align.align_sources(jobs, output, size=request.size, workers=request.workers, every=request.every)
    echo(f"aligned: {counts}")
    record_annotator = conversations = None
    if request.annotator == "openai":
        from dfa_bench.instruct.annotate import OpenAIAnnotator

        gpt = OpenAIAnnotator(output / "work/annotation_cache", model=request.model, base_url=request.base_url,
                              batch=request.batch, poll_interval=request.poll_interval)  # fmt: skip
        if request.dry_run:
            return {"dry_run": pipeline.annotation_dry_run(output, gpt)}
        record_annotator = pipeline.OpenAIRecordAnnotator(gpt)
        if request.free_conversations:
            from dfa_bench.instruct.conversations import ConversationGenerator

            conversations = ConversationGenerator(output / "work/conversation_cache", model=request.model,
                                                  base_url=request.base_url)  # fmt: skip
    options = pipeline.FinishOptions(ratios=request.ratios, seed=request.seed, name=request.name,
                                     max_dropped=request.max_dropped)  # fmt: skip
    return pipeline.finish_build(output, annotator=record_annotator, options=options,
                                 conversation_generator=conversations)  # fmt: skip
