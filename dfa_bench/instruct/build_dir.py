"""A DFA-Instruct build directory: what one `dfa-bench data build` (or build-mini) writes, and its report.

    work/records.jsonl     journal of finished records (append-only; what a resumed run skips)
    work/done_jobs.txt     the sources whose records and reports are all journaled
    build_report.jsonl     every bad input with its stage and reason (append-only)
    images/, masks/        aligned crops (and known manipulation masks)
    split.json             which identities went to which split
    records/{split}.jsonl  final records, annotated
    instruct/              LLaVA-format training JSON (train split): one file per ability + merged
    bench/dev, bench/test  DFA-Bench directories (the core contract)
    build_summary.json     counts, skipped stages and where the report is

Every file other than the two journals and the report is written to a temp name and swapped in.
"""

from __future__ import annotations

from pathlib import Path

from dfa_bench.io import AppendLog

JOURNAL = "work/records.jsonl"
DONE_JOBS = "work/done_jobs.txt"  # a job's key is added once all its records and reports are journaled
REPORT = "build_report.jsonl"


class BuildReport(AppendLog):
    """Bad inputs, one line each: {"item", "stage", "reason"}; a resumed run does not repeat a line."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path)
        self._seen = {(r["item"], r["stage"], r["reason"]) for r in self.rows()}

    def add(self, item: str, stage: str, reason: str) -> None:
        if (item, stage, reason) not in self._seen:
            self._seen.add((item, stage, reason))
            self.append({"item": item, "stage": stage, "reason": reason})
