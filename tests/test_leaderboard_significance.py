"""Significance marks: each measured row against the best measured row, paired over the same items."""

from __future__ import annotations

import json

import numpy as np
import pytest
from leaderboard_fixtures import answers_for, make_eval_output

from dfa_bench.bench import read_bench
from dfa_bench.compare import mcnemar_exact
from dfa_bench.leaderboard.entries import entry_path, init_leaderboard, load_entries
from dfa_bench.leaderboard.render import render, table_rows
from dfa_bench.leaderboard.significance import MARK
from dfa_bench.leaderboard.submit import submit
from dfa_bench.schema import ValidationError


@pytest.fixture
def board(bench_dir, tmp_path):
    """Three entries: 'perfect' (every reference answer), 'hedger' (a third hedged), 'near' (perfect but one)."""
    init_leaderboard(tmp_path / "board", bench_dir)
    bench = read_bench(bench_dir)
    perfect = {i["question_id"]: {"response": i["answer"], "score": None} for i in bench.items}
    near = dict(perfect)
    first_dfd = next(i for i in bench.items if i["task"] == "dfd")
    near[first_dfd["question_id"]] = {"response": "I am not sure.", "score": None}
    for name, answers in (("perfect", perfect), ("hedger", answers_for(bench)), ("near", near)):
        run = make_eval_output(bench, tmp_path / name, answers, with_responses_cache=False)
        submit(run, tmp_path / "board", model_name=name)
    return tmp_path / "board", bench


def test_entries_keep_per_item_outcomes_that_average_to_their_metrics(board):
    board_dir, bench = board
    entries = {e["model"]: e for e in load_entries(board_dir)}
    hedger = entries["hedger"]
    assert len(hedger["outcomes"]["dfd"]) == len(bench.items_for("dfd"))
    assert hedger["outcomes"]["dfd"].count("1") / len(hedger["outcomes"]["dfd"]) == pytest.approx(
        hedger["metrics"]["dfd"]["acc"]
    )
    assert len(hedger["outcomes"]["ad"]) == hedger["metrics"]["ad"]["n"]
    assert entries["perfect"]["outcomes"]["dfc"] == "1" * len(bench.items_for("dfc"))


def test_rows_are_marked_against_the_best_measured_row(board):
    board_dir, _ = board
    entries = load_entries(board_dir)
    rows = {r["model"]: r for r in table_rows(entries)}
    test = rows["hedger"]["cells"]["dfd_acc"]["test"]
    by_name = {e["model"]: e for e in entries}
    as_bits = [[c == "1" for c in by_name[m]["outcomes"]["dfd"]] for m in ("perfect", "hedger")]
    assert test["vs"] == "perfect" and test["test"] == "McNemar exact"
    assert test["p"] == pytest.approx(mcnemar_exact(*map(np.array, as_bits))) and test["significant"]
    assert rows["hedger"]["cells"]["dfd_err"]["test"]["significant"]  # ERR: ACC's complement, the same test
    assert rows["hedger"]["cells"]["ad_rouge_l"]["test"]["test"] == "paired bootstrap"
    assert rows["hedger"]["cells"]["dfd_acer"]["test"] is None  # no per-item form
    near = rows["near"]["cells"]["dfd_acc"]["test"]
    assert near["p"] == 1.0 and not near["significant"]  # one item apart
    assert rows["perfect"]["cells"]["dfd_acc"]["test"] is None  # the best row itself

    markdown = render(entries, "md")
    hedger_line = next(line for line in markdown.splitlines() if line.startswith("| hedger"))
    near_line = next(line for line in markdown.splitlines() if line.startswith("| near"))
    assert MARK in hedger_line and MARK not in near_line and f"{MARK} significantly different" in markdown
    page = render(entries, "html")
    assert f'title="p = {test["p"]:.4g} against perfect (McNemar exact): significantly different"' in page
    assert "not significantly different" in page  # near's cells say so on hover
    assert "$^\\dagger$" in render(entries, "latex") and MARK not in render(entries, "latex")


def test_reported_and_single_measured_rows_get_no_test(board, tmp_path):
    board_dir, _ = board
    entries = [e for e in load_entries(board_dir) if e["model"] == "hedger"]
    rows = table_rows(entries)
    assert all(cell["test"] is None for cell in rows[0]["cells"].values())
    assert MARK not in render(entries, "md")


def test_outcomes_that_disagree_with_the_metrics_are_refused(board):
    board_dir, _ = board
    path = entry_path(board_dir, "hedger")
    entry = json.loads(path.read_text())
    bits = entry["outcomes"]["dfd"]
    entry["outcomes"]["dfd"] = ("1" if bits[0] == "0" else "0") + bits[1:]  # a wrong answer made right
    path.write_text(json.dumps(entry))
    with pytest.raises(ValidationError, match=r"outcomes.dfd.*average"):
        load_entries(board_dir)
    entry["outcomes"]["dfd"] = bits[1:]
    path.write_text(json.dumps(entry))
    with pytest.raises(ValidationError, match=r"outcomes.dfd.*per-item outcomes"):
        load_entries(board_dir)
