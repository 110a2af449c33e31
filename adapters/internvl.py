"""`dfa_internvl`: InternVL checkpoints, transformers-native or through their own remote code.

Two ways in, chosen from the checkpoint's config.json (override with `remote_code=true|false`):

* Native (config `model_type` "internvl"): InternVL2 / 2.5 / 3 / 3.5 checkpoints converted to transformers'
  own classes, the "-hf" repositories (e.g. OpenGVLab/InternVL3-2B-hf, InternVL2_5-8B-MPO-hf). They load
  through `AutoModelForImageTextToText` + `InternVLProcessor` and run exactly like `dfa_hf`: chat template,
  left-padded batches, DF-D forgery probability from the first generated token's yes/no logits. The
  processor tiles each image InternVL's way (up to `max_num` 448 px tiles plus a thumbnail).
* Remote code (config `model_type` "internvl_chat"): the original releases that ship their own Python
  (InternVL-Chat-V1-1 / V1-2 / V1-5, Mini-InternVL, and the non-"-hf" InternVL2 / 2.5 / 3 repositories).
  They load with `AutoModel.from_pretrained(..., trust_remote_code=True)` and answer through the model's
  own `chat()` (or `batch_chat()` for a batch of single-image questions), with images preprocessed as in
  the InternVL model cards' `load_image`: ImageNet mean/std at the checkpoint's `force_image_size`
  (448), dynamic tiling when the config enables it. Loading runs the checkpoint's code, so this path
  needs an explicit `trust_remote_code=true` (without it the adapter stops and says so). Those
  `chat()` implementations hard-code `.cuda()`, so real checkpoints need a GPU on this path.

    lmms-eval --model dfa_internvl --model_args pretrained=OpenGVLab/InternVL3-2B-hf,dtype=bfloat16 ...
    lmms-eval --model dfa_internvl --model_args pretrained=/models/InternVL-Chat-V1-5,dtype=bfloat16 ...

model_args: those of `dfa_hf` (pretrained, dtype, device / device_map, attn_implementation, max_new_tokens,
system_prompt, dfd_probability, ...), plus remote_code (default: from config.json), max_num (most tiles
per image; default: the checkpoint's) and dynamic (tile at all; default: the checkpoint's).
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger

from dfa_bench.adapters.hf import DFAHF, truncate_at_stops
from dfa_bench.contract import Answer, Query, as_bool

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REMOTE_MODEL_TYPES = ("internvl_chat",)
# The named image tokens InternVLProcessor reads off its tokenizer; some converted checkpoints register
# the tokens but not the names, and the processor cannot be built without them.
INTERNVL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}


# ------------------------------------------------------------------------------------ checkpoint


def read_checkpoint_config(pretrained: str) -> dict:
    """The checkpoint's config.json as a dict, with an error that names the problem when there is none."""
    local = Path(pretrained).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(f"dfa_internvl: pretrained={pretrained!r} is a directory without a config.json")
        return json.loads((local / "config.json").read_text())
    # A hub id is "name" or "org/name"; anything else that does not exist here is a mistyped local path,
    # and asking the hub about it would only turn "no such directory" into a confusing network error.
    if local.exists() or os.path.isabs(pretrained) or pretrained.startswith((".", "~")) or pretrained.count("/") > 1:
        raise FileNotFoundError(f"dfa_internvl: pretrained={pretrained!r} is not a checkpoint directory")
    from transformers.utils import cached_file

    try:
        path = cached_file(pretrained, "config.json")
    except Exception as exc:
        raise FileNotFoundError(
            f"dfa_internvl: pretrained={pretrained!r} is neither a local checkpoint nor a reachable hub model: {exc}"
        ) from exc
    return json.loads(Path(path).read_text())


def uses_remote_code(config: dict) -> bool:
    """True for the original InternVL releases, whose config names their own code (model_type internvl_chat)."""
    return config.get("model_type") in REMOTE_MODEL_TYPES


# ------------------------------------------------------------------------------------ remote-code preprocessing


def find_closest_aspect_ratio(
    aspect_ratio: float, target_ratios: list[tuple[int, int]], width: int, height: int, image_size: int
) -> tuple[int, int]:
    """The tile grid (columns, rows) whose shape is nearest the image's, as in the InternVL model cards."""
    best_ratio_diff = float("inf")
    best_ratio = (1, 1)
    area = width * height
    for ratio in target_ratios:
        ratio_diff = abs(aspect_ratio - ratio[0] / ratio[1])
        if ratio_diff < best_ratio_diff:
            best_ratio_diff = ratio_diff
            best_ratio = ratio
        elif ratio_diff == best_ratio_diff and area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
            best_ratio = ratio  # a tie goes to more tiles while the image is big enough to fill them
    return best_ratio


