"""Submitting to the leaderboard: accepted outputs become entries; every rejection leaves the board unchanged.

These use hand-built eval outputs (tests/leaderboard_fixtures.py, fast); test_leaderboard_roundtrip.py
repeats the key cases on a real `dfa-bench eval` output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from leaderboard_fixtures import (
    RESULTS_REL,
    answers_for,
    edit_json,
    edit_lines,
    make_eval_output,
    samples_rel,
    snapshot,
)
from typer.testing import CliRunner

from dfa_bench.bench import build_bench, read_bench
from dfa_bench.leaderboard.cli import app, submit_command
from dfa_bench.leaderboard.entries import init_leaderboard, load_entries, parse_params
from dfa_bench.leaderboard.files import MAX_FILE_BYTES, SubmissionFiles, SubmissionRejected
from dfa_bench.leaderboard.submit import submit
from dfa_bench.scoring import score_predictions


@pytest.fixture
def board(bench_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(leaderboard dir, a valid submission, bench dir)."""
    init_leaderboard(tmp_path / "board", bench_dir)
    output = make_eval_output(read_bench(bench_dir), tmp_path / "run")
    return tmp_path / "board", output, bench_dir


def _rejected(board_dir: Path, output: Path, match: str, **kwargs) -> str:
    before = snapshot(board_dir)
    with pytest.raises(SubmissionRejected, match=match) as info:
        submit(output, board_dir, **kwargs)
    assert snapshot(board_dir) == before, "a rejected submission changed the leaderboard"
    return str(info.value)


# ---- accepted -------------------------------------------------------------------------------------


def test_accepted_entry_holds_recomputed_metrics_and_provenance(board):
    board_dir, output, bench_dir = board
    bench = read_bench(bench_dir)
    entry, path = submit(output, board_dir, model_name="Fake 7B", params=7_000_000_000)
    assert path == board_dir / "entries" / "Fake-7B.json"
    assert json.loads(path.read_text()) == entry
    assert load_entries(board_dir) == [entry]
    answers = answers_for(bench)
    expected, _, _ = score_predictions(bench, {q: {**a, "line": 1} for q, a in answers.items()}, seed=0)
    assert entry["metrics"] == expected
    assert entry["metrics"]["dfd"]["auc"] is not None  # DF-D probabilities came from responses.jsonl
    assert entry["provenance"] == "measured" and entry["citation"] is None
    assert entry["group"] == "general MLLM" and entry["adapter"] == "dfa_hf" and entry["params"] == 7_000_000_000
    assert "sk-secret" not in path.read_text() and entry["model_args"] == "pretrained=org/fake-model,api_key=***"
    assert entry["bench"] == {"name": "test-bench", "version": "0", "manifest_sha256": bench.manifest_sha256}
    assert entry["parse_failure_rates"] == {t: expected[t]["parse_failure_rate"] for t in ("dfd", "dfc")}
    assert entry["versions"]["lmms_eval"] == "0.7.3" and entry["versions"]["dfa_bench_scorer"]
    assert entry["date"] == "2025-01-02T03:04:05"
    assert set(entry["source"]["files"]) >= {"run.json", "metrics.json", "predictions.jsonl", RESULTS_REL}
    assert not list((board_dir / "entries").glob(".*.tmp")), "atomic write left a temp file"


def test_training_annotations_place_a_tuned_entry_in_table_ii(board):
    board_dir, output, _ = board
    _rejected(board_dir, output, "one of \\['D', 'D\\+C'", model_name="x", group="tuned", annotations="D+AD")
    _rejected(board_dir, output, "this entry's group is 'general MLLM'", model_name="x", annotations="D")
    entry, path = submit(output, board_dir, model_name="DFA-GPT (D+C)", group="tuned", annotations="D+C")
    assert entry["annotations"] == "D+C" and load_entries(board_dir) == [entry]
    result = CliRunner().invoke(app, ["paper-tables", "--leaderboard", str(board_dir)])
    assert result.exit_code == 0, result.output
    assert "| D+C: DFA-GPT (D+C) (measured) |" in result.output.split("## Table II")[1].split("## Table III")[0]


def test_default_name_and_a_second_submission_of_the_same_name(board):
    board_dir, output, _ = board
    entry, _ = submit(output, board_dir)
    assert entry["model"] == "fake-model"  # basename of pretrained=
    _rejected(board_dir, output, "already on the leaderboard")
    entry, _ = submit(output, board_dir, replace=True, group="tuned")
    assert load_entries(board_dir)[0]["group"] == "tuned"


