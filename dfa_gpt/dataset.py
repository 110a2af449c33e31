"""The training set and its collator.

Conversations are tokenized once, up front (text only, cheap): that gives exact lengths for the
length-grouped sampler, and counts tokenization mismatches before a single step runs. Images are
decoded lazily, one sample at a time; one that fails to decode is reported and replaced by the next
valid sample, so the batch keeps its size and the epoch goes on. Padding is dynamic: each batch is
padded to its own longest sample, never to `model_max_length`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from loguru import logger

from dfa_bench.imaging import load_rgb
from dfa_gpt.encoding import IGNORE_INDEX, Encoded, TokenizationMismatch, encode, image_token_count
from dfa_gpt.entries import BadSampleReport, Entry

# abilities whose reference answers come from a few templates, so where one parts from another is what the image
# (and the question) decides; AD and FC answers are free text, every token of them differs
DECISION_ABILITIES = ("dfd", "dfc")


def decision_positions(encoded: list[Encoded], abilities: list[str]) -> list[tuple[int, ...]]:
    """Per sample, the positions of its first answer's tokens at which it parts from another reference answer of
    its ability: DF-D "This face image is | forged / a bona fide ..." (the verdict) and "so the answer is | yes /
    no" (the polarity); DF-C the tokens of the category name that tell it from the other names. These carry the
    decision, two tokens of a DF-D answer; the rest is predictable from them. Other abilities: none."""

    def first_answer(e: Encoded) -> tuple[int, tuple[int, ...]]:
        start = next((i for i, label in enumerate(e.labels) if label != IGNORE_INDEX), len(e.labels))
        end = next((i for i in range(start, len(e.labels)) if e.labels[i] == IGNORE_INDEX), len(e.labels))
        return start, tuple(e.input_ids[start:end])

    answers = [first_answer(e) for e in encoded]
    distinct: dict[str, set[tuple[int, ...]]] = {}
    for (_, tokens), ability in zip(answers, abilities):
        if ability in DECISION_ABILITIES:
            distinct.setdefault(ability, set()).add(tokens)
    out = []
    for (start, tokens), ability in zip(answers, abilities):
        parts = set()
        for other in distinct.get(ability, ()):
            shared = next((k for k, (a, b) in enumerate(zip(tokens, other)) if a != b), min(len(tokens), len(other)))
            if other != tokens and shared < len(tokens):
                parts.add(start + shared)
        out.append(tuple(sorted(parts)))
    return out


class MismatchLimitExceeded(RuntimeError):
    """More samples than the recipe allows have labels the chat template and tokenizer disagree on."""


class TrainingSet(torch.utils.data.Dataset):
    def __init__(
        self,
        entries: list[Entry],
        processor: Any,
        *,
        max_length: int,
        report: BadSampleReport,
        mismatch_limit: float = 0.01,
    ) -> None:
        self.processor = processor
        self.report = report
        self.image_tokens = image_token_count(processor)
        self.entries: list[Entry] = []
        self.encoded: list[Encoded] = []
        self.mismatched: list[str] = []
        self.truncated = 0
        for entry in entries:
            try:
                encoded = encode(processor, entry.messages(), image_tokens=self.image_tokens, max_length=max_length)
            except TokenizationMismatch as exc:
                self.mismatched.append(entry.id)
                report.add(entry.file, entry.index, entry.id, f"tokenization mismatch: {exc}")
                continue
            except ValueError as exc:
                report.add(entry.file, entry.index, entry.id, str(exc))
                continue
            self.entries.append(entry)
            self.encoded.append(encoded)
            self.truncated += encoded.truncated
        total = len(entries)
        if self.mismatched:
            share = len(self.mismatched) / max(total, 1)
            shown = ", ".join(self.mismatched[:10]) + (" ..." if len(self.mismatched) > 10 else "")
            message = (
                f"{len(self.mismatched)} of {total} samples ({share:.1%}) have a tokenization mismatch between the "
                f"chat template and the tokenizer (their labels cannot be placed): {shown}"
            )
            if share > mismatch_limit:
                raise MismatchLimitExceeded(
                    f"{message}. That is over the limit of {mismatch_limit:.0%}: fix the chat template "
                    "(chat_template=) or the tokenizer before training"
                )
            logger.warning(f"{message}; they are skipped")
        if not self.entries:
            raise ValueError("no trainable samples left (see the bad-sample report)")
        self.decisions = decision_positions(self.encoded, [e.ability for e in self.entries])
        if self.truncated:
            logger.warning(f"{self.truncated} samples were truncated to model_max_length={max_length}")

    @property
    def lengths(self) -> list[int]:
        """Token counts (image tokens included), for the length-grouped sampler."""
        return [len(e) for e in self.encoded]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        for step in range(len(self.entries)):
            i = (index + step) % len(self.entries)
            entry = self.entries[i]
            try:
                image = load_rgb(entry.image)
            except (OSError, ValueError) as exc:
                self.report.add(entry.file, entry.index, entry.id, f"image {entry.image}: {exc}")
                continue
            pixel_values = self.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
            encoded = self.encoded[i]
            decision = torch.zeros(len(encoded.input_ids), dtype=torch.bool)
            decision[list(self.decisions[i])] = True
            return {
                "input_ids": torch.tensor(encoded.input_ids),
                "labels": torch.tensor(encoded.labels),
                "decision_mask": decision,
                "pixel_values": pixel_values[0],
            }
        raise RuntimeError("no image of the training set could be decoded (see the bad-sample report)")


@dataclass
class Collator:
    """Right-pads a batch to its longest sample; pad tokens get label -100 and attention 0."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(s["input_ids"]) for s in samples)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(samples), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(samples), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), longest), dtype=torch.long)
        decision = torch.zeros((len(samples), longest), dtype=torch.bool)
        for row, sample in enumerate(samples):
            n = len(sample["input_ids"])
            input_ids[row, :n] = sample["input_ids"]
            labels[row, :n] = sample["labels"]
            attention_mask[row, :n] = 1
            if "decision_mask" in sample:
                decision[row, :n] = sample["decision_mask"]
        return {
            "input_ids": input_ids,
            "labels": labels,
            "decision_mask": decision,
            "attention_mask": attention_mask,
            "pixel_values": torch.stack([s["pixel_values"] for s in samples]),
        }
