"""Decisions read from one token's logits: DF-D forgery probabilities.

Two readings. A zero-shot model answers a yes/no question with "Yes"/"No" first: P(yes) of its first
token, crossed with the question's polarity. A model trained on DFA-Instruct answers with the verdict first
(dfa_bench.templates.dfd_answer: "This face image is forged, ..." / "... is a bona fide ..."): P(forgery) is
read where those two reference answers part. One owner for what `dfa_hf`, `dfa_gpt` and DFA-GPT's dev
evaluation (dfa_gpt.dev_eval) read. Torch only: no lmms-eval, so training code can import it.
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


def parting_point(sequences: list[list[int]], what: str = "the answers") -> tuple[int, list[int]]:
    """(the length of the token sequences' common prefix, each sequence's token where they part).

    For reference answers rendered after one prompt, the common prefix is the prompt plus the words the
    answers share, and the parting tokens are the decision. Refused when the answers part nowhere (one is
    a prefix of another) or part at one token shared by two of them."""
    common = 0
    while all(len(seq) > common and seq[common] == sequences[0][common] for seq in sequences):
        common += 1
    decision = [seq[common] if len(seq) > common else -1 for seq in sequences]
    if -1 in decision or len(set(decision)) != len(decision):
        raise ValueError(f"{what} do not part at one token with this tokenizer")
    return common, decision


def two_way_probability(logits: torch.Tensor, first_ids: torch.Tensor, second_ids: torch.Tensor) -> torch.Tensor:
    """P(first) / (P(first) + P(second)) per row of logits [batch, vocab], one token id per row each."""
    rows = torch.arange(logits.shape[0])
    logits = logits.float()
    return torch.sigmoid(logits[rows, first_ids] - logits[rows, second_ids])


def next_token_logits(model: Any, sequences: list[list[int]], pad_id: int, **inputs: Any) -> torch.Tensor:
    """[len(sequences), vocab] float32 logits (on the CPU) of the token after each sequence: one forward,
    left-padded, positions numbered as generate() numbers them. `inputs` (pixel_values ...) go to the model on
    its input device. The caller picks train/eval mode and grad; this only reads."""
    device = model.get_input_embeddings().weight.device
    longest = max(map(len, sequences))
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, seq in enumerate(sequences):
        input_ids[row, longest - len(seq) :], mask[row, longest - len(seq) :] = torch.tensor(seq), 1
    out = model(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device),
        logits_to_keep=1,
        use_cache=False,
        **{key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in inputs.items()},
    )
    return out.logits[:, -1].float().cpu()
