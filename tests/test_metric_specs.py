"""The task YAMLs, the hooks, the CLI table, `compare` and the leaderboard columns all follow
dfa_bench.metric_specs, the one declaration of each metric."""

from __future__ import annotations

from importlib import resources

import yaml

from dfa_bench import compare, lmms_task
from dfa_bench.bench import read_bench
from dfa_bench.cli import HEADLINE
from dfa_bench.leaderboard.entries import COLUMNS
from dfa_bench.leaderboard.paper import COLUMNS as PAPER_COLUMNS
from dfa_bench.metric_specs import METRIC_SPECS, specs
from dfa_bench.schema import TASKS
from dfa_bench.scoring import aggregate, judge


def task_yaml(task: str) -> dict:
    text = resources.files("dfa_bench.tasks").joinpath(f"dfa_bench_{task}.yaml").read_text(encoding="utf-8")
    return yaml.load(text, Loader=lmms_task._TaskLoader)


def test_each_task_yaml_logs_exactly_the_declared_metrics_in_order():
    for task in TASKS:
        listed = task_yaml(task)["metric_list"]
        declared = specs(task=task, logged=True)
        assert [m["metric"] for m in listed] == [s.name for s in declared], task
        for entry, spec in zip(listed, declared):
            assert entry["higher_is_better"] is spec.higher_is_better, spec.key
            assert entry["aggregation"] == f"dfa_bench.lmms_task.aggregate_{spec.name}", spec.key
            assert callable(getattr(lmms_task, f"aggregate_{spec.name}")), spec.key


def test_every_declared_metric_is_one_the_scorer_computes(bench_dir):
    items = read_bench(bench_dir).items
    rows = [{**judge(item, item["answer"] if i % 2 else "I am not sure."), "score": (i % 5) / 4}
            for i, item in enumerate(items)]  # fmt: skip
    computed = aggregate(rows, resamples=0)
    for spec in METRIC_SPECS:
        assert computed[spec.task].get(spec.name) is not None, spec.key


def test_the_derived_views():
    assert lmms_task.METRICS["dfd"] == ("acc", "err", "acer", "apcer", "bpcer", "parse_failure_rate")
    assert lmms_task.METRICS["ad"] == ("rouge_l", "region_precision", "region_recall", "region_f1")
    assert HEADLINE == {"dfd": ("acc", "err", "acer", "apcer", "bpcer", "auc", "eer"), "dfc": ("acc",),
                        "ad": ("rouge_l", "region_f1", "verdict_consistency")}  # fmt: skip
    paper = ["dfd_acc", "dfd_err", "dfd_acer", "dfc_acc", "ad_rouge_l"]  # the paper's order
    assert [c.key for c in PAPER_COLUMNS] == paper
    assert [c.key for c in COLUMNS] == [*paper, "ad_region_f1", "ad_verdict_consistency"]
    assert compare.COMPARED == {"dfd_acc": ("dfd", "correct"), "dfc_acc": ("dfc", "correct"),
                                "ad_rouge_l": ("ad", "rouge_l"), "ad_region_f1": ("ad", "region_f1"),
                                "ad_verdict_consistency": ("ad", "consistent")}  # fmt: skip
    assert len({s.key for s in METRIC_SPECS}) == len(METRIC_SPECS)
