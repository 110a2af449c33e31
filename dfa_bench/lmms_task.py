"""Hooks called from the task YAMLs in tasks/. Each is a thin call into the scoring core.

This module imports neither torch nor lmms-eval. The bench is found through the DFA_BENCH_DIR
environment variable (`dfa-bench eval --bench` sets it). process_results is pure: lmms-eval runs it
in threads and may retry it.
"""

from __future__ import annotations

import math
import os
from functools import cache, lru_cache, partial
from importlib import resources
from pathlib import Path

import yaml

from dfa_bench.bench import Bench, read_bench
from dfa_bench.imaging import load_rgb
from dfa_bench.scoring import aggregate, judge

BENCH_ENV = "DFA_BENCH_DIR"


def bench_dir() -> Path:
    value = os.environ.get(BENCH_ENV)
    if not value:
        raise RuntimeError(f"set {BENCH_ENV} to a DFA-Bench directory (or run through `dfa-bench eval --bench DIR`)")
    return Path(value).expanduser().resolve()


@lru_cache(maxsize=4)
def _read(root: Path, manifest_stat: tuple[int, int]) -> Bench:
    return read_bench(root)


def _bench(root: Path) -> Bench:
    """Read once per process, and again when the manifest changed (a rebuilt or edited bench)."""
    stat = (root / "manifest.json").stat() if (root / "manifest.json").exists() else None
    return _read(root, (stat.st_mtime_ns, stat.st_size) if stat else (0, 0))


def _docs(dataset, task: str):
    """process_docs: replace the placeholder split with this task's items from the bench."""
    bench = _bench(bench_dir())
    # The image bytes' and the bench's hashes travel with each doc: adapters key their response cache
    # on them, so an answer is never served for another image or another bench.
    rows = [
        {**item, "image_path": str(bench.image_path(item)), "image_sha256": bench.image_sha256(item),
         "bench_sha256": bench.manifest_sha256}
        for item in bench.items_for(task)
    ]  # fmt: skip
    return type(dataset).from_list(rows)


class _TaskLoader(yaml.SafeLoader):
    """Reads our task YAMLs outside lmms-eval: `!function` tags stay strings."""


_TaskLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


@cache
def task_generation_kwargs(task: str) -> dict:
    """The generation settings of task YAML `dfa_bench_<task>`: what anything asking the bench's questions
    outside lmms-eval (the interactive demo, leaderboard audits) must ask with."""
    text = resources.files("dfa_bench.tasks").joinpath(f"dfa_bench_{task}.yaml").read_text(encoding="utf-8")
    return dict(yaml.load(text, Loader=_TaskLoader)["generation_kwargs"])


dfd_docs = partial(_docs, task="dfd")
dfc_docs = partial(_docs, task="dfc")
ad_docs = partial(_docs, task="ad")


def doc_to_visual(doc: dict) -> list:
    """The item's image, decoded in full: a damaged file raises (a per-item error in our adapters)."""
    return [load_rgb(doc["image_path"], what=f"image for {doc['question_id']}")]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"


METRICS = {
    "dfd": ("acc", "err", "apcer", "bpcer", "acer", "parse_failure_rate"),
    "dfc": ("acc", "parse_failure_rate"),
    "ad": ("rouge_l",),
}


def process_results(doc: dict, results: list) -> dict:
    row = judge(doc, results[0] if results else None)
    return dict.fromkeys(METRICS[doc["task"]], row)


def _aggregate(rows: list[dict], metric: str) -> float:
    unique = list({row["question_id"]: row for row in rows}.values())
    if not unique:
        return math.nan
    task = unique[0]["task"]
    value = aggregate(unique, resamples=0)[task][metric]
    return math.nan if value is None else value


# One aggregation per metric named in the task YAMLs (`!function dfa_bench.lmms_task.aggregate_<metric>`).
aggregate_acc = partial(_aggregate, metric="acc")
aggregate_err = partial(_aggregate, metric="err")
aggregate_apcer = partial(_aggregate, metric="apcer")
aggregate_bpcer = partial(_aggregate, metric="bpcer")
aggregate_acer = partial(_aggregate, metric="acer")
aggregate_parse_failure_rate = partial(_aggregate, metric="parse_failure_rate")
aggregate_rouge_l = partial(_aggregate, metric="rouge_l")
