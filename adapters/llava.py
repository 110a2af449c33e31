"""`dfa_llava`: LLaVA-1.5 (7B/13B) from llava-hf checkpoints or a local path, optionally with a LoRA.

    lmms-eval --model dfa_llava --model_args pretrained=llava-hf/llava-1.5-7b-hf,dtype=float16 ...
    lmms-eval --model dfa_llava --model_args pretrained=llava-hf/llava-1.5-13b-hf,lora=/ckpt/dfa-gpt-lora ...

This is also how DFA-GPT is evaluated: a LLaVA-1.5 base plus a rank-128 LoRA and a fine-tuned
multimodal projector. peft's `PeftModel.from_pretrained` loads both from the LoRA directory: the LoRA
weights, and the projector that training saved through `modules_to_save` (e.g.
`modules_to_save=["multi_modal_projector"]`), which replaces the base model's projector. The adapter's
module names must be those of transformers' `LlavaForConditionalGeneration` (an adapter trained on
a llava-hf model); one trained in the original LLaVA code base names its modules differently and must
be converted first: an adapter that leaves modules unfilled is refused (peft itself only warns, and
the run would quietly score the base model). With `merge_lora` (default true) the LoRA is folded into the base weights once at
load time, so generation runs at the base model's speed.

model_args: everything `dfa_hf` takes, plus lora (a peft adapter directory) and merge_lora.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

from loguru import logger

from dfa_bench.adapters.hf import DFAHF
from dfa_bench.chat_templates import VICUNA_CHAT_TEMPLATE
from dfa_bench.contract import as_bool


def lora_digest(lora: str) -> str | None:
    """sha256 over a peft adapter directory's weight files (None for a hub id)."""
    from dfa_bench.io import sha256_file

    files = sorted(Path(lora).glob("adapter_model*")) if Path(lora).is_dir() else []
    return hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest() if files else None


class DFALlava(DFAHF):
    """LLaVA-1.5 (any LLaVA-layout checkpoint) with an optional peft LoRA (DFA-GPT)."""

    name = "dfa_llava"

    def __init__(self, lora: str | None = None, merge_lora: bool | str = True, **kwargs: Any) -> None:
        # set before DFAHF.__init__, which calls load_model
        self.lora = str(lora) if lora else None
        self.merge_lora = as_bool(merge_lora)
        super().__init__(**kwargs)
        self.fingerprint["lora"] = self.lora
        if self.lora:
            # the path alone would serve a retrained adapter the old run's cached answers
            self.fingerprint["lora_sha256"] = lora_digest(self.lora)
            # merged and unmerged weights round differently in half precision: keep their answers apart
            self.fingerprint["merge_lora"] = self.merge_lora

    def load_model(self) -> tuple[Any, Any]:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from dfa_bench.adapters.pooled_vlm import register as register_pooled_vlm

        processor = self.load_processor(AutoProcessor)
        tokenizer = getattr(processor, "tokenizer", processor)
        if not getattr(processor, "chat_template", None) and not getattr(tokenizer, "chat_template", None):
            # older llava-hf exports and hand-made local checkpoints ship no template: use llava-hf 1.5's
            logger.info(f"{self.name}: {self.pretrained} has no chat template; using the LLaVA-1.5 Vicuna template")
            processor.chat_template = VICUNA_CHAT_TEMPLATE
        self.check_processor(processor)
        # the auto class: llava-hf checkpoints load as LlavaForConditionalGeneration, and other LLaVA-layout
        # classes (FastVLM, DFA-GPT-mini's base with a timm tower) as themselves
        register_pooled_vlm()  # DFA-GPT-mini's pooled-token model type, if this is one
        model = AutoModelForImageTextToText.from_pretrained(self.pretrained, **self._from_pretrained_kwargs())
        if self.lora:
            model = self.apply_lora(model)
        return model, processor

    def apply_lora(self, model: Any) -> Any:
        """The base model with the peft adapter in `self.lora` (LoRA weights + `modules_to_save`)."""
        from peft import PeftModel

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = PeftModel.from_pretrained(model, self.lora, is_trainable=False)
        missing = [str(w.message) for w in caught if "missing adapter keys" in str(w.message)]
        for w in caught:
            if str(w.message) not in missing:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if missing:
            # peft only warns, and the layers it could not fill keep their initial weights: the run
            # would score (nearly) the base model under the fine-tuned model's name
            raise ValueError(
                f"{self.name}: the LoRA in {self.lora} does not fit this model ({missing[0][:300]}...). "
                "Adapters trained in the original LLaVA code base name their modules differently; convert "
                "them to transformers' LlavaForConditionalGeneration names first."
            )
        if self.merge_lora:
            # merge_and_unload also swaps each modules_to_save wrapper for its trained copy (the projector)
            model = model.merge_and_unload()
        logger.info(f"{self.name}: LoRA {self.lora} loaded" + (" and merged" if self.merge_lora else ""))
        return model
