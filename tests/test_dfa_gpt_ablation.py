"""`dfa-gpt ablation`: four presets trained, evaluated through `dfa-bench eval`, submitted, shown in Table II."""

from __future__ import annotations

import json

from dfa_gpt_fixtures import make_training_data
from typer.testing import CliRunner

from dfa_bench.leaderboard.cli import app as leaderboard_app
from dfa_bench.leaderboard.entries import load_entries
from dfa_bench.tiny_models import build_tiny_llava
from dfa_gpt.cli import app

TRAIN = ["--max-steps", "2", "--batch-size", "4", "--save-steps", "1", "--lora-rank", "4", "--lora-alpha", "8",
         "--no-bf16", "--workers", "0", "--cpu"]  # fmt: skip
PRESETS = ("D", "D+C", "D+C+AD", "D+C+AD+FC")
EVAL = ["--model-args", "dtype=float32,device=cpu,max_new_tokens=8", "--eval-batch-size", "8"]


def test_ablation_trains_evaluates_and_submits_each_preset(tmp_path, bench_dir):
    base = build_tiny_llava(tmp_path / "base")
    data, images = make_training_data(tmp_path)
    argv = ["ablation", "--base", str(base), "--data", str(data), "--images", str(images), "--bench", str(bench_dir),
            "--output", str(tmp_path / "abl"), *TRAIN, *EVAL]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    runs = {p: json.loads((tmp_path / "abl" / "runs" / p / "dfa_gpt_run.json").read_text())
            for p in ("d", "d-c", "d-c-ad", "d-c-ad-fc")}  # fmt: skip
    # each run trained on its preset's abilities only (6 images: one QA pair of each ability per image)
    assert {p: sorted(r["samples"]["by_ability"]) for p, r in runs.items()} == {
        "d": ["dfd"], "d-c": ["dfc", "dfd"], "d-c-ad": ["ad", "dfc", "dfd"], "d-c-ad-fc": ["ad", "dfc", "dfd", "fc"],
    }  # fmt: skip
    assert [r["recipe"]["annotations"] for r in runs.values()] == ["D", "D+C", "D+C+AD", "D+C+AD+FC"]
    board = tmp_path / "abl" / "leaderboard"
    entries = {e["model"]: e for e in load_entries(board)}
    assert {n: (e["annotations"], e["group"], e["adapter"]) for n, e in entries.items()} == {
        f"DFA-GPT ({p})": (p, "tuned", "dfa_gpt") for p in ("D", "D+C", "D+C+AD", "D+C+AD+FC")
    }
    for folder in runs:  # evaluated through dfa-bench eval; the entry's metrics are the eval's
        evaluation = tmp_path / "abl" / "eval" / folder
        run = json.loads((evaluation / "run.json").read_text())
        assert run["status"] == "ok" and run["model"] == "dfa_gpt" and f"/runs/{folder}," in run["model_args"]
        entry = next(e for e in entries.values() if f"/runs/{folder}," in e["model_args"])
        assert entry["metrics"] == json.loads((evaluation / "metrics.json").read_text())
    printed = [line.split("|")[1].strip() for line in result.output.splitlines() if line.startswith("| ")]
    assert printed == [*PRESETS, *(f"{p}: DFA-GPT ({p}) (measured)" for p in PRESETS)]

    # a re-run trains nothing again and replaces the entries in place
    mtimes = {p: (tmp_path / "abl" / "runs" / p / "adapter_model.safetensors").stat().st_mtime_ns for p in runs}
    again = CliRunner().invoke(app, argv)
    assert again.exit_code == 0, again.output
    assert mtimes == {p: (tmp_path / "abl" / "runs" / p / "adapter_model.safetensors").stat().st_mtime_ns
                      for p in runs}  # fmt: skip
    assert sorted(e["model"] for e in load_entries(board)) == sorted(entries)

    tables = CliRunner().invoke(leaderboard_app, ["paper-tables", "--leaderboard", str(board)])
    section = tables.output.split("## Table II")[1].split("## Table III")[0]
    assert [
        line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ") and "(measured)" in line
    ] == [f"{p}: DFA-GPT ({p}) (measured)" for p in PRESETS]


def test_ablation_refuses_an_unknown_preset(tmp_path):
    result = CliRunner().invoke(app, ["ablation", "--base", "b", "--data", "d.json", "--images", ".", "--bench", ".",
                                      "--output", str(tmp_path), "--presets", "D,D+AD"])  # fmt: skip
    assert result.exit_code == 2 and "--presets 'D,D+AD'" in result.output
    assert not list(tmp_path.iterdir())
