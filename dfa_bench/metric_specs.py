"""Every metric of DFA-Bench, declared once (as lm-evaluation-harness registers its metrics): its task,
name, label, direction, and where it appears. The lmms-eval hooks and their task YAMLs, the CLI's table,
`dfa-bench compare` and the leaderboard's columns are all derived from this list; tests/test_metric_specs.py
checks the YAMLs against it."""

from __future__ import annotations

from dataclasses import dataclass

from dfa_bench.schema import TASKS


@dataclass(frozen=True)
class MetricSpec:
    task: str  # dfd | dfc | ad
    name: str  # the key in metrics.json's task block
    label: str  # as tables show it
    higher_is_better: bool
    logged: bool = True  # an lmms-eval task metric (aggregated from per-item rows); AUC/EER need every score
    headline: bool = True  # a row of the CLI's metrics table
    column: bool = False  # a column of the leaderboard
    paper: bool = False  # a column of the paper's Tables I-III
    paired: str | None = None  # the per-item field of details.jsonl that `dfa-bench compare` tests

    @property
    def key(self) -> str:
        return f"{self.task}_{self.name}"


METRIC_SPECS = (
    MetricSpec("dfd", "acc", "DF-D ACC", True, column=True, paper=True, paired="correct"),
    MetricSpec("dfd", "err", "DF-D ERR", False, column=True, paper=True),
    MetricSpec("dfd", "acer", "DF-D ACER", False, column=True, paper=True),
    MetricSpec("dfd", "apcer", "DF-D APCER", False),
    MetricSpec("dfd", "bpcer", "DF-D BPCER", False),
    MetricSpec("dfd", "auc", "DF-D AUC", True, logged=False),
    MetricSpec("dfd", "eer", "DF-D EER", False, logged=False),
    MetricSpec("dfd", "parse_failure_rate", "DF-D unparsed", False, headline=False),
    MetricSpec("dfc", "acc", "DF-C ACC", True, column=True, paper=True, paired="correct"),
    MetricSpec("dfc", "parse_failure_rate", "DF-C unparsed", False, headline=False),
    MetricSpec("ad", "rouge_l", "AD ROUGE-L", True, column=True, paper=True, paired="rouge_l"),
    # dfa_bench.ad_reading: the regions an answer claims against those its reference names, over the items
    # whose reference names one; and whether the answer's stance agrees with the same run's DF-D verdict on the
    # record (needs both answers, so lmms-eval's per-task aggregation cannot log it)
    MetricSpec("ad", "region_precision", "AD region P", True, headline=False),
    MetricSpec("ad", "region_recall", "AD region R", True, headline=False),
    MetricSpec("ad", "region_f1", "AD region F1", True, column=True, paired="region_f1"),
    MetricSpec("ad", "verdict_consistency", "AD consistency", True, logged=False, column=True, paired="consistent"),
)


def specs(**where: object) -> tuple[MetricSpec, ...]:
    """The declared metrics whose fields equal `where`, in declaration order."""
    return tuple(s for s in METRIC_SPECS if all(getattr(s, k) == v for k, v in where.items()))


def logged_metrics() -> dict[str, tuple[str, ...]]:
    """{task: the metrics its lmms-eval task logs}, in the YAMLs' order."""
    return {task: tuple(s.name for s in specs(task=task, logged=True)) for task in TASKS}


def headline_metrics() -> dict[str, tuple[str, ...]]:
    return {task: tuple(s.name for s in specs(task=task, headline=True)) for task in TASKS}
