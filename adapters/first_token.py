"""Decisions read from the first answer token's logits: P(yes) for DF-D.

One owner for what `dfa_hf` (DF-D forgery probabilities) and DFA-GPT's dev evaluation (dfa_gpt.dev_eval)
read from a model's first-step logits. Torch only: no lmms-eval, so training code can import it.
"""

from __future__ import annotations

from typing import Any

import torch

LETTERS = "ABCDE"


def forgery_probability(p_yes: float, polarity: str) -> float:
    """P(forgery) from P("yes"): DF-D questions ask either "is it forged?" or "is it authentic?"."""
    return p_yes if polarity == "forged" else 1.0 - p_yes


# Words whose first token starts a "yes" / "no" answer, with and without a leading space: tokenizers
# differ on whether the first answer token after "ASSISTANT:" carries the space.
YES_WORDS = ("Yes", "yes", " Yes", " yes")
NO_WORDS = ("No", "no", " No", " no")


def first_token_ids(tokenizer: Any, words: tuple[str, ...]) -> set[int]:
    """The distinct first token ids of `words`, encoded without special tokens."""
    ids = set()
    for word in words:
        encoded = tokenizer.encode(word, add_special_tokens=False)
        if encoded:
            ids.add(int(encoded[0]))
    return ids


def answer_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """(yes ids, no ids) for the DF-D probability.

    An id that starts both a yes and a no word (a bare space piece such as Llama's "▁" or BPE's "Ġ",
    when " Yes" splits as [space, "Yes"]) says nothing about the answer, so it counts for neither.
    """
    yes, no = first_token_ids(tokenizer, YES_WORDS), first_token_ids(tokenizer, NO_WORDS)
    shared = yes & no
    return sorted(yes - shared), sorted(no - shared)


def yes_probability(logits: torch.Tensor, yes_ids: list[int], no_ids: list[int]) -> torch.Tensor:
    """P(yes) / (P(yes) + P(no)) per row of first-step logits [batch, vocab].

    Computed as sigmoid(logsumexp(yes) - logsumexp(no)): the softmax normaliser cancels, and unlike
    summing softmax probabilities it cannot turn into 0/0 when both are tiny.
    """
    logits = logits.float()
    return torch.sigmoid(logits[:, yes_ids].logsumexp(-1) - logits[:, no_ids].logsumexp(-1))
