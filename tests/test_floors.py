"""Floors: answers made from the bench alone, scored by the same code, written as runs and leaderboard rows."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from leaderboard_fixtures import fake_entry
from typer.testing import CliRunner

from dfa_bench.bench import build_bench, read_bench
from dfa_bench.cli import app
from dfa_bench.compare import compare_runs
from dfa_bench.floors import FLOORS, central_reference, floor_answers, score_floor
from dfa_bench.instruct.synthetic import make_source
from dfa_bench.leaderboard.entries import init_leaderboard, load_floors
from dfa_bench.leaderboard.render import render
from dfa_bench.rouge import rouge_l

runner = CliRunner()


@pytest.fixture(scope="module")
def dev_bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("dev")
    make_source(root / "source", 25, seed=5)
    return build_bench(root / "source/records.jsonl", root / "source", root / "bench", seed=3, name="dev")


def test_central_reference_maximises_mean_rouge_against_the_others():
    texts = ["the eyes are blurred", "the eyes are blurred and warped", "blurred eyes", "a seam on the jawline"]
    best = max(texts, key=lambda t: sum(rouge_l(o, t) for o in texts if o != t) / 3)
    assert central_reference(texts) == best == "the eyes are blurred"
    assert central_reference(["only one"]) == "only one" and central_reference([]) is None


def test_majority_floor_scores_the_class_shares(bench_dir):
    bench = read_bench(bench_dir)
    metrics, rows, _ = score_floor(bench, "majority")
    labels = Counter(i["label"] for i in bench.items_for("dfd"))
    categories = Counter(i["category"] for i in bench.items_for("dfc"))
    assert metrics["dfd"]["acc"] == max(labels.values()) / sum(labels.values())
    assert metrics["dfd"]["acer"] == 0.5 and metrics["dfd"]["auc"] == 0.5
    assert metrics["dfc"]["acc"] == max(categories.values()) / sum(categories.values())
    constant = {r["response"] for r in rows if r["task"] == "ad"}
    assert constant == {central_reference([i["answer"] for i in bench.items_for("ad")])}
    # every description claims artifacts and every verdict is "forged": a constant is perfectly consistent
    assert metrics["ad"]["verdict_consistency"] == 1.0


def test_random_floor_is_chance_up_to_rounding(bench_dir):
    bench = read_bench(bench_dir)
    metrics, _, _ = score_floor(bench, "random", seed=3)
    per_class = Counter(i["category"] for i in bench.items_for("dfc"))
    # each class of k items gets each of the 5 answers floor(k/5) or ceil(k/5) times
    low = sum(k // 5 for k in per_class.values()) / sum(per_class.values())
    high = sum(-(-k // 5) for k in per_class.values()) / sum(per_class.values())
    assert low <= metrics["dfc"]["acc"] <= high
    assert abs(metrics["dfd"]["acer"] - 0.5) <= 0.5 / min(Counter(i["label"] for i in bench.items_for("dfd")).values())
    assert metrics["dfd"]["auc"] == 0.5
    answers = floor_answers(bench, "random", seed=3)
    for item in bench.items_for("ad"):  # never the item's own reference
        assert answers[item["question_id"]]["response"] != item["answer"]
    assert answers != floor_answers(bench, "random", seed=4)
    assert answers == floor_answers(bench, "random", seed=3)


def test_category_oracle_answers_ad_only_from_the_true_category(bench_dir):
    bench = read_bench(bench_dir)
    answers = floor_answers(bench, "category-oracle")
    assert set(answers) == {i["question_id"] for i in bench.items_for("ad")}
    for item in bench.items_for("ad"):
        same = [i["answer"] for i in bench.items_for("ad") if i["category"] == item["category"]]
        assert answers[item["question_id"]]["response"] == central_reference(same)


def test_a_dev_split_chooses_the_constants(bench_dir, dev_bench):
    bench = read_bench(bench_dir)
    dev_references = {i["answer"] for i in dev_bench.items_for("ad")}
    for name in ("majority", "category-oracle"):
        chosen = {
            p["response"] for q, p in floor_answers(bench, name, choose_on=dev_bench).items() if q.endswith(":ad")
        }
        assert chosen <= dev_references and chosen.isdisjoint({i["answer"] for i in bench.items_for("ad")})


def test_the_command_writes_runs_that_compare_reads(bench_dir, dev_bench, tmp_path):
    result = runner.invoke(app, ["floors", "--bench", str(bench_dir), "--dev", str(dev_bench.root),
                                 "--output", str(tmp_path / "floors")])  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in FLOORS:
        run = json.loads((tmp_path / "floors" / name / "run.json").read_text())
        assert run["status"] == "ok" and run["floor"]["chosen_on_manifest_sha256"] == dev_bench.manifest_sha256
    compared = compare_runs(tmp_path / "floors/majority", tmp_path / "floors/random")
    assert compared["metrics"]["dfd_acc"]["a"] > compared["metrics"]["dfd_acc"]["b"]
    assert set(compared["metrics"]) >= {"dfd_acc", "dfc_acc", "ad_rouge_l", "ad_region_f1", "ad_verdict_consistency"}
    not_a_dir = tmp_path / "floors/majority/run.json"
    refused = runner.invoke(app, ["floors", "--bench", str(bench_dir), "--output", str(not_a_dir)])
    assert refused.exit_code == 2 and "not a directory" in refused.output


def test_the_leaderboard_shows_floors_as_references_never_best(bench_dir, tmp_path):
    init_leaderboard(tmp_path / "lb", bench_dir)
    floors = load_floors(tmp_path / "lb")
    assert sorted(f["model"] for f in floors) == sorted(FLOORS.values())
    weak = fake_entry("Weak", dfd=(0.40, 0.60, 0.55), dfc=0.10, ad=0.05)  # below every floor
    text = render([weak, *floors], "md")
    assert "## Floors: answers that never look at the image" in text and "floor (no image)" in text
    floor_lines = [line for line in text.splitlines() if line.startswith("| floor:")]
    assert len(floor_lines) == 3 and not any("**" in line for line in floor_lines)
    assert "**40.00**" in text  # the measured row is the best, though a floor scores higher
    for fmt in ("latex", "html", "csv"):
        assert "floor: uniform random" in render([weak, *floors], fmt)
