"""Stage 1 in closed form: a linear probe of the image tokens written into the projector (dfa_gpt.probe_projector)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from dfa_bench.schema import CATEGORIES
from dfa_bench.tiny_models import build_tiny_llava
from dfa_gpt.planted import build_planted_set
from dfa_gpt.probe_projector import (
    PROBE_FILE,
    build_probe_projector,
    probe_directions,
    word_readout,
    write_probe_into_projector,
)
from dfa_gpt.projector import load_projector, projector_inputs, projector_of


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("probe") / "base", initializer_range=0.2)


def _model(base):
    return AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32).eval()


def test_each_direction_carries_its_row_exactly_through_the_gelu(base):
    model = _model(base)
    projector = projector_of(model)
    torch.manual_seed(0)
    weight, bias = torch.randn(3, projector.linear_1.in_features), torch.randn(3)
    info = write_probe_into_projector(model, weight, bias, scale=2.0, seed=1)
    with torch.no_grad():  # only the probe's units, read out: GELU(a) - GELU(-a) = a
        projector.linear_2.weight[:, 6:] = 0
        projector.linear_2.bias.zero_()
        x = torch.randn(50, projector.linear_1.in_features) * 3
        out = projector(x)
    directions = projector.linear_2.weight[:, 0:6:2].detach()
    assert torch.allclose(directions.T @ directions, torch.eye(3) * info["direction_norm"] ** 2, atol=1e-4)
    read = out @ directions / info["direction_norm"] ** 2
    assert torch.allclose(read, x @ weight.T + bias, atol=1e-4)
    assert info["direction_norm"] == pytest.approx(2.0 * info["embedding_norm"])


def test_directions_are_centred_scaled_and_separate_the_classes():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = torch.from_numpy(rng.normal(size=(60, 4, 8)).astype(np.float32))
    features[np.arange(60), :, labels] += 3  # channel c says class c
    weight, bias, figures = probe_directions(features, {"cls": (labels, 3), "two": (labels > 0, 2)}, epochs=20)
    assert weight.shape == (4, 8)  # 3 class logits + 1 for the 2-way head
    pooled = features.mean(1) @ weight.T + bias
    assert torch.allclose(pooled.mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(pooled.std(0), torch.ones(4), atol=1e-4)
    assert figures["cls_train_accuracy"] >= 0.9 and figures["two_train_accuracy"] >= 0.9
    assert (pooled[:, :3].argmax(1).numpy() == labels).mean() >= 0.9


def test_built_projector_reads_the_planted_cue_and_loads_into_stage_two(base, tmp_path):
    planted = build_planted_set(tmp_path / "planted", per_category=6, heldout_per_category=1, size=30)
    out = tmp_path / "p"
    summary = build_probe_projector(str(base), tmp_path / "planted", out, epochs=30)
    assert summary["images"] == 6 * len(CATEGORIES) and summary["directions"] == 1 + len(CATEGORIES)
    assert summary["category_train_accuracy"] >= 0.9  # a colour in two corners: linear in any tower's tokens
    assert json.loads((out / PROBE_FILE).read_text())["category_train_accuracy"] == summary["category_train_accuracy"]

    model = _model(base)
    load_projector(model, out)  # what `dfa-gpt train --projector OUT` does
    records = [json.loads(line) for line in (tmp_path / "planted/records/train.jsonl").read_text().splitlines()]
    processor = AutoProcessor.from_pretrained(base).image_processor
    pixels = processor(images=[Image.open(planted["images"] / r["image"]) for r in records], return_tensors="pt")
    tokens = projector_inputs(model, [pixels["pixel_values"]])
    with torch.no_grad():
        mean_token = projector_of(model)(tokens).reshape(len(records), -1, model.config.text_config.hidden_size).mean(1)
    directions = projector_of(model).linear_2.weight[:, 2:14:2].detach()  # the category's six, after DF-D's
    read = mean_token @ directions
    truth = np.array([CATEGORIES.index(r["category"]) for r in records])
    assert (read.argmax(1).numpy() == truth).mean() >= 0.9


def test_word_readout_writes_each_units_word_embedding(base):
    model = _model(base)
    projector = projector_of(model)
    tokenizer = AutoProcessor.from_pretrained(base).tokenizer
    vectors = word_readout(model, tokenizer, [("forged", "bona fide"), ("swapping", None)])
    embeddings = model.get_input_embeddings().weight.detach()
    ids = tokenizer(" bona fide", add_special_tokens=False)["input_ids"]
    assert torch.allclose(vectors[0, 1], embeddings[ids].mean(0))
    assert torch.equal(vectors[1, 1], torch.zeros(embeddings.shape[1]))  # None: the -a unit writes nothing

    torch.manual_seed(0)
    weight, bias = torch.randn(2, projector.linear_1.in_features), torch.randn(2)
    info = write_probe_into_projector(model, weight, bias, scale=1.5, rest=0.0, readout=vectors)
    x = torch.randn(40, projector.linear_1.in_features)
    with torch.no_grad():
        out = projector(x)
    a = x @ weight.T + bias
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=1e-12) * info["direction_norm"]
    gelu = torch.nn.functional.gelu
    expected = gelu(a[:, :1]) * unit[0, 0] + gelu(-a[:, :1]) * unit[0, 1] + gelu(a[:, 1:]) * unit[1, 0]
    assert torch.allclose(out, expected, atol=1e-4)  # rest 0: the probe's words alone
    with pytest.raises(ValueError, match="readout must be"):
        write_probe_into_projector(model, weight, bias, readout=vectors[:1])


def test_word_readout_keeps_the_tokens_that_tell_the_names_apart(base):
    model = _model(base)
    tokenizer = AutoProcessor.from_pretrained(base).tokenizer
    vectors = word_readout(model, tokenizer, [("Face swapping", None), ("Face editing", None), ("Face", None)])
    embeddings = model.get_input_embeddings().weight.detach()

    def ids(text):
        return tokenizer(" " + text, add_special_tokens=False)["input_ids"]

    others = set(ids("Face editing")) | set(ids("Face"))
    swapping = [i for i in ids("Face swapping") if i not in others]
    assert swapping and torch.allclose(vectors[0, 0], embeddings[swapping].mean(0))
    assert torch.allclose(vectors[2, 0], embeddings[ids("Face")].mean(0))  # nothing of its own: all of it


def test_cli_names_a_bad_readout_and_a_missing_build(base, tmp_path):
    from typer.testing import CliRunner

    from dfa_gpt.cli import app

    argv = [
        "probe-projector",
        "--base",
        str(base),
        "--data",
        str(tmp_path / "nowhere"),
        "--output",
        str(tmp_path / "p"),
    ]
    bad = CliRunner().invoke(app, [*argv, "--readout", "letters"])
    assert bad.exit_code == 1 and "readout 'letters'" in bad.output
    missing = CliRunner().invoke(app, argv)
    assert missing.exit_code == 1 and "nowhere" in missing.output
    assert not (tmp_path / "p").exists()
