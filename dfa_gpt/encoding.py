"""Token ids and labels for one conversation: loss on the assistant's tokens only.

The conversation is rendered once with the processor's own chat template, the text the model sees at
inference (`dfa_llava` renders the same template). Each assistant turn's character span is where the
rendering of `messages[:i + 1]` extends that of `messages[:i]` with the generation prompt: the answer
and the template's end-of-turn text (`</s>`, `<|im_end|>`), so the model learns to stop. Tokens inside
a span keep their ids as labels; everything else (system prompt, user turns, image tokens, role
markers, padding) is -100.

A tokenization mismatch is a sample whose spans do not fall on token boundaries, or whose template does
not render turn by turn as a prefix of the whole. LLaVA masks such a sample entirely and trains on loss
0 without saying so; here it raises `TokenizationMismatch` and the caller counts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100


class TokenizationMismatch(ValueError):
    """The chat template and the tokenizer disagree on this sample: its labels cannot be trusted."""


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool

    def __len__(self) -> int:
        return len(self.input_ids)


def image_token_count(processor: Any) -> int:
    """How many image tokens the processor expands one image into (fixed for LLaVA-1.5's resize + crop)."""
    from PIL import Image

    size = getattr(processor.image_processor, "crop_size", None) or processor.image_processor.size
    height = getattr(size, "height", None) or size.get("height") or size.get("shortest_edge")
    width = getattr(size, "width", None) or size.get("width") or height
    batch = processor(text=processor.image_token, images=Image.new("RGB", (width, height)), return_tensors="pt")
    return int((batch["input_ids"][0] == image_token_id(processor)).sum())


def image_token_id(processor: Any) -> int:
    token_id = getattr(processor, "image_token_id", None)
    return int(token_id) if token_id is not None else processor.tokenizer.convert_tokens_to_ids(processor.image_token)


def render(processor: Any, messages: list[dict], *, generation_prompt: bool) -> str:
    renderer = processor if getattr(processor, "chat_template", None) else processor.tokenizer
    return renderer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(processor: Any, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character span of each assistant turn."""
    full = render(processor, messages, generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(processor, messages[:i], generation_prompt=True)
        upto = render(processor, messages[: i + 1], generation_prompt=False)
        if not (upto.startswith(prompt) and full.startswith(upto)) or len(upto) == len(prompt):
            raise TokenizationMismatch(f"the chat template does not render turn {i} as a prefix of the conversation")
        spans.append((len(prompt), len(upto)))
    return full, spans


def encode(
    processor: Any, messages: list[dict], *, image_tokens: int, max_length: int, image_token: str | None = None
) -> Encoded:
    """input_ids and labels of one conversation with one image, truncated to `max_length` tokens."""
    tokenizer = processor.tokenizer
    image_token = image_token or processor.image_token
    text, spans = assistant_spans(processor, messages)
    # expand the image placeholder the way the processor does, then shift the spans after it
    at = text.find(image_token)
    if at < 0 or text.count(image_token) != 1:
        raise TokenizationMismatch(f"the rendered prompt holds {text.count(image_token)} image tokens, not 1")
    grow = len(image_token) * (image_tokens - 1)
    text = text[:at] + image_token * image_tokens + text[at + len(image_token) :]
    spans = [(a + grow, b + grow) if a > at else (a, b) for a, b in spans]
    encoding = tokenizer(text, return_offsets_mapping=True)
    ids, offsets = list(encoding["input_ids"]), encoding["offset_mapping"]
    image_id = image_token_id(processor)
    if sum(1 for t in ids if t == image_id) != image_tokens:
        raise TokenizationMismatch("the tokenizer does not keep the image token whole")
    labels = [IGNORE_INDEX] * len(ids)
    for a, b in spans:
        inside = 0
        for j, (start, end) in enumerate(offsets):
            if end <= start:  # special tokens added by the tokenizer (BOS) cover no text
                continue
            if start < a < end or start < b < end:
                raise TokenizationMismatch(f"a token straddles the edge of the assistant turn at characters {a}-{b}")
            if a <= start and end <= b:
                labels[j] = ids[j]
                inside += 1
        if not inside:
            raise TokenizationMismatch(f"the assistant turn at characters {a}-{b} has no tokens")
    truncated = len(ids) > max_length
    if truncated:
        last_image = max(j for j, t in enumerate(ids) if t == image_id)
        if last_image >= max_length:
            raise ValueError(f"longer than model_max_length={max_length} before the image ends")
        ids, labels = ids[:max_length], labels[:max_length]
        if all(label == IGNORE_INDEX for label in labels):
            raise ValueError(f"no answer token within model_max_length={max_length}")
    return Encoded(ids, labels, truncated)