def test_a_predictions_only_submission_never_becomes_a_measured_entry(board):
    """A hand-made predictions.jsonl (here: every reference answer, 100%) with no lmms-eval logs is refused."""
    board_dir, output, bench_dir = board
    import shutil

    bench = read_bench(bench_dir)
    shutil.rmtree(output / "lmms_eval")
    (output / "responses.jsonl").unlink()
    perfect = [{"question_id": i["question_id"], "response": i["answer"], "score": None} for i in bench.items]
    (output / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in perfect))
    _rejected(board_dir, output, "no lmms-eval logs: a measured entry needs lmms-eval's logged samples")


def test_a_subset_of_tasks_is_accepted_with_the_other_abilities_absent(bench_dir, tmp_path):
    init_leaderboard(tmp_path / "board", bench_dir)
    output = make_eval_output(read_bench(bench_dir), tmp_path / "run", tasks=("dfd",))
    entry, _ = submit(output, tmp_path / "board")
    assert set(entry["metrics"]) == {"dfd"}


# ---- rejected -------------------------------------------------------------------------------------


def test_tampered_metric_in_metrics_json(board):
    board_dir, output, _ = board
    edit_json(output / "metrics.json", lambda m: m["dfd"].update(acc=m["dfd"]["acc"] + 0.01))
    message = _rejected(board_dir, output, "metrics.json: dfd.acc: reported")
    assert "the logged samples give" in message


def test_tampered_confidence_interval_in_metrics_json(board):
    board_dir, output, _ = board
    edit_json(output / "metrics.json", lambda m: m["ad"]["ci95"]["rouge_l"].__setitem__(1, 0.99))
    _rejected(board_dir, output, r"metrics.json: ad.ci95.rouge_l\[1\]")


@pytest.mark.parametrize("metric", ["region_f1", "verdict_consistency"])
def test_tampered_ad_grounding_metrics_are_recomputed(board, metric):
    board_dir, output, _ = board
    edit_json(output / "metrics.json", lambda m: m["ad"].update({metric: 0.99}))
    _rejected(board_dir, output, f"metrics.json: ad.{metric}: reported 0.99")


def test_tampered_region_f1_in_lmms_eval_results(board):
    board_dir, output, _ = board
    edit_json(output / RESULTS_REL, lambda r: r["results"]["dfa_bench_ad"].update({"region_f1,none": 0.99}))
    _rejected(board_dir, output, r"_results.json: results.dfa_bench_ad.region_f1,none: reported 0.99")


def test_metric_within_tolerance_is_accepted(board):
    board_dir, output, _ = board
    edit_json(output / "metrics.json", lambda m: m["dfd"].update(acc=m["dfd"]["acc"] + 1e-12))
    submit(output, board_dir)


def test_tampered_lmms_eval_results(board):
    board_dir, output, _ = board
    edit_json(output / RESULTS_REL, lambda r: r["results"]["dfa_bench_dfc"].update({"acc,none": 0.99}))
    _rejected(board_dir, output, r"_results.json: results.dfa_bench_dfc.acc,none: reported 0.99")


def test_tampered_response_in_samples_changes_the_recomputed_metrics(board):
    """Editing the answers (samples and predictions alike) without re-scoring is caught by recomputation."""
    board_dir, output, _ = board

    def fix(lines):
        sample = json.loads(lines[0])
        for name in ("acc", "parse_failure_rate"):
            sample[name]["response"] = "Face swapping."
        return [json.dumps(sample) + "\n", *lines[1:]]

    edit_lines(output / samples_rel("dfc"), fix)
    qid = json.loads((output / samples_rel("dfc")).read_text().splitlines()[0])["acc"]["question_id"]

    def fix_predictions(lines):
        rows = [json.loads(line) for line in lines]
        for row in rows:
            if row["question_id"] == qid:
                row["response"] = "Face swapping."
        return [json.dumps(row) + "\n" for row in rows]

    edit_lines(output / "predictions.jsonl", fix_predictions)
    _rejected(board_dir, output, "metrics.json: dfc")


def test_tampered_probability_in_response_cache(board):
    board_dir, output, _ = board

    def fix(lines):
        rows = [json.loads(line) for line in lines]
        for row in rows:
            if row["score"] is not None:
                row["score"] = 1 - row["score"]
        return [json.dumps(row) + "\n" for row in rows]

    edit_lines(output / "responses.jsonl", fix)
    _rejected(board_dir, output, r"metrics.json: dfd.(auc|eer)")


