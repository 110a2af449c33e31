"""Dev evaluation while training: DF-D and DF-C scored from the first answer token's logits, no generation.

DF-D: P(yes) against P(no) at the decision position (as `dfa_hf` reads it) gives a forgery probability,
hence AUC, and its 0.5 threshold gives ACC and ACER. DF-C: the option letters' scores at the same position
pick the category. Both also give the first answer token's loss restricted to the candidate answers (chance:
ln 2 for DF-D, ln 5 for DF-C), the token that carries the decision, apart from the text that follows it.

Prompts are rendered with the processor's chat template exactly as training renders a user turn (the image
first), so the figures read what `dfa-gpt train` teaches. One forward pass per batch, logits of the last
position only: cheap enough to run every few hundred steps of a 7B run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfa_bench.adapters.first_token import LETTERS, forgery_probability
from dfa_bench.bench import read_bench
from dfa_bench.imaging import load_rgb
from dfa_bench.metrics import auc_ci95, dfc_metrics, dfd_metrics
from dfa_bench.schema import CATEGORIES, CATEGORY_EXPLANATIONS, CATEGORY_NAMES, label_of
from dfa_bench.templates import caption_item
from dfa_gpt.encoding import image_token_count, render

CHANCE = {"dfd_auc": 0.5, "dfc_acc": 1 / len(CATEGORIES), "caption_acc": 1 / len(CATEGORIES)}
# the figures a dev point carries; the keys `--keep-best` accepts (the Trainer prefixes them with eval_)
HIGHER_IS_BETTER = {"dfd_auc": True, "dfd_acc": True, "dfd_acer": False, "dfc_acc": True, "caption_acc": True,
                    "dfd_first_token_loss": False, "dfc_first_token_loss": False}  # fmt: skip


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
    """Scores a model on dev items from one forward pass per batch. Prompts and pixels are prepared once."""

    def __init__(self, items: list[DevItem], processor: Any, *, batch_size: int = 16) -> None:
        self.items = [item for item in items if item.task in ("dfd", "dfc")]
        self.captions = [item for item in items if item.task == "caption"]
        self.batch_size = batch_size
        self.processor, tokenizer = processor, processor.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.image_tokens = image_token_count(processor)
        self.input_ids: list[list[int]] = []
        self.pixel_index: list[Path] = []
        self.pixels: dict[Path, torch.Tensor] = {}
        self.candidates: list[list[int]] = []  # per item: the decision token id of each answer (yes/no, A-E)
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
        # captions: each category's full answer, tokenized as training tokenizes it
        self.caption_answers = [f"{CATEGORY_NAMES[c]}. {CATEGORY_EXPLANATIONS[c]}" for c in CATEGORIES]
        self.caption_sequences = [self.tokenized(item, self.caption_answers)[0] for item in self.captions]

    def decision_point(self, item: DevItem) -> tuple[list[int], list[int]]:
        """(the tokens before the decision, each candidate answer's decision token).

        Each candidate answer ("Yes." / "No."; "A." ... "E.") is rendered after the question with the chat template
        and tokenized as training tokenizes it (dfa_gpt.encoding): the candidates' common token prefix is the
        prompt plus whatever the answers share (a template's leading space that a BPE keeps apart, for one),
        and the next token, where they part, is the decision. So the figures read the token training teaches,
        whatever the template and tokenizer."""
        answers = ["Yes.", "No."] if item.task == "dfd" else [f"{letter}." for letter in LETTERS]
        sequences, common = self.tokenized(item, answers)
        decision = [seq[common] if len(seq) > common else -1 for seq in sequences]
        if -1 in decision or len(set(decision)) != len(decision):
            raise ValueError(f"{item.question_id}: the answers {answers} do not part at one token with this tokenizer")
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

    def caption_log_likelihoods(self, model: Any) -> torch.Tensor:
        """[captions, 5]: each category's answer log-likelihood per caption item (teacher forced, summed over
        the tokens after the prompt); one forward of the five answers per image."""
        device = model.get_input_embeddings().weight.device
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        prompt_length = {}
        rows = []
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for item, sequences in zip(self.captions, self.caption_sequences):
                    if item.question not in prompt_length:  # the prompt: what an empty answer's rendering shares
                        prompt_length[item.question] = self.tokenized(item, ["", self.caption_answers[0]])[1]
                    start = prompt_length[item.question] - 1  # logits at t predict token t + 1
                    longest = max(map(len, sequences))
                    input_ids = torch.full((len(sequences), longest), self.pad_id, dtype=torch.long)
                    mask = torch.zeros_like(input_ids)
                    for row, seq in enumerate(sequences):
                        input_ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
                    pixels = self.pixels[item.image].unsqueeze(0).expand(len(sequences), -1, -1, -1)
                    out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                pixel_values=pixels.to(device, dtype=dtype), use_cache=False)  # fmt: skip
                    log_p = out.logits[:, :-1].float().log_softmax(-1).cpu()
                    picked = log_p.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
                    rows.append(picked[:, start:].sum(-1))
        finally:
            model.train(was_training)
        return torch.stack(rows) if rows else torch.empty(0, len(CATEGORIES))

    def logits(self, model: Any) -> torch.Tensor:
        """[items, vocab] float32 logits at each item's decision position, batch by batch (left-padded)."""
        device = model.get_input_embeddings().weight.device
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        rows = []
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(self.items), self.batch_size):
                    ids = self.input_ids[start : start + self.batch_size]
                    longest = max(map(len, ids))
                    input_ids = torch.full((len(ids), longest), self.pad_id, dtype=torch.long)
                    mask = torch.zeros((len(ids), longest), dtype=torch.long)
                    for row, seq in enumerate(ids):
                        input_ids[row, longest - len(seq) :] = torch.tensor(seq)
                        mask[row, longest - len(seq) :] = 1
                    pixel_values = torch.stack([self.pixels[p] for p in self.pixel_index[start : start + len(ids)]])
                    out = model(
                        input_ids=input_ids.to(device),
                        attention_mask=mask.to(device),
                        position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device),  # as generate() numbers them
                        pixel_values=pixel_values.to(device, dtype=dtype),
                        logits_to_keep=1,
                        use_cache=False,
                    )
                    rows.append(out.logits[:, -1].float().cpu())
        finally:
            model.train(was_training)
        return torch.cat(rows)

    def evaluate(self, model: Any) -> dict[str, Any]:
        figures = self.score(self.logits(model)) if self.items else {}
        if self.captions:  # an align run: does the frozen LM name each held-out image's category?
            scores = self.caption_log_likelihoods(model)
            truth = [item.category for item in self.captions]
            predicted = [CATEGORIES[int(i)] for i in scores.argmax(-1)]
            metrics = dfc_metrics(truth, predicted, resamples=200)
            figures.update(caption_acc=metrics["acc"], caption_acc_ci95=metrics["ci95"].get("acc"),
                           caption_n=len(self.captions))  # fmt: skip
        return figures

    def score(self, logits: torch.Tensor) -> dict[str, Any]:
        """Dev figures from decision-position logits (one row per item, in item order)."""
        dfd = [(i, it) for i, it in enumerate(self.items) if it.task == "dfd"]
        dfc = [(i, it) for i, it in enumerate(self.items) if it.task == "dfc"]
        out: dict[str, Any] = {}
        if dfd:
            p_yes = [
                float(torch.sigmoid(logits[i, self.candidates[i][0]] - logits[i, self.candidates[i][1]]))
                for i, _ in dfd
            ]
            scores = [forgery_probability(p, it.polarity) for p, (_, it) in zip(p_yes, dfd)]
            truth = [label_of(it.category) for _, it in dfd]
            predicted = ["forgery" if s > 0.5 else "bona_fide" for s in scores]
            metrics = dfd_metrics(truth, predicted, scores, resamples=200)
            says_yes = [(t == "forgery") == (it.polarity == "forged") for t, (_, it) in zip(truth, dfd)]
            nll = [-math.log(max(p if y else 1 - p, 1e-12)) for p, y in zip(p_yes, says_yes)]
            auc_ci = (
                auc_ci95([t == "forgery" for t in truth], scores, resamples=200) if metrics["auc"] is not None else None
            )
            out.update(
                dfd_auc=metrics["auc"], dfd_auc_ci95=auc_ci, dfd_acc=metrics["acc"], dfd_acer=metrics["acer"],
                dfd_first_token_loss=float(np.mean(nll)), dfd_p_yes_std=float(np.std(p_yes)),
                dfd_constant=len(set(predicted)) == 1, dfd_n=len(dfd),
            )  # fmt: skip
        if dfc:
            truth, predicted, nll = [], [], []
            for i, item in dfc:
                scores = logits[i, self.candidates[i]]
                log_p = torch.log_softmax(scores, -1)
                letters = {o["letter"]: o["category"] for o in item.options or []}
                truth.append(item.category)
                predicted.append(letters.get(LETTERS[int(scores.argmax())], "unparseable"))
                true_letter = next(letter for letter, c in letters.items() if c == item.category)
                nll.append(float(-log_p[LETTERS.index(true_letter)]))
            metrics = dfc_metrics(truth, predicted, resamples=200)
            out.update(
                dfc_acc=metrics["acc"], dfc_acc_ci95=metrics["ci95"].get("acc"),
                dfc_first_token_loss=float(np.mean(nll)), dfc_n=len(dfc),
            )  # fmt: skip
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
