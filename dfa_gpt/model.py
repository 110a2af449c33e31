"""The model side of DFA-GPT: a llava-hf LLaVA with LoRA on its language model and a trainable projector.

LoRA placement is by full module path under the language model. A suffix list (`q_proj`, ...) also
matches CLIP's attention layers in the vision tower, and peft's `all-linear` adds LoRA to the vision
tower and the projector too. The projector exists before `get_peft_model`, so peft freezes it unless it
is in `modules_to_save`: there it is trained as a full copy and saved with every checkpoint.
"""

from __future__ import annotations

import re
from typing import Any

from dfa_gpt.recipe import PROJECTOR, Recipe


def language_model_path(model: Any) -> str:
    """The module path of the language model's decoder (`model.language_model` in transformers 5's LLaVA)."""
    decoder = model.get_decoder()
    for name, module in model.named_modules():
        if module is decoder:
            return name
    raise ValueError(f"{type(model).__name__}: its decoder is not one of its modules")


def lora_target_regex(model: Any, layers: tuple[str, ...], last: int = 0) -> str:
    """A peft `target_modules` regex (peft full-matches it against module paths) for `layers` under the LM;
    `last` > 0: in its last `last` decoder layers only."""
    prefix = re.escape(language_model_path(model))
    names = "|".join(map(re.escape, layers))
    if not last:
        return rf"{prefix}\.(?:.*\.)?(?:{names})"
    total = model.config.get_text_config().num_hidden_layers
    if last > total:
        raise ValueError(f"LoRA on the last {last} layers: the language model has {total}")
    blocks = "|".join(str(i) for i in range(total - last, total))
    return rf"{prefix}\.(?:.*\.)?layers\.(?:{blocks})\.(?:.*\.)?(?:{names})"


def lora_config(model: Any, recipe: Recipe) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.lora_rank,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=lora_target_regex(model, recipe.lora_modules, recipe.lora_layers),
        modules_to_save=[PROJECTOR],
        bias="none",
        task_type="CAUSAL_LM",
    )


def apply_lora(model: Any, recipe: Recipe) -> Any:
    """`get_peft_model` with the recipe's LoRA and the projector in `modules_to_save`, checked."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config(model, recipe))
    if recipe.projector_lr == 0:
        # a projector that does not move needs no gradient: with LoRA on the last layers only, backward then
        # stops at the first of them (peft still saves the projector with the adapter, from modules_to_save)
        for name, param in peft_model.named_parameters():
            if f"{PROJECTOR}.modules_to_save." in name:
                param.requires_grad_(False)
    check_trainable(peft_model, projector=recipe.projector_lr != 0)
    keep_in_eval_mode(peft_model.get_base_model().model.vision_tower)
    return peft_model


def prepare_model(model: Any, recipe: Recipe) -> Any:
    """Stage 2 (finetune): LoRA + the projector, through peft. Stage 1 (align, LLaVA's pretraining): the
    projector alone, every other weight frozen, no LoRA."""
    if recipe.stage != "align":
        return apply_lora(model, recipe)
    for name, param in model.named_parameters():
        param.requires_grad_(f"{PROJECTOR}." in f"{name}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no {PROJECTOR} to align")
    keep_in_eval_mode(model.model.vision_tower)
    return model


def keep_in_eval_mode(module: Any) -> None:
    """The frozen vision tower runs in eval mode even while the Trainer calls `model.train()` every step:
    a tower with BatchNorm (a convolutional encoder) would otherwise switch to batch statistics and change
    its features, and dropout would perturb them."""

    def to_eval(mod: Any, args: Any) -> None:  # returns None: a pre-hook's return value would replace the inputs
        if mod.training:
            mod.eval()

    module.register_forward_pre_hook(to_eval)


def check_trainable(peft_model: Any, *, projector: bool = True) -> None:
    """Raise unless exactly the LM's LoRA weights and (`projector`) the projector copy are trainable."""
    lm = language_model_path(peft_model.get_base_model())
    wrong, lora, projectors = [], 0, 0
    for name, param in peft_model.named_parameters():
        if not param.requires_grad:
            continue
        if "lora_" in name and f".{lm}." in f".{name}":
            lora += 1
        elif f"{PROJECTOR}.modules_to_save." in name:
            projectors += 1
        else:
            wrong.append(name)
    if wrong:
        raise ValueError(f"trainable parameters outside the LM's LoRA and the projector: {', '.join(wrong[:5])}")
    if not lora or (projector and not projectors):
        raise ValueError(f"nothing to train: {lora} LoRA tensors, {projectors} projector tensors")


def load_base(base: str, recipe: Recipe, *, device_map: Any = None) -> Any:
    """The base LLaVA in the recipe's dtype and attention implementation (SDPA unless told otherwise).

    Through the auto class: llava-hf checkpoints load as LlavaForConditionalGeneration, and LLaVA-layout
    variants with another vision tower (FastVLM's timm encoder) load with the same module names."""
    import torch
    from transformers import AutoModelForImageTextToText

    from dfa_bench.adapters.pooled_vlm import register as register_pooled_vlm

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if recipe.bf16 else torch.float32}
    if recipe.attn_implementation:
        kwargs["attn_implementation"] = recipe.attn_implementation
    if device_map is not None:
        kwargs["device_map"] = device_map
    register_pooled_vlm()  # DFA-GPT-mini's pooled-token model type, if this is one
    model = AutoModelForImageTextToText.from_pretrained(base, **kwargs)
    model.config.use_cache = False  # training: no KV cache (and gradient checkpointing requires it off)
    return model


def trainable_summary(peft_model: Any) -> dict[str, int]:
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    return {"trainable_parameters": trainable, "total_parameters": total}