def test_different_manifest_hash_in_run_json(board):
    board_dir, output, _ = board
    edit_json(output / "run.json", lambda r: r.update(bench_manifest_sha256="0" * 64))
    _rejected(board_dir, output, "run.json: bench manifest sha256 0{64} differs from the leaderboard's bench")


def test_output_of_another_bench_is_rejected(board, synthetic_source, tmp_path):
    board_dir, _, _ = board
    other = build_bench(synthetic_source / "records.jsonl", synthetic_source, tmp_path / "other", seed=8, name="x")
    output = make_eval_output(other, tmp_path / "other-run")
    _rejected(board_dir, output, "differs from the leaderboard's bench")


def test_copied_hash_with_other_references_is_rejected(board):
    """A run against another bench that copied our hash into run.json still logs other reference answers."""
    board_dir, output, _ = board
    edit_lines(output / samples_rel("ad"), lambda lines: [lines[0].replace('"target": "', '"target": "X'), *lines[1:]])
    _rejected(board_dir, output, f"{samples_rel('ad')}:1: .*logged target differs from the bench")


def test_samples_without_targets_are_rejected(board):
    """Another bench's run, its targets deleted and run.json's manifest hash forged, is not accepted."""
    board_dir, output, _ = board

    def drop_targets(lines):
        return [json.dumps({k: v for k, v in json.loads(line).items() if k != "target"}) + "\n" for line in lines]

    edit_lines(output / samples_rel("dfd"), drop_targets)
    _rejected(board_dir, output, f"{samples_rel('dfd')}:1: item .*: the logged sample has no target")


def test_the_same_run_under_another_name_is_rejected(board):
    board_dir, output, _ = board
    submit(output, board_dir, model_name="first")
    for name in ("second", "third"):
        _rejected(board_dir, output, "already on the leaderboard as 'first' \\(identical files\\)", model_name=name)
    entry, _ = submit(output, board_dir, model_name="first", replace=True)  # replacing itself is fine
    assert entry["model"] == "first"


def test_missing_sample(board):
    board_dir, output, _ = board
    edit_lines(output / samples_rel("dfd"), lambda lines: lines[:-1])
    _rejected(board_dir, output, f"{samples_rel('dfd')}: samples missing: 1 of 30 dfd items")


def test_limited_run_is_rejected_as_missing_samples(bench_dir, tmp_path):
    init_leaderboard(tmp_path / "board", bench_dir)
    output = make_eval_output(read_bench(bench_dir), tmp_path / "run", limit=3)
    _rejected(tmp_path / "board", output, "samples missing: 27 of 30 dfd items .*limit=3")


def test_duplicated_sample(board):
    board_dir, output, _ = board
    edit_lines(output / samples_rel("dfc"), lambda lines: [*lines, lines[4]])
    _rejected(board_dir, output, f"{samples_rel('dfc')}:31: duplicated sample .* \\(first on line 5\\)")


def test_duplicated_prediction(board):
    board_dir, output, _ = board
    edit_lines(output / "predictions.jsonl", lambda lines: [*lines, lines[0]])
    _rejected(board_dir, output, "duplicated sample: .*predictions.jsonl:.*duplicate question_id")


def test_unknown_question_id(board):
    board_dir, output, _ = board
    edit_lines(output / samples_rel("dfd"), lambda lines: [*lines, lines[0].replace(':dfd"', 'x:dfd"')])
    _rejected(board_dir, output, f"{samples_rel('dfd')}:31: item .* is not in the leaderboard's bench")


def test_predictions_disagreeing_with_samples(board):
    board_dir, output, _ = board

    def fix(lines):
        row = json.loads(lines[2])
        row["response"] = "something else"
        return [*lines[:2], json.dumps(row) + "\n", *lines[3:]]

    edit_lines(output / "predictions.jsonl", fix)
    _rejected(board_dir, output, "predictions.jsonl:3: item .*response differs from lmms-eval's logged sample")


@pytest.mark.parametrize(
    ("rel", "line"), [(samples_rel("dfc"), 2), ("predictions.jsonl", 3), ("responses.jsonl", 4)]
)  # fmt: skip
def test_malformed_json_line_names_file_and_line(board, rel, line):
    board_dir, output, _ = board
    edit_lines(output / rel, lambda lines: [*lines[: line - 1], '{"question_id": \n', *lines[line:]])
    _rejected(board_dir, output, f"{rel}:{line}: malformed JSON")


