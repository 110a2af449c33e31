"""Audits: an honest run verifies, a run edited to right answers (consistently) fails, so does another model."""

from __future__ import annotations

import json
import random

import pytest
from leaderboard_fixtures import make_eval_output
from typer.testing import CliRunner

from dfa_bench.bench import build_bench, read_bench
from dfa_bench.instruct.synthetic import make_source
from dfa_bench.leaderboard import audit
from dfa_bench.leaderboard.audit import audit_entry, stratified_sample
from dfa_bench.leaderboard.cli import app
from dfa_bench.leaderboard.entries import answers_path, bench_path, init_leaderboard, load_entries, read_config
from dfa_bench.leaderboard.render import render
from dfa_bench.leaderboard.submit import submit
from dfa_bench.schema import ValidationError
from dfa_bench.tiny_models import build_tiny_llava

pytestmark = pytest.mark.slow
ARGS = "device=cpu,dtype=float32"


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A leaderboard with an honest tiny-LLaVA run and a forged one claiming the same model."""
    from dfa_bench.evaluate import run_eval

    root = tmp_path_factory.mktemp("audit")
    make_source(root / "src", 3, seed=2)
    build_bench(root / "src" / "records.jsonl", root / "src", root / "bench", seed=0, name="audit-test", version="1")
    model, other = build_tiny_llava(root / "model", seed=0), build_tiny_llava(root / "other", seed=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.delenv("DFA_BENCH_DIR", raising=False)
        run_eval(model="dfa_llava", bench_dir=root / "bench", output=root / "honest",
                 model_args=f"pretrained={model},{ARGS}")  # fmt: skip
    init_leaderboard(root / "board", root / "bench")
    submit(root / "honest", root / "board", model_name="honest")
    # every answer edited to the reference, and every derived file (metrics, lmms-eval results) made consistent
    bench = read_bench(root / "bench")
    right = {i["question_id"]: {"response": i["answer"], "score": None} for i in bench.items}
    forged = make_eval_output(bench, root / "forged", right, model="dfa_llava", model_args=f"pretrained={model},{ARGS}",
                              with_responses_cache=False)  # fmt: skip
    entry, _ = submit(forged, root / "board", model_name="forged")  # submit cannot tell
    assert entry["metrics"]["dfd"]["acc"] == 1.0
    honest = {
        p["question_id"]: p for p in map(json.loads, (root / "honest/predictions.jsonl").read_text().splitlines())
    }
    # honest answers kept where the sample of seed 0 (3 items) looks, the references everywhere else
    looked_at = {i["question_id"] for i in stratified_sample(bench.items, 3, random.Random(0))}
    targeted = {qid: honest[qid] if qid in looked_at else right[qid] for qid in right}
    submit(make_eval_output(bench, root / "targeted", targeted, model="dfa_llava", model_args=f"pretrained={model},{ARGS}",
                            with_responses_cache=False), root / "board", model_name="targeted")  # fmt: skip
    # honest answers, forgery probabilities made perfect
    perfect = {qid: {**p, "score": float(by_id[qid]["label"] == "forgery")} if qid.endswith(":dfd") else p
               for qid, p in honest.items() if (by_id := bench.by_id)}  # fmt: skip
    entry, _ = submit(make_eval_output(bench, root / "perfect", perfect, model="dfa_llava",
                                       model_args=f"pretrained={model},{ARGS}", with_responses_cache=True),
                      root / "board", model_name="perfect")  # fmt: skip
    assert entry["metrics"]["dfd"]["auc"] == 1.0
    return root / "board", model, other


def test_an_honest_run_is_verified(board):
    board_dir, model, _ = board
    record = audit_entry(board_dir, "honest", "dfa_llava", f"pretrained={model},{ARGS}", sample=32, seed=3)
    assert record["status"] == "verified" and record["agreement"] == 1.0 and record["sample"] == 8
    entry = next(e for e in load_entries(board_dir) if e["model"] == "honest")
    assert entry["audit"]["seed"] == 3 and entry["audit"]["versions"]["torch"] and entry["audit"]["date"]
    line = next(line for line in render(load_entries(board_dir), "md").splitlines() if line.startswith("| honest"))
    assert "measured, verified" in line


def test_answers_edited_to_right_ones_fail_their_audit(board):
    board_dir, model, _ = board
    result = CliRunner().invoke(
        app, ["audit", "forged", "--leaderboard", str(board_dir), "--model", "dfa_llava",
              "--model-args", f"pretrained={model},{ARGS}"],
    )  # fmt: skip
    assert result.exit_code == 1 and "forged: failed" in result.output
    entry = next(e for e in load_entries(board_dir) if e["model"] == "forged")
    assert entry["audit"]["status"] == "failed" and entry["audit"]["agreement"] < 0.5
    line = next(line for line in render(load_entries(board_dir), "md").splitlines() if line.startswith("| forged"))
    assert "measured, audit failed" in line


def test_an_audit_with_another_model_fails(board, tmp_path):
    board_dir, _, other = board
    record = audit_entry(board_dir, "honest", "dfa_llava", f"pretrained={other},{ARGS}")
    assert record["status"] == "failed"


def test_kept_answers_that_were_changed_are_refused(board):
    board_dir, model, _ = board
    path = answers_path(board_dir, "honest")
    kept = path.read_bytes()
    rows = [json.loads(line) for line in kept.decode().splitlines()]
    rows[0]["response"] = "Yes. This face image is forged."
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        with pytest.raises(ValidationError, match="not the ones submitted"):
            audit_entry(board_dir, "honest", "dfa_llava", f"pretrained={model},{ARGS}")
    finally:
        path.write_bytes(kept)


def test_the_sample_is_drawn_when_the_audit_runs(board, monkeypatch):
    """An entry edited everywhere except where a known seed's sample looks: that seed verifies it, the fresh
    seed an audit draws by default does not."""
    board_dir, model, _ = board
    args = f"pretrained={model},{ARGS}"
    assert audit_entry(board_dir, "targeted", "dfa_llava", args, sample=3, seed=0)["status"] == "verified"
    items = read_bench(bench_path(board_dir, read_config(board_dir))).items
    attacked = {i["question_id"] for i in stratified_sample(items, 3, random.Random(0))}
    other_seed = next(s for s in range(1, 100)
                      if {i["question_id"] for i in stratified_sample(items, 3, random.Random(s))} != attacked)  # fmt: skip
    monkeypatch.setattr(audit, "fresh_seed", lambda: other_seed)
    result = CliRunner().invoke(app, ["audit", "targeted", "--leaderboard", str(board_dir), "--model", "dfa_llava",
                                      "--model-args", args, "--sample", "3"])  # fmt: skip
    assert result.exit_code == 1 and f"seed {other_seed}" in result.output
    record = next(e for e in load_entries(board_dir) if e["model"] == "targeted")["audit"]
    assert record["seed"] == other_seed and record["sample_by_task"] == {"dfd": 1, "dfc": 1, "ad": 1}
    assert record["detection"]["caught_probability"] == round(1 - 0.9**3, 4)


def test_unseeded_audits_draw_different_samples(board):
    board_dir, model, _ = board
    seeds = {audit_entry(board_dir, "honest", "dfa_llava", f"pretrained={model},{ARGS}", sample=1)["seed"]
             for _ in range(3)}  # fmt: skip
    assert len(seeds) == 3


def test_probabilities_made_perfect_fail_their_audit(board):
    board_dir, model, _ = board
    record = audit_entry(board_dir, "perfect", "dfa_llava", f"pretrained={model},{ARGS}", sample=32)
    assert record["status"] == "failed" and any("P(forgery)" in d for d in record["disagreements"])
    assert (
        audit_entry(board_dir, "honest", "dfa_llava", f"pretrained={model},{ARGS}", sample=32)["status"] == "verified"
    )


def test_the_default_sample_catches_ten_percent_edits_with_95_percent():
    assert audit.detection_probability(audit.DEFAULT_SAMPLE) >= 0.95
    assert audit.detection_probability(audit.DEFAULT_SAMPLE - 4) < 0.95  # and is near the smallest that does
