"""`dfa-gpt`: --help shows the recipe's defaults; bad input exits with one clear line."""

from __future__ import annotations

import json

import typer
from dfa_gpt_fixtures import make_training_data
from typer.testing import CliRunner

from dfa_gpt.cli import app
from dfa_gpt.recipe import ANNOTATION_PRESETS


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


def test_train_help_shows_the_paper_defaults_and_the_presets():
    out = invoke("train", "--help").output
    for default in ("[default: 128]", "[default: 256]", "[default: 0.05]", "(2e-4)", "(2e-5)", "cosine", "2048"):
        assert default in out, default
    assert " | ".join(ANNOTATION_PRESETS) in out and "[default: D+C+AD+FC]" in out


def test_every_option_has_help():
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        for param in command.params:
            if param.param_type_name == "option":
                assert (param.help or "").strip(), f"dfa-gpt {name} {param.opts[0]}"
        assert invoke(name, "-h").exit_code == 0


def test_bad_input_exits_with_a_message(tmp_path):
    data, images = make_training_data(tmp_path, 1)
    base = ["train", "--base", str(tmp_path / "no-model"), "--data", str(data), "--images", str(images)]
    result = invoke(*base, "--output", str(tmp_path / "run"), "--annotations", "D+X")
    assert result.exit_code == 2 and "unknown annotations preset 'D+X'" in result.output
    result = invoke(*base, "--output", str(tmp_path / "run"), "--lora-rank", "0")
    assert result.exit_code == 2 and "lora_rank must be at least 1" in result.output
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "dfa_gpt_run.json").write_text(json.dumps({"base": "x"}))
    result = invoke(*base, "--output", str(tmp_path / "done"))
    assert result.exit_code == 1 and "--resume" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": 1,')
    result = invoke(
        "train", "--base", "x", "--data", str(bad), "--images", str(images), "--output", str(tmp_path / "r")
    )
    assert result.exit_code == 1 and "bad.json" in result.output
    # the fixture's DF-D answers ("No. This face image is ...") do not state a verdict balance_dfd can read
    result = invoke(*base, "--output", str(tmp_path / "balanced"), "--balance-dfd")
    assert result.exit_code == 1 and "rec0:dfd): cannot balance DF-D" in result.output
    result = invoke("merge", str(tmp_path), "--output", str(tmp_path / "m"))
    assert result.exit_code == 1 and "not a DFA-GPT run directory" in result.output


def test_train_with_a_dev_bench_reports_its_figures_and_a_bad_dev_bench_stops_it(tmp_path):
    from dfa_bench.tiny_models import build_tiny_llava
    from dfa_gpt.planted import build_planted_set

    base = build_tiny_llava(tmp_path / "base", initializer_range=0.2)
    planted = build_planted_set(tmp_path / "planted", per_category=2, heldout_per_category=2, size=30)
    common = ["train", "--base", str(base), "--data", str(planted["data"]), "--images", str(planted["images"]),
              "--no-bf16", "--no-gradient-checkpointing", "--workers", "0", "--batch-size", "4", "--cpu",
              "--lora-rank", "4", "--lora-alpha", "8"]  # fmt: skip
    result = invoke(*common, "--output", str(tmp_path / "run"), "--eval-bench", str(planted["dev"]),
                    "--eval-steps", "0", "--max-steps", "2", "--keep-best", "dfc_acc")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dev at step 2: dfd_auc" in result.output and "dev_curve.png" in result.output
    assert "at chance" in result.output  # 2 steps on 10 images
    result = invoke(*common, "--output", str(tmp_path / "run2"), "--eval-bench", str(tmp_path / "nothing"))
    assert result.exit_code == 1 and "nothing" in result.output
    result = invoke(*common, "--output", str(tmp_path / "run3"), "--keep-best", "loss")
    assert result.exit_code == 1 and "--keep-best" in result.output


def test_guard_exits_nonzero_when_the_model_does_not_learn_the_cue(tmp_path):
    from dfa_bench.tiny_models import build_tiny_llava

    base = build_tiny_llava(tmp_path / "base", image_size=32, patch_size=8, initializer_range=0.2)
    result = invoke("guard", "--base", str(base), "--output", str(tmp_path / "guard"), "--image-size", "32",
                    "--per-category", "4", "--epochs", "1", "--cpu")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "guard FAILED: held-out dfc_acc" in result.output and "(needs >= 0.9)" in result.output
    assert (tmp_path / "guard" / "run" / "dev_curve.json").is_file()