def test_malformed_results_and_metrics_files(board):
    board_dir, output, _ = board
    (output / "metrics.json").write_text("{not json")
    _rejected(board_dir, output, "metrics.json: malformed JSON")
    (output / "run.json").write_bytes(b'{"model": "\xff"}')
    _rejected(board_dir, output, "run.json: malformed file: not UTF-8")
    (output / "run.json").write_text("[" * 100000 + "]" * 100000)
    _rejected(board_dir, output, "run.json: (malformed JSON|field)")


def test_malformed_sample_structure(board):
    board_dir, output, _ = board
    edit_lines(output / samples_rel("ad"), lambda lines: [*lines[:1], '{"rouge_l": 3}\n', *lines[2:]])
    _rejected(board_dir, output, f"{samples_rel('ad')}:2: malformed sample")


def test_missing_files(board):
    board_dir, output, _ = board
    (output / samples_rel("ad")).unlink()
    _rejected(board_dir, output, f"{samples_rel('ad')}: missing")
    (output / "run.json").unlink()
    _rejected(board_dir, output, "run.json: missing")


def test_symlink_pointing_outside_the_submission(board, tmp_path):
    board_dir, output, _ = board
    outside = tmp_path / "outside.jsonl"
    (output / samples_rel("dfd")).rename(outside)
    (output / samples_rel("dfd")).symlink_to(outside)
    _rejected(board_dir, output, f"{samples_rel('dfd')}: resolves to .*outside the submission")


def test_symlinked_folder_pointing_outside_the_submission(board, tmp_path):
    board_dir, output, _ = board
    (output / "lmms_eval").rename(tmp_path / "elsewhere")
    (output / "lmms_eval").symlink_to(tmp_path / "elsewhere")
    _rejected(board_dir, output, "outside the submission")


def test_symlink_inside_the_submission_is_followed(board):
    board_dir, output, _ = board
    (output / "metrics.json").rename(output / "real-metrics.json")
    (output / "metrics.json").symlink_to("real-metrics.json")
    submit(output, board_dir)


def test_paths_leaving_the_submission_are_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "secret.json").write_text("{}")
    files = SubmissionFiles(tmp_path / "sub")
    for rel in ("../secret.json", str(tmp_path / "secret.json"), "a/../../secret.json"):
        with pytest.raises(SubmissionRejected, match="outside the submission"):
            files.read_json(rel)


def test_oversized_file_is_refused_unread(board):
    board_dir, output, _ = board
    big = output / samples_rel("ad")
    edit_lines(big, lambda lines: lines * 3)  # make it the largest file, whatever the bench
    cap = max(p.stat().st_size for p in output.rglob("*") if p.is_file() and p != big) + 1
    size = big.stat().st_size
    assert size > cap
    _rejected(board_dir, output, f"{samples_rel('ad')}: {size} bytes exceeds the {cap}-byte limit", max_file_bytes=cap)


def test_file_over_the_default_cap_is_refused(board):
    board_dir, output, _ = board
    with open(output / "metrics.json", "r+b") as handle:  # sparse: costs no disk
        handle.truncate(MAX_FILE_BYTES + 1)
    _rejected(board_dir, output, f"metrics.json: {MAX_FILE_BYTES + 1} bytes exceeds the {MAX_FILE_BYTES}-byte limit")


def test_leaderboard_bench_that_changed_is_refused(board):
    board_dir, output, bench_dir = board
    manifest = bench_dir / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version": "0"', '"version": "9"'))
    from dfa_bench.schema import ValidationError

    with pytest.raises(ValidationError, match="is not the leaderboard's"):
        submit(output, board_dir)


# ---- the CLI --------------------------------------------------------------------------------------


def _cli() -> typer.Typer:
    """`dfa-bench submit` and `dfa-bench leaderboard ...` as dfa_bench.cli wires them."""
    root = typer.Typer()
    root.add_typer(app, name="leaderboard")
    root.command("submit")(submit_command)
    return root


