"""Hooks called from the task YAMLs in tasks/. Each is a thin call into the scoring core.

This module imports neither torch nor lmms-eval. The bench is found through the DFA_BENCH_DIR
environment variable (`dfa-bench eval --bench` sets it). process_results is pure: lmms-eval runs it
in threads and may retry it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, partial
from importlib import resources
from pathlib import Path

import yaml

from dfa_bench.bench import Bench, read_bench
from dfa_bench.imaging import load_rgb
from dfa_bench.metric_specs import logged_metrics, specs
from dfa_bench.scoring import aggregate, judge

BENCH_ENV = "DFA_BENCH_DIR"


def bench_dir() -> Path:
    value = os.environ.get(BENCH_ENV)
    if not value:
        raise RuntimeError(f"set {BENCH_ENV} to a DFA-Bench directory (or run through `dfa-bench eval --bench DIR`)")
    return Path(value).expanduser().resolve()


_READ: dict[tuple[Path, tuple[int, int]], Bench] = {}  # the last few benches read, by root and manifest stat


def _key(root: Path) -> tuple[Path, tuple[int, int]]:
    stat = (root / "manifest.json").stat() if (root / "manifest.json").exists() else None
    return root, (stat.st_mtime_ns, stat.st_size) if stat else (0, 0)


def _remember(key: tuple[Path, tuple[int, int]], bench: Bench) -> Bench:
    if len(_READ) >= 4:
        _READ.pop(next(iter(_READ)))
    _READ[key] = bench
    return bench


def _bench(root: Path) -> Bench:
    """Read once per process, and again when the manifest changed (a rebuilt or edited bench)."""
    key = _key(root)
    return _READ.get(key) or _remember(key, read_bench(root))


@contextmanager
def serving(bench: Bench) -> Iterator[None]:
    """The task hooks answer from `bench`, already read and validated (not read again), while the block runs.
    DFA_BENCH_DIR, the interface plain lmms-eval runs use, is set meanwhile and then restored."""
    root = Path(bench.root).resolve()
    previous = os.environ.get(BENCH_ENV)
    os.environ[BENCH_ENV] = str(root)
    _remember(_key(root), bench)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(BENCH_ENV, None)
        else:
            os.environ[BENCH_ENV] = previous


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


METRICS = logged_metrics()  # {task: its logged metrics}, from dfa_bench.metric_specs


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


# One aggregation per logged metric, as the task YAMLs name it: `!function dfa_bench.lmms_task.aggregate_<metric>`.
for _name in {spec.name for spec in specs(logged=True)}:
    globals()[f"aggregate_{_name}"] = partial(_aggregate, metric=_name)