def dynamic_preprocess(
    image: Any, min_num: int = 1, max_num: int = 12, image_size: int = 448, use_thumbnail: bool = False
) -> list:
    """InternVL's dynamic tiling: resize to the best grid of image_size tiles, crop them, add a thumbnail."""
    orig_width, orig_height = image.size
    # The same set-then-sort as the model cards, so equal-area grids come in the same order and ties
    # between them resolve to the same grid.
    target_ratios = {
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_num <= i * j <= max_num
    }
    target_ratios = sorted(target_ratios, key=lambda x: x[0] * x[1])
    columns, rows = find_closest_aspect_ratio(
        orig_width / orig_height, target_ratios, orig_width, orig_height, image_size
    )
    resized = image.resize((image_size * columns, image_size * rows))
    tiles = []
    for i in range(columns * rows):
        left, top = (i % columns) * image_size, (i // columns) * image_size
        tiles.append(resized.crop((left, top, left + image_size, top + image_size)))
    if use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((image_size, image_size)))
    return tiles


def to_tensor(image: Any, image_size: int) -> torch.Tensor:
    """One tile as the model cards' `build_transform` makes it: RGB, bicubic resize, ImageNet-normalised."""
    from PIL import Image

    image = image.convert("RGB") if image.mode != "RGB" else image
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_image(
    image: Any,
    image_size: int = 448,
    max_num: int = 12,
    min_num: int = 1,
    dynamic: bool = True,
    use_thumbnail: bool = True,
) -> torch.Tensor:
    """Pixel values [tiles, 3, image_size, image_size] for one PIL image, as the model cards' `load_image`."""
    image = image.convert("RGB")
    tiles = dynamic_preprocess(image, min_num, max_num, image_size, use_thumbnail) if dynamic else [image]
    return torch.stack([to_tensor(tile, image_size) for tile in tiles])


# ------------------------------------------------------------------------------------ adapter


