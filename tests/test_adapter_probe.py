"""The vision-only probe (Table I baselines): real EfficientNet-Lite0 weights, training, cache, CLI, adapter."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from dfa_bench.adapters.base import Query
from dfa_bench.adapters.probe import DFAProbe, Probe, dfc_response, dfd_response
from dfa_bench.adapters.probe_features import make_backbone, resolve_training_data
from dfa_bench.adapters.probe_training import train_probe
from dfa_bench.cli import app
from dfa_bench.instruct.synthetic import artifact_description, draw_face
from dfa_bench.io import write_jsonl
from dfa_bench.parsing import parse
from dfa_bench.schema import CATEGORIES, CATEGORY_NAMES, label_of
from dfa_bench.templates import question_items

PER_CATEGORY = 6
EPOCHS = 20  # 30 images are one batch per epoch; the paper's single epoch over ~100K images is thousands of steps


def _draw(path: Path, category: str, rng: random.Random) -> None:
    """A cartoon face with a visible mark per category, so a linear probe can separate the classes."""
    draw_face(path, rng, 64)
    image = Image.open(path).convert("RGB")
    draw = ImageDraw.Draw(image)
    if category == "face_swapping":
        draw.rectangle((16, 16, 48, 48), fill=(20, 40, 230))
    elif category == "face_reenactment":
        for y in range(6, 64, 12):
            draw.line((0, y, 63, y), fill=(0, 0, 0), width=4)
    elif category == "face_editing":
        draw.ellipse((8, 0, 56, 24), fill=(30, 220, 40))
    elif category == "entire_face_synthesis":
        noise = np.random.default_rng(rng.randint(0, 2**31)).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        image = Image.blend(image, Image.fromarray(noise), 0.7)
    image.save(path)


def _records(root: Path, prefix: str, seed: int, per_category: int = PER_CATEGORY) -> list[dict]:
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(per_category * len(CATEGORIES)):
        category = CATEGORIES[i % len(CATEGORIES)]
        image = f"images/{prefix}{i:03d}.png"
        _draw(root / image, category, rng)
        records.append({"record_id": f"{prefix}{i:03d}", "image": image, "label": label_of(category),
                        "category": category, "technique": "", "identity": f"id{i // 5}",
                        "artifact_description": artifact_description(rng) if category != "bona_fide" else ""})  # fmt: skip
    return records


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    """A build-directory layout: records/train.jsonl with image paths relative to the build directory."""
    root = tmp_path_factory.mktemp("probe-build")
    write_jsonl(root / "records" / "train.jsonl", _records(root, "tr", seed=0))
    return root


@pytest.fixture(scope="module")
def trained(build, tmp_path_factory) -> tuple[Path, Path, dict]:
    out = tmp_path_factory.mktemp("probe-head")
    summary = train_probe(build, out / "head", cache=out / "cache", epochs=EPOCHS, device="cpu")
    return out / "head", out / "cache", summary


def test_efficientnet_lite0_has_real_imagenet_weights_and_preprocessing():
    import torch
    from skimage import data

    backbone = make_backbone("efficientnet_lite0", "cpu")
    with torch.inference_mode():
        logits = backbone.model(backbone.pixels([Image.fromarray(data.chelsea())]))[0]
    probs = logits.softmax(0)
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] in range(281, 286), top5  # tabby / tiger cat / Persian / Siamese / Egyptian cat
    assert probs[281:286].sum() > 0.8  # wrong normalisation or random weights would not be this sure
    assert backbone.weights_sha256 in backbone.id or backbone.weights_sha256[:16] in backbone.id


def test_training_fits_separable_classes_and_records_what_it_used(trained, build):
    head, _, summary = trained
    meta = json.loads((head / "head.json").read_text())
    assert meta["feature_dim"] == 1280 and meta["backbone"] == "efficientnet_lite0"
    assert meta["heads"]["dfd"]["train_counts"] == {"bona_fide": PER_CATEGORY, "forgery": 4 * PER_CATEGORY}
    assert meta["heads"]["dfc"]["train_counts"] == dict.fromkeys(CATEGORIES, PER_CATEGORY)
    assert meta["heads"]["dfd"]["train_accuracy"] >= 0.9 and meta["heads"]["dfc"]["train_accuracy"] >= 0.9
    assert meta["epochs"] == EPOCHS and meta["seed"] == 0
    assert len(meta["train_data"]["records_sha256"]) == 64 and meta["train_data"]["n_used"] == 5 * PER_CATEGORY
    assert summary["run"]["extracted"] == 5 * PER_CATEGORY
    from safetensors.torch import load_file  # weights only: no pickle to trust

    state = load_file(head / "head.safetensors")
    assert state["dfd.weight"].shape == (2, 1280) and state["dfc.weight"].shape == (5, 1280)


def test_feature_cache_is_reused_and_training_is_deterministic(trained, build, tmp_path):
    head, cache, _ = trained
    again = train_probe(build, tmp_path / "head", cache=cache, epochs=EPOCHS, device="cpu")
    assert again["run"]["extracted"] == 0 and again["run"]["cached"] == 5 * PER_CATEGORY
    assert again["run"]["backbone_calls"] == 0  # the backbone never ran (nor loaded)
    assert again["weights_sha256"] == json.loads((head / "head.json").read_text())["weights_sha256"]


def test_adapter_answers_parse_back_to_its_predictions(trained, build, tmp_path):
    head, _, _ = trained
    adapter = DFAProbe.create_from_arg_string(
        f"head={head},device=cpu,response_cache={tmp_path / 'responses.jsonl'}", {"batch_size": 8}
    )
    records = [json.loads(line) for line in (build / "records" / "train.jsonl").read_text().splitlines()]
    items = [item for seed in (0, 1, 2) for r in records for item in question_items(r, seed, r["image"])]
    assert {i["polarity"] for i in items if i["task"] == "dfd"} == {"forged", "authentic"}
    images = {r["image"]: Image.open(build / r["image"]).convert("RGB") for r in records}
    queries = [Query(i["question_id"], i["task"], i["question"], [images[i["image"]]], i, {}) for i in items]
    answers = adapter.answer(queries)
    probe = adapter.probe
    features = probe.features([q.images[0] for q in queries])
    p_forgery, categories = probe.p_forgery(features), probe.categories(features)
    correct = {"dfd": [], "dfc": []}
    for item, answer, p, category in zip(items, answers, p_forgery, categories):
        assert answer.error is None
        if item["task"] == "ad":
            assert answer.response == "-" and answer.score is None
            continue
        parsed = parse(item, answer.response)
        if item["task"] == "dfd":
            assert 0.0 <= answer.score <= 1.0 and answer.score == pytest.approx(float(p))
            assert parsed == ("forgery" if p >= 0.5 else "bona_fide")
            correct["dfd"].append(parsed == item["label"])
        else:
            assert answer.score is None and parsed == category
            correct["dfc"].append(parsed == item["category"])
    assert np.mean(correct["dfd"]) >= 0.9 and np.mean(correct["dfc"]) >= 0.9


def test_response_wording_parses_for_every_polarity_and_option_order():
    for polarity in ("forged", "authentic"):
        for p, label in ((0.9, "forgery"), (0.1, "bona_fide"), (0.5, "forgery")):
            item = {"task": "dfd", "polarity": polarity}
            assert parse(item, dfd_response(p, polarity)) == label
    rng = random.Random(0)
    for _ in range(20):
        order = rng.sample(CATEGORIES, len(CATEGORIES))
        options = [{"letter": "ABCDE"[i], "category": c, "text": CATEGORY_NAMES[c]} for i, c in enumerate(order)]
        for category in CATEGORIES:
            assert parse({"task": "dfc", "options": options}, dfc_response(category, options)) == category


def test_data_paths_build_dir_build_records_and_plain_records(build, tmp_path):
    assert resolve_training_data(build) == (build / "records" / "train.jsonl", build)
    assert resolve_training_data(build / "records" / "train.jsonl") == (build / "records" / "train.jsonl", build)
    plain = tmp_path / "records.jsonl"
    plain.write_text("")
    assert resolve_training_data(plain) == (plain, tmp_path)
    with pytest.raises(ValueError, match="records/dev.jsonl"):
        resolve_training_data(build, split="dev")


def test_cli_probe_train(trained, build, tmp_path):
    _, cache, _ = trained
    result = CliRunner().invoke(app, ["probe", "train", "--data", str(build / "records" / "train.jsonl"), "--output",
                                      str(tmp_path / "head"), "--cache", str(cache), "--epochs", "3",
                                      "--device", "cpu", "--balanced"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dfd: train accuracy" in result.output and "dfc: train accuracy" in result.output
    assert "0 extracted, 30 from the cache" in result.output
    meta = json.loads((tmp_path / "head" / "head.json").read_text())
    assert meta["balanced"] is True and meta["epochs"] == 3


def test_cli_bad_training_image_is_named_or_skipped(trained, build, tmp_path):
    _, cache, _ = trained
    records = [json.loads(line) for line in (build / "records" / "train.jsonl").read_text().splitlines()]
    (tmp_path / "images").mkdir()
    for r in records:
        (tmp_path / r["image"]).write_bytes((build / r["image"]).read_bytes())
    (tmp_path / records[3]["image"]).write_bytes(b"not an image")
    write_jsonl(tmp_path / "records.jsonl", records)
    args = ["probe", "train", "--data", str(tmp_path / "records.jsonl"), "--cache", str(cache), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "h1")])
    assert result.exit_code == 2 and records[3]["image"] in result.output and "records.jsonl:4" in result.output
    result = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "h2"), "--skip-bad-images"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "h2" / "head.json").read_text())
    assert meta["train_data"]["n_used"] == len(records) - 1
    assert [s["record_id"] for s in meta["train_data"]["skipped"]] == [records[3]["record_id"]]


def _tiny_hf(kind: str, directory: Path) -> int:
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    torch.manual_seed(0)
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": 32, "patch_size": 8}  # fmt: skip
    if kind == "clip":
        CLIPVisionModel(CLIPVisionConfig(**common)).save_pretrained(directory)
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(directory)
    else:
        ViTModel(ViTConfig(**common), add_pooling_layer=False).save_pretrained(directory)
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    return common["hidden_size"]


@pytest.mark.parametrize("kind", ["clip", "vit"])
def test_hf_backbone_from_a_local_directory(kind, build, trained, tmp_path):
    dim = _tiny_hf(kind, tmp_path / kind)
    summary = train_probe(build, tmp_path / "head", backbone=f"hf:{tmp_path / kind}", epochs=2, device="cpu")
    assert summary["feature_dim"] == dim and summary["backbone"] == f"hf:{(tmp_path / kind).resolve()}"
    probe = Probe(tmp_path / "head", device="cpu")
    features = probe.features([Image.open(build / "images" / "tr000.png").convert("RGB")])
    assert features.shape == (1, dim) and 0.0 <= float(probe.p_forgery(features)[0]) <= 1.0
    with pytest.raises(ValueError, match="not the one this head was trained on"):
        Probe(trained[0], backbone=f"hf:{tmp_path / kind}", device="cpu")


def test_timm_backbone_from_a_local_checkpoint(build, tmp_path):
    timm = pytest.importorskip("timm")
    import torch

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False)  # with its classifier, as checkpoints come
    torch.save(model.state_dict(), tmp_path / "vit.pth")
    summary = train_probe(build, tmp_path / "head", backbone=f"timm:test_vit:{tmp_path / 'vit.pth'}", device="cpu")
    assert summary["feature_dim"] == model.num_features
    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="does not fit"):
        make_backbone(f"timm:test_vit:{tmp_path / 'resnet.pth'}", "cpu").features([Image.new("RGB", (32, 32))])


@pytest.mark.slow
def test_probe_through_lmms_eval(trained, tmp_path):
    from dfa_bench.bench import build_bench
    from dfa_bench.evaluate import run_eval
    from dfa_bench.instruct.synthetic import make_source

    head = trained[0]
    make_source(tmp_path / "src", 10, seed=2)
    build_bench(tmp_path / "src" / "records.jsonl", tmp_path / "src", tmp_path / "bench", seed=0)
    result = run_eval("dfa_probe", tmp_path / "bench", tmp_path / "out", model_args=f"head={head},device=cpu", limit=6)
    metrics = result.metrics
    assert {"acc", "acer"} <= set(metrics["dfd"]) and metrics["dfd"]["n"] == 6
    assert metrics["dfd"]["parse_failure_rate"] == 0 and metrics["dfc"]["parse_failure_rate"] == 0
    assert metrics["ad"]["rouge_l"] is not None
    predictions = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    dfd = [p for p in predictions if p["question_id"].endswith(":dfd")]
    assert len(dfd) == 6 and all(0.0 <= p["score"] <= 1.0 for p in dfd)  # P(forgery) carried for AUC/EER
    assert {p["response"] for p in predictions if p["question_id"].endswith(":ad")} == {"-"}
