"""The projector's start: standardised on the training images, a stage-1 (align) projector, and the align stage."""

from __future__ import annotations

import json

import pytest
import torch
from dfa_gpt_fixtures import make_training_data
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

from dfa_bench.tiny_models import build_tiny_llava
from dfa_gpt.projector import PROJECTOR_FILE, load_projector, projector_inputs, projector_of, standardize_projector
from dfa_gpt.recipe import Recipe
from dfa_gpt.train import train

RECIPE = dict(
    bf16=False, max_steps=4, per_device_batch_size=4, save_steps=100, dataloader_workers=0, lora_rank=8,
    lora_alpha=16, learning_rate=1e-2, projector_lr=1e-2, gradient_checkpointing=False,
)  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("projector")
    base = build_tiny_llava(root / "base", initializer_range=0.2)
    data, images = make_training_data(root)
    return root, base, data, images


def _model(base):
    return AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32).eval()


def test_standardize_folds_the_features_statistics_into_the_projector(setup):
    _, base, _, _ = setup
    model = _model(base)
    torch.manual_seed(0)
    pixels = [torch.randn(4, 3, 30, 30) + 3.0 for _ in range(3)]  # features with a shared offset
    features = projector_inputs(model, pixels)
    assert features.shape == (3 * 4 * 25, 32)  # 25 patch tokens per image, 32 channels
    info = standardize_projector(model, features)
    embedding_std = float(model.get_input_embeddings().weight.std())
    assert info["embedding_std"] == pytest.approx(embedding_std)
    assert float(projector_of(model)(features).std()) == pytest.approx(embedding_std, rel=1e-4)
    assert info["image_token_std_after"] == pytest.approx(embedding_std, rel=1e-4)
    assert info["tokens"] == 300


def test_standardize_centres_each_channel(setup):
    _, base, _, _ = setup
    model = _model(base)
    torch.manual_seed(1)
    features = projector_inputs(model, [torch.randn(6, 3, 30, 30) * 2 + 1])
    first = projector_of(model).linear_1
    old_weight, old_bias = first.weight.detach().clone(), first.bias.detach().clone()
    standardize_projector(model, features)
    mean, std = features.mean(0), features.std(0, unbiased=False)
    expected = ((features - mean) / std) @ old_weight.T + old_bias
    assert torch.allclose(projector_of(model).linear_1(features), expected, atol=1e-4)


def test_align_stage_trains_the_projector_alone_and_stage_two_starts_from_it(setup, tmp_path):
    _, base, data, images = setup
    run = train(str(base), [data], images, tmp_path / "align", Recipe(**RECIPE, stage="align"), use_cpu=True)
    assert run["parameters"]["trainable_parameters"] == sum(p.numel() for p in projector_of(_model(base)).parameters())
    saved = load_file(str(tmp_path / "align" / PROJECTOR_FILE))
    assert set(saved) == {"linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"}
    assert not (tmp_path / "align" / "adapter_model.safetensors").exists()
    before = projector_of(_model(base)).state_dict()
    assert any(not torch.equal(saved[k], before[k]) for k in saved)  # it learned something
    assert json.loads((tmp_path / "align" / "dfa_gpt_run.json").read_text())["recipe"]["stage"] == "align"

    model = _model(base)
    load_projector(model, tmp_path / "align")
    assert all(torch.equal(projector_of(model).state_dict()[k], saved[k]) for k in saved)

    # stage 2 from the aligned projector: its first step starts from exactly those weights
    seen = {}

    class FirstStep(__import__("transformers").TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen.update({k: v.detach().clone() for k, v in model.named_parameters() if "modules_to_save" in k})

    finetune = Recipe(**RECIPE, projector=str(tmp_path / "align"))
    train(str(base), [data], images, tmp_path / "ft", finetune, callbacks=[FirstStep()], use_cpu=True)
    started = {k.split("modules_to_save.default.")[-1]: v for k, v in seen.items()}
    assert started and all(torch.equal(started[k], saved[k]) for k in saved)


def test_a_projector_that_does_not_fit_is_refused(setup, tmp_path):
    _, base, _, _ = setup
    from safetensors.torch import save_file

    save_file({"linear_1.weight": torch.zeros(3, 3)}, str(tmp_path / PROJECTOR_FILE))
    with pytest.raises(ValueError, match="do not fit"):
        load_projector(_model(base), tmp_path)
    with pytest.raises(FileNotFoundError, match="stage align"):
        load_projector(_model(base), tmp_path / "nothing")


def test_align_refuses_resume(setup, tmp_path):
    _, base, data, images = setup
    with pytest.raises(ValueError, match="align run"):
        train(str(base), [data], images, tmp_path / "a", Recipe(**RECIPE, stage="align"), resume=True, use_cpu=True)


def test_standardize_leaves_out_a_corrupt_image_that_training_then_reports(setup, tmp_path):
    _, base, _, _ = setup
    data, images = make_training_data(tmp_path)
    (images / "face_1.png").write_bytes(b"not a png")
    recipe = Recipe(**{**RECIPE, "max_steps": 2}, projector_init="standardize")
    run = train(str(base), [data], images, tmp_path / "run", recipe, use_cpu=True)
    assert run["projector"]["images"] == 6 and run["projector"]["tokens"] == 5 * 25  # 5 decodable images
    report = (tmp_path / "run" / "bad_samples.jsonl").read_text()
    assert "face_1.png" in report
