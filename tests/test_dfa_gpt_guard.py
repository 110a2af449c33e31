"""The learnability guard: a planted-cue set that any classifier separates; DFA-GPT's recipe passes it (held-out
DF-C ACC >= 0.90, DF-D AUC >= 0.95) on DFA-GPT-mini's architecture and on LLaVA-1.5's (a CLIP tower), trained
through `dfa-gpt guard` as a user runs it; and a model blind to its image fails it.

The two passing runs take about 13 minutes each on 2 CPU cores (stage 1: 200 steps of the projector alone;
stage 2: 120 steps of LoRA and projector); docs/dfa_gpt.md ("Learnability") has their curves and the runs
that did not pass.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dfa_bench.imaging import load_rgb
from dfa_bench.io import iter_jsonl
from dfa_bench.tiny_models import build_tiny_llava
from dfa_gpt.guard import THRESHOLDS, run_guard
from dfa_gpt.planted import COLOURS, build_planted_set
from dfa_gpt.recipe import Recipe

RECIPE = dict(
    bf16=False, epochs=2, per_device_batch_size=8, save_steps=10_000, dataloader_workers=0, lora_rank=8,
    lora_alpha=16, learning_rate=3e-3, projector_lr=3e-3, gradient_checkpointing=False, eval_steps=0,
)  # fmt: skip


def test_the_planted_cue_decides_the_category_for_any_classifier(tmp_path):
    """EfficientNet-Lite0 features (DFA-GPT-mini's tower, the probe's backbone) and a logistic regression
    separate the held-out split perfectly: the set asks nothing a model reading its image cannot answer."""
    import timm
    from sklearn.linear_model import LogisticRegression

    from dfa_bench.adapters.probe_features import efficientnet_lite0_weights
    from dfa_gpt.mini_base import LITE_MEAN, LITE_STD, TIMM_ARCH, convert_efficientnet_lite0

    paths = build_planted_set(tmp_path, per_category=8, heldout_per_category=4, size=64)
    tower = timm.create_model(TIMM_ARCH, pretrained=False, num_classes=0).eval()
    state = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    tower.load_state_dict(convert_efficientnet_lite0(state, tower.state_dict()))
    mean_px, std_px = torch.tensor(LITE_MEAN).view(3, 1, 1), torch.tensor(LITE_STD).view(3, 1, 1)

    def features(split):  # the whole 64 px image, as DFA-GPT-mini's processor gives it: 2 x 2 tokens
        rows = [r for _, r in iter_jsonl(tmp_path / "records" / f"{split}.jsonl")]
        pixels = torch.stack([
            (torch.from_numpy(np.asarray(load_rgb(tmp_path / r["image"]))).permute(2, 0, 1) / 255 - mean_px) / std_px
            for r in rows
        ])  # fmt: skip
        with torch.no_grad():
            return tower.forward_features(pixels).flatten(1).numpy(), [r["category"] for r in rows]

    train_x, train_y = features("train")
    dev_x, dev_y = features("dev")
    mean, std = train_x.mean(0), train_x.std(0)
    std = np.where(std > 1e-6, std, 1.0)  # dead ReLU6 channels stay at 0 (as the probe does)
    classifier = LogisticRegression(max_iter=2000).fit((train_x - mean) / std, train_y)
    assert classifier.score((dev_x - mean) / std, dev_y) == 1.0
    assert set(dev_y) == set(COLOURS)
    assert paths["dev"].joinpath("manifest.json").is_file() and paths["captions"].is_file()


@pytest.mark.parametrize("tower", ["efficientnet-lite0", "clip-random"])
def test_dfa_gpt_mini_passes_the_guard(tmp_path, tower):
    from typer.testing import CliRunner

    from dfa_gpt.cli import app
    from dfa_gpt.mini_base import build_mini_base

    base = build_mini_base(tmp_path / "base", image_size=64, tower=tower)
    result = CliRunner().invoke(app, ["guard", "--base", str(base), "--output", str(tmp_path / "guard"), "--cpu"])
    assert result.exit_code == 0, result.output
    assert "guard PASSED" in result.output
    run = json.loads((tmp_path / "guard" / "run" / "dfa_gpt_run.json").read_text())
    final = run["dev"]["final"]
    assert final["dfc_acc"] >= THRESHOLDS["dfc_acc"] and final["dfd_auc"] >= THRESHOLDS["dfd_auc"]
    assert final["dfc_n"] == 80 and final["dfd_n"] == 80  # the whole held-out split: 16 images per category
    assert run["dev"]["at_chance"] == [] and not final["dfd_constant"]
    # stage 2 started from stage 1's projector, which it loaded and kept as it was
    assert run["projector"]["loaded"] == str(tmp_path / "guard" / "align") and run["projector"]["init"] == "base"


def test_the_guard_fails_a_model_blind_to_its_image(tmp_path):
    base = build_tiny_llava(tmp_path / "base", image_size=32, patch_size=8, initializer_range=0.2)
    result = run_guard(str(base), tmp_path / "guard", Recipe(**RECIPE), per_category=4, heldout_per_category=4,
                       image_size=32, blind=True, use_cpu=True)  # fmt: skip
    assert not result.passed
    assert result.figures["dfc_acc"] < THRESHOLDS["dfc_acc"] and result.figures["dfd_auc"] < THRESHOLDS["dfd_auc"]
    # blind from the first step, the run says its figures are at chance
    assert result.run["dev"]["at_chance"] == ["DF-D AUC", "DF-C ACC"]
    assert "FAILED" in result.describe()