class DFAInternVL(DFAHF):
    """InternVL, native (a `dfa_hf` with InternVL's tiling options) or through the checkpoint's remote code."""

    name = "dfa_internvl"

    def __init__(
        self,
        pretrained: str | None = None,
        remote_code: bool | str | None = None,
        max_num: int | str | None = None,
        dynamic: bool | str | None = None,
        **kwargs: Any,
    ) -> None:
        if not pretrained:
            raise ValueError(f"{self.name}: model_args must name pretrained=<checkpoint path or hub id>")
        self.checkpoint_config = read_checkpoint_config(str(pretrained))
        unset = (None, "")
        self.remote_code = uses_remote_code(self.checkpoint_config) if remote_code in unset else as_bool(remote_code)
        self.max_num = int(max_num) if max_num not in unset else None
        self.dynamic = as_bool(dynamic) if dynamic not in unset else None
        model_type = self.checkpoint_config.get("model_type")
        if model_type not in ("internvl", *REMOTE_MODEL_TYPES):
            logger.warning(
                f"{self.name}: {pretrained} is a {model_type!r} checkpoint, not InternVL; loading it as dfa_hf would"
            )
        if self.remote_code and not as_bool(kwargs.get("trust_remote_code", False)):
            # running a checkpoint's own Python is the user's decision, never ours
            raise ValueError(
                f"{self.name}: {pretrained} ships its own model code (config model_type {model_type!r}); "
                "pass trust_remote_code=true if you trust it"
            )
        super().__init__(pretrained=pretrained, **kwargs)
        if self.remote_code:
            # chat()/batch_chat() return decoded strings only, never logits, and each InternVL release
            # builds its prompt with its own conversation template; re-deriving the first-step yes/no
            # logits would mean re-implementing every release's template, so this path gives no score.
            self.dfd_probability = False
        self.fingerprint.update(
            adapter=self.name,
            remote_code=self.remote_code,
            max_num=self.max_num,
            dynamic=self.dynamic,
            dfd_probability=self.dfd_probability,
        )

    # -------------------------------------------------------------------------------- loading

    def load_model(self) -> tuple[Any, Any]:
        """(model, processor) on the native path; (model, tokenizer) on the remote-code path."""
        if self.remote_code:
            return self._load_remote()
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(self.pretrained, trust_remote_code=self.trust_remote_code)
        except AttributeError as exc:
            if not any(name in str(exc) for name in INTERNVL_TOKENS):
                raise
            processor = AutoProcessor.from_pretrained(
                self.pretrained, trust_remote_code=self.trust_remote_code, extra_special_tokens=dict(INTERNVL_TOKENS)
            )
        # Processor-level defaults (the lowest priority in `_merge_kwargs`), so a per-call value still wins.
        images_kwargs = dict(getattr(processor, "images_kwargs", {}) or {})
        if self.dynamic is not None:
            images_kwargs["crop_to_patches"] = self.dynamic
        if self.max_num is not None:
            images_kwargs["max_patches"] = self.max_num
        processor.images_kwargs = images_kwargs
        self.check_processor(processor)
        model = AutoModelForImageTextToText.from_pretrained(self.pretrained, **self._from_pretrained_kwargs())
        return model, processor

    def _load_remote(self) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer

        kwargs = self._from_pretrained_kwargs()
        kwargs.pop("attn_implementation", None)  # the remote modules choose their own kernels (use_flash_attn)
        model = AutoModel.from_pretrained(self.pretrained, **kwargs)
        if not callable(getattr(model, "chat", None)):
            raise ValueError(
                f"{self.name}: {self.pretrained} loaded as {type(model).__name__}, which has no chat(); "
                "remote_code=true is for InternVL releases with their own code (model_type internvl_chat)"
            )
        # use_fast=False as in the model cards: the InternLM2 tokenizers are slow-only (sentencepiece)
        tokenizer = AutoTokenizer.from_pretrained(self.pretrained, trust_remote_code=True, use_fast=False)
        if self.system_prompt and hasattr(model, "system_message"):
            model.system_message = self.system_prompt  # chat() puts it in the template's system turn
        return model, tokenizer

    def _eos_ids(self) -> list[int]:
        if self.remote_code and not hasattr(self.model, "generation_config"):
            # InternVLChatModel is a bare PreTrainedModel (its language model generates), and transformers 5
            # gives generation_config only to GenerationMixin models
            return [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        return super()._eos_ids()

    def _template_has_system(self) -> bool:
        # The -hf template writes every turn as "<|im_start|>{role}", so a system turn renders as the
        # original InternVL chat's system message did, though the word "system" is not in it.
        template = str(getattr(self.processor, "chat_template", None) or "")
        return super()._template_has_system() or "message['role']" in template

    # -------------------------------------------------------------------------------- remote-code answering

    def remote_pixel_values(self, images: list) -> tuple[torch.Tensor | None, list[int]]:
        """All tiles of a query's images [tiles, 3, s, s] and the tile count of each image."""
        if not images:
            return None, []
        config = self.checkpoint_config
        image_size = int(config.get("force_image_size") or (config.get("vision_config") or {}).get("image_size") or 448)
        dynamic = self.dynamic if self.dynamic is not None else bool(config.get("dynamic_image_size", False))
        max_num = self.max_num or int(config.get("max_dynamic_patch") or 12)
        min_num = int(config.get("min_dynamic_patch") or 1)
        use_thumbnail = bool(config.get("use_thumbnail", True))
        per_image = [load_image(im, image_size, max_num, min_num, dynamic, use_thumbnail) for im in images]
        # the first parameter is the vision tower's, where chat() sends the pixels first
        device = next(self.model.parameters()).device
        pixels = torch.cat(per_image).to(device, dtype=self.model.dtype)
        return pixels, [len(p) for p in per_image]

    def remote_generation_config(self, gen_kwargs: dict) -> dict:
        """The `generation_config` dict chat()/batch_chat() pass on to `generate`."""
        config = self.decoding(gen_kwargs)
        if self.tokenizer.pad_token_id is not None:
            config["pad_token_id"] = self.tokenizer.pad_token_id
        return config

    def remote_question(self, query: Query) -> str:
        text = query.prompt
        if self.system_prompt and not hasattr(self.model, "system_message"):
            text = f"{self.system_prompt}\n{text}"  # no system turn to put it in
        if len(query.images) > 1:  # the model cards' multi-image form: one numbered <image> per image
            text = "".join(f"Image-{i + 1}: <image>\n" for i in range(len(query.images))) + text
        return text

    def answer(self, queries: list[Query]) -> list[Answer]:
        if not self.remote_code:
            return super().answer(queries)
        gen_kwargs = dict(queries[0].gen_kwargs)  # the base class batches by identical settings
        until = gen_kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        config = self.remote_generation_config(gen_kwargs)
        inputs = [self.remote_pixel_values(q.images) for q in queries]
        questions = [self.remote_question(q) for q in queries]
        with torch.inference_mode():
            # batch_chat takes one image per question (its num_patches_list is per question)
            if len(queries) > 1 and hasattr(self.model, "batch_chat") and all(len(q.images) == 1 for q in queries):
                responses = self.model.batch_chat(
                    self.tokenizer,
                    pixel_values=torch.cat([pixels for pixels, _ in inputs]),
                    questions=questions,
                    num_patches_list=[counts[0] for _, counts in inputs],
                    generation_config=dict(config),  # chat()/batch_chat() write eos_token_id into it
                )
            else:
                responses = [self._chat(pixels, counts, question, config) for (pixels, counts), question in
                             zip(inputs, questions)]  # fmt: skip
        # chat() reports no token counts, so usage stays empty rather than guessed
        return [Answer(truncate_at_stops(str(r), until).strip()) for r in responses]

    def _chat(self, pixels: torch.Tensor | None, counts: list[int], question: str, config: dict) -> str:
        kwargs: dict[str, Any] = {}
        if len(counts) > 1:
            if "num_patches_list" not in inspect.signature(self.model.chat).parameters:
                raise ValueError(f"{self.name}: this checkpoint's chat() takes one image per question")
            kwargs["num_patches_list"] = counts
        return self.model.chat(self.tokenizer, pixels, question, dict(config), **kwargs)