def test_cli_init_submit_and_reject(board, bench_dir, tmp_path):
    _, output, _ = board
    runner = CliRunner()
    result = runner.invoke(
        _cli(), ["leaderboard", "init", "--bench", str(bench_dir), "--leaderboard", str(tmp_path / "b2")]
    )
    assert result.exit_code == 0, result.output
    args = ["submit", str(output), "--leaderboard", str(tmp_path / "b2"), "--model-name", "m1", "--group",
            "Vision-only", "--params", "86M"]  # fmt: skip
    result = runner.invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    assert "accepted 'm1' (vision-only)" in result.output
    entry = json.loads((tmp_path / "b2" / "entries" / "m1.json").read_text())
    assert entry["params"] == 86_000_000 and entry["group"] == "vision-only"

    edit_json(output / "metrics.json", lambda m: m["dfc"].update(acc=0.5))
    result = runner.invoke(_cli(), [*args[:5], "m2"])
    assert result.exit_code == 1
    assert "submission rejected: metrics.json: dfc.acc" in result.output
    assert not (tmp_path / "b2" / "entries" / "m2.json").exists()

    result = runner.invoke(_cli(), [*args[:5], "m3", "--group", "robots"])
    assert result.exit_code == 2 and "unknown group" in result.output


def test_cli_init_refuses_a_different_bench(board, synthetic_source, tmp_path):
    board_dir, _, _ = board
    other = build_bench(synthetic_source / "records.jsonl", synthetic_source, tmp_path / "other", seed=9)
    result = CliRunner().invoke(app, ["init", "--bench", str(other.root), "--leaderboard", str(board_dir)])
    assert result.exit_code == 2 and "use a new directory" in result.output


def test_parse_params():
    assert parse_params("7B") == 7_000_000_000
    assert parse_params("86.6m") == 86_600_000
    assert parse_params("7e9") == 7_000_000_000
    assert parse_params("1234") == 1234
    with pytest.raises(ValueError):
        parse_params("seven")


def test_no_torch_import():
    import subprocess
    import sys

    code = (
        "import sys, dfa_bench.leaderboard.cli, dfa_bench.leaderboard.submit, dfa_bench.leaderboard.render, "
        "dfa_bench.leaderboard.paper; bad = [m for m in ('torch', 'lmms_eval', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_lmms_eval_logs_without_a_model_folder(board):
    """Without `pretrained=` (e.g. dfa_probe's head=), lmms-eval writes straight into its output path."""
    board_dir, output, _ = board
    folder = output / "lmms_eval" / "fake__model"
    for path in folder.iterdir():
        path.rename(output / "lmms_eval" / path.name)
    folder.rmdir()
    entry, _ = submit(output, board_dir)
    assert entry["source"]["samples"] == "lmms-eval samples"


def test_a_task_answered_only_with_the_abstain_marker_shows_as_missing(bench_dir, tmp_path):
    """The vision-only probe answers "-" to every AD item: scored and checked, then shown as "-"."""
    from dfa_bench.leaderboard.render import render

    bench = read_bench(bench_dir)
    answers = answers_for(bench)
    for qid in answers:
        if qid.endswith(":ad"):
            answers[qid]["response"] = "-"
    init_leaderboard(tmp_path / "board", bench_dir)
    output = make_eval_output(bench, tmp_path / "run", answers, model="dfa_probe", model_args="head=/x,device=cpu")
    result = CliRunner().invoke(_cli(), ["submit", str(output), "--leaderboard", str(tmp_path / "board")])
    assert result.exit_code == 0, result.output
    assert "ad rouge_l - (abstained)" in result.output
    (entry,) = load_entries(tmp_path / "board")
    assert entry["abstained"] == ["ad"] and entry["metrics"]["ad"]["rouge_l"] == 0.0
    assert entry["group"] == "vision-only" and entry["model"] == "dfa_probe"  # defaults from the adapter
    row = next(line for line in render([entry], "md").splitlines() if line.startswith("| dfa\\_probe"))  # escaped
    assert row.rstrip(" |").endswith("| -")


def test_another_model_with_the_same_answers_is_its_own_entry(board):
    """Two models (other weights) may write the very same answers, as barely trained ones do: the model's
    identity in run.json tells them apart, so the second is an entry of its own."""
    board_dir, output, _ = board
    submit(output, board_dir, model_name="first")
    run = json.loads((output / "run.json").read_text())
    run["model_identity"] = {"pretrained": {"path": "/elsewhere", "weights_sha256": "0" * 64}}
    (output / "run.json").write_text(json.dumps(run))
    entry, _ = submit(output, board_dir, model_name="second")
    assert entry["model_identity"]["pretrained"]["weights_sha256"] == "0" * 64
    _rejected(board_dir, output, "already on the leaderboard as 'second' \\(identical files\\)", model_name="third")
