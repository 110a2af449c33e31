"""ROUGE-L F-measure equal to rouge-score's `rougeL` with `use_stemmer=True`, only faster.

Tokens follow rouge-score's tokenizer step by step, with the stemmed form of each word
memoised (the vocabulary is tiny next to the token count); the LCS length uses a bit-parallel algorithm
(Hyyroe 2004) instead of rouge-score's Python DP table. Precision, recall and F are then computed
with the same expressions in the same order, so the floats match exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import six
from rouge_score import scoring, tokenize


@cache
def _stemmer():
    # nltk takes ~2 s to import (it pulls in scipy.stats): pay it only when there is text to score
    from nltk.stem import porter

    return porter.PorterStemmer()


def warm_up() -> None:
    """Import the stemmer now (used to overlap nltk's import with other work)."""
    _stemmer()


def _word_token(word: str) -> str:
    token = six.ensure_str(_stemmer().stem(word)) if len(word) > 3 else word
    return token if tokenize.VALID_TOKEN_RE.match(token) else ""


class _WordTokens(dict):
    """word (lower-case alphanumeric) -> its final token, or "" where rouge-score would drop it."""

    def __missing__(self, word: str) -> str:
        token = self[word] = _word_token(word)
        return token


_word_tokens = _WordTokens()


def tokens(text: str) -> list[str]:
    """rouge_score.tokenize.tokenize(text, PorterStemmer()) with a per-word memo.

    After NON_ALPHANUM_RE.sub, every character is [a-z0-9] or a space, so str.split() yields the same
    words as SPACES_RE.split() minus empty strings, which rouge-score drops anyway.
    """
    words = tokenize.NON_ALPHANUM_RE.sub(" ", text.lower()).split()
    return [t for t in map(_word_tokens.__getitem__, words) if t]


def lcs_length(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Length of the longest common subsequence, by bit-parallel rows over `ref`."""
    masks: dict[str, int] = {}
    for i, token in enumerate(ref):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(ref)) - 1
    row = full
    # Carries only move upwards, so bits above len(ref) never disturb the low ones: mask once, at the end.
    for match in map(masks.get, hyp):
        if match:
            u = row & match
            row = (row + u) | (row - u)
    return len(ref) - (row & full).bit_count()


def rouge_l(reference: str, prediction: str) -> float:
    """rougeL F-measure, reference first, exactly as rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True)."""
    return rouge_l_tokens(tokens(reference), tokens(prediction))


def rouge_l_tokens(ref: Sequence[str], hyp: Sequence[str]) -> float:
    """rouge_l of texts already tokenised by `tokens` (for scoring one text against many)."""
    if not ref or not hyp:
        return 0.0
    lcs = lcs_length(ref, hyp)
    precision = lcs / len(hyp)
    recall = lcs / len(ref)
    return scoring.fmeasure(precision, recall)
