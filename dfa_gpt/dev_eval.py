"""Dev evaluation while training: DF-D and DF-C scored from logits, no generation.

Every item is scored against its candidate answers, the bench's reference answers for each possible truth
(dfa_bench.templates: `dfd_answer`, `dfc_answer`), rendered and tokenized as training renders them.
DF-D: the two answers (forged / bona fide) part at one token, the decision; its logits give P(forgery), hence
AUC, and the 0.5 threshold ACC and ACER; one forward pass per batch, last position only. DF-C (and an align
run's captions): the five category answers share first words ("Face ..."), so each is scored by its whole
teacher-forced log-likelihood, and the likeliest names the category. Both give a loss over the candidates
(chance: ln 2 for DF-D, ln 5 for DF-C): the decision apart from the text that follows it.

Prompts are rendered with the processor's chat template exactly as training renders a user turn (the image
first), so the figures read what `dfa-gpt train` teaches. Cheap enough to run every few hundred steps of a
7B run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfa_bench.adapters.first_token import next_token_logits, parting_point, two_way_probability
from dfa_bench.bench import read_bench
from dfa_bench.imaging import load_rgb
from dfa_bench.metrics import auc_ci95, dfc_metrics, dfd_metrics
from dfa_bench.schema import CATEGORIES, label_of
from dfa_bench.templates import caption_item, dfc_answer, dfd_answer
from dfa_gpt.encoding import image_token_count, render

CHANCE = {"dfd_auc": 0.5, "dfc_acc": 1 / len(CATEGORIES), "caption_acc": 1 / len(CATEGORIES)}
# the figures a dev point carries; the keys `--keep-best` accepts (the Trainer prefixes them with eval_)
HIGHER_IS_BETTER = {"dfd_auc": True, "dfd_acc": True, "dfd_acer": False, "dfc_acc": True, "caption_acc": True,
                    "dfd_first_token_loss": False, "dfc_answer_loss": False}  # fmt: skip


@dataclass
class DevItem:
    """One DF-D or DF-C question of a dev bench, with what its first answer token is scored against."""

    question_id: str
    task: str
    image: Path
    question: str
    category: str
    polarity: str | None = None  # DF-D: "forged" (yes = forgery) or "authentic"
    options: list[dict] | None = None  # DF-C: [{"letter", "category", "text"}]


def bench_dev_items(bench_dir: Path | str, *, limit: int | None = None, captions: bool = False) -> list[DevItem]:
    """The DF-D and DF-C items of a bench (validated by read_bench); `limit`: a seeded sample of each task's.
    `captions`: one stage-1 caption question per DF-C item's image too (an align run's figure)."""
    bench = read_bench(Path(bench_dir))
    out = []
    for task in ("dfd", "dfc"):
        items = bench.items_for(task)
        if limit is not None and limit < len(items):  # a sample, not the first N: benches list items by category
            items = [items[i] for i in sorted(random.Random(0).sample(range(len(items)), limit))]
        for item in items:
            out.append(
                DevItem(item["question_id"], task, bench.image_path(item), item["question"], item["category"],
                        polarity=item.get("polarity"), options=item.get("options"))
            )  # fmt: skip
            if captions and task == "dfc":
                question = caption_item(item, bench.manifest.get("seed", 0))["question"]
                out.append(DevItem(f"{item['record_id']}:caption", "caption", bench.image_path(item), question,
                                   item["category"]))  # fmt: skip
    if not out:
        raise ValueError(f"{bench_dir}: no DF-D or DF-C items to evaluate on")
    return out


class DevEvaluator:
    """Scores a model on dev items: DF-D at its decision token, DF-C and captions by their candidates'
    likelihoods. Prompts, candidate sequences and pixels are prepared once."""

    def __init__(self, items: list[DevItem], processor: Any, *, batch_size: int = 16) -> None:
        self.items = [item for item in items if item.task == "dfd"]
        self.choices = [item for item in items if item.task in ("dfc", "caption")]
        self.batch_size = batch_size
        self.processor, tokenizer = processor, processor.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.image_tokens = image_token_count(processor)
        self.input_ids: list[list[int]] = []
        self.pixel_index: list[Path] = []
        self.pixels: dict[Path, torch.Tensor] = {}
        self.candidates: list[list[int]] = []  # per DF-D item: the decision token of [forgery, bona fide]
        for item in items:
            if item.image not in self.pixels:
                image = load_rgb(item.image, what=f"dev image for {item.question_id}")
                pixels = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
                self.pixels[item.image] = pixels[0]
        for item in self.items:
            prefix, decision = self.decision_point(item)
            self.input_ids.append(prefix)
            self.candidates.append(decision)
            self.pixel_index.append(item.image)
        # DF-C and captions: each category's full answer (the same text for both), tokenized as training does,
        # with where the answer starts
        self.choice_answers = [dfc_answer(c) for c in CATEGORIES]
        self.choice_sequences: list[tuple[list[list[int]], int]] = []
        prompt_length: dict[str, int] = {}
        for item in self.choices:
            if item.question not in prompt_length:  # the prompt: what an empty answer's rendering shares
                prompt_length[item.question] = self.tokenized(item, ["", self.choice_answers[0]])[1]
            self.choice_sequences.append((self.tokenized(item, self.choice_answers)[0], prompt_length[item.question]))

    def decision_point(self, item: DevItem) -> tuple[list[int], list[int]]:
        """(the tokens before the decision, the decision token of the forgery and the bona fide answer).

        Both reference answers are rendered after the question with the chat template and tokenized as
        training tokenizes them (dfa_gpt.encoding): their common token prefix is the prompt plus whatever the
        answers share ("This face image is"), and the next token, where they part, is the decision. So the
        figures read the token training teaches, whatever the template and tokenizer."""
        answers = [dfd_answer(item.polarity or "forged", label) for label in ("forgery", "bona_fide")]
        sequences, _ = self.tokenized(item, answers)
        common, decision = parting_point(sequences, f"{item.question_id}: the answers {answers}")
        return sequences[0][:common], decision

    def tokenized(self, item: DevItem, answers: list[str]) -> tuple[list[list[int]], int]:
        """Each answer after the item's question, rendered and tokenized as training does (the image placeholder
        expanded as the processor expands it), and the length of the sequences' common prefix."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": item.question}]}]
        token = self.processor.image_token
        sequences = []
        for answer in answers:
            text = render(self.processor, [*messages, {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
                          generation_prompt=False)  # fmt: skip
            sequences.append(self.processor.tokenizer(text.replace(token, token * self.image_tokens, 1))["input_ids"])
        common = 0
        while all(len(seq) > common and seq[common] == sequences[0][common] for seq in sequences):
            common += 1
        return sequences, common

    def choice_log_likelihoods(self, model: Any) -> torch.Tensor:
        """[DF-C and caption items, 5]: each category's answer log-likelihood per item (teacher forced, summed
        over the answer's tokens), in batches of whole items."""
        device = model.get_input_embeddings().weight.device
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        per_batch = max(1, self.batch_size // len(CATEGORIES))
        rows = []
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for first in range(0, len(self.choices), per_batch):
                    batch = list(zip(self.choices, self.choice_sequences))[first : first + per_batch]
                    sequences = [seq for _, (seqs, _) in batch for seq in seqs]
                    longest = max(map(len, sequences))
                    input_ids = torch.full((len(sequences), longest), self.pad_id, dtype=torch.long)
                    mask = torch.zeros_like(input_ids)
                    for row, seq in enumerate(sequences):
                        input_ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
                    pixels = torch.stack([self.pixels[item.image] for item, (seqs, _) in batch for _ in seqs])
                    out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                pixel_values=pixels.to(device, dtype=dtype), use_cache=False)  # fmt: skip
                    log_p = out.logits[:, :-1].float().log_softmax(-1).cpu()
                    picked = log_p.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
                    starts = torch.tensor([start - 1 for _, (seqs, start) in batch for _ in seqs])  # t predicts t + 1
                    after = torch.arange(picked.shape[1]).unsqueeze(0) >= starts.unsqueeze(1)
                    rows.append((picked * after).sum(-1).view(len(batch), len(CATEGORIES)))
        finally:
            model.train(was_training)
        return torch.cat(rows) if rows else torch.empty(0, len(CATEGORIES))

    def logits(self, model: Any) -> torch.Tensor:
        """[DF-D items, vocab] float32 logits at each item's decision position, batch by batch (left-padded)."""
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        rows = []
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(self.items), self.batch_size):
                    ids = self.input_ids[start : start + self.batch_size]
                    pixel_values = torch.stack([self.pixels[p] for p in self.pixel_index[start : start + len(ids)]])
                    rows.append(next_token_logits(model, ids, self.pad_id, pixel_values=pixel_values.to(dtype=dtype)))
        finally:
            model.train(was_training)
        return torch.cat(rows) if rows else torch.empty(0, 0)

    def evaluate(self, model: Any) -> dict[str, Any]:
        return self.score(self.logits(model), self.choice_log_likelihoods(model))

    def score(self, logits: torch.Tensor, choice_scores: torch.Tensor) -> dict[str, Any]:
        """Dev figures from the DF-D items' decision-position logits and the DF-C / caption items' candidate
        log-likelihoods (one row per item, in item order)."""
        out: dict[str, Any] = {}
        if self.items:
            forged = torch.tensor([c[0] for c in self.candidates])
            scores = two_way_probability(logits, forged, torch.tensor([c[1] for c in self.candidates])).tolist()
            truth = [label_of(it.category) for it in self.items]
            predicted = ["forgery" if s > 0.5 else "bona_fide" for s in scores]
            metrics = dfd_metrics(truth, predicted, scores, resamples=200)
            nll = [-math.log(max(s if t == "forgery" else 1 - s, 1e-12)) for s, t in zip(scores, truth)]
            auc_ci = (
                auc_ci95([t == "forgery" for t in truth], scores, resamples=200) if metrics["auc"] is not None else None
            )
            out.update(
                dfd_auc=metrics["auc"], dfd_auc_ci95=auc_ci, dfd_acc=metrics["acc"], dfd_acer=metrics["acer"],
                dfd_first_token_loss=float(np.mean(nll)), dfd_p_forgery_std=float(np.std(scores)),
                dfd_constant=len(set(predicted)) == 1, dfd_n=len(self.items),
            )  # fmt: skip
        for task, key in (("dfc", "dfc_acc"), ("caption", "caption_acc")):
            picked = [(row, it) for row, it in enumerate(self.choices) if it.task == task]
            if not picked:
                continue
            log_p = choice_scores[[row for row, _ in picked]].log_softmax(-1)
            truth = [it.category for _, it in picked]
            predicted = [CATEGORIES[int(i)] for i in log_p.argmax(-1)]
            metrics = dfc_metrics(truth, predicted, resamples=200)
            out.update({key: metrics["acc"], f"{key}_ci95": metrics["ci95"].get("acc"), f"{task}_n": len(picked)})
            if task == "dfc":
                truth_index = torch.tensor([CATEGORIES.index(c) for c in truth])
                out["dfc_answer_loss"] = float(-log_p[torch.arange(len(picked)), truth_index].mean())
        return out


def at_chance(point: dict[str, Any]) -> list[str]:
    """The dev figures whose 95% interval still holds chance (an image-blind model's value)."""
    found = []
    auc_ci = point.get("dfd_auc_ci95")
    if point.get("dfd_auc") is not None and (not auc_ci or auc_ci[0] <= CHANCE["dfd_auc"]):
        found.append("DF-D AUC")
    for key, name in (("dfc_acc", "DF-C ACC"), ("caption_acc", "caption ACC")):
        ci = point.get(f"{key}_ci95")
        if point.get(key) is not None and (not ci or ci[0] <= CHANCE[key]):
            found.append(name)
    return found
