"""Reading an artifact description (AD) with a fixed rule set: which facial regions it says show artifacts,
and whether it claims artifacts at all. Deterministic and reference-free, so it applies to any model's answer
and to the bench's references alike; the vocabulary is data (dfa_bench/data/ad_vocabulary.json).

A text is cut into clauses (sentences, and at "but", "however", "except", ", and" ...). Each clause is
tagged: *unclear* when it hedges ("cannot determine"), *claimed* when it names an artifact or a manipulation
that no negator governs ("blurred", "a blending seam", "does not look natural"), *none* when it denies them
("no visible artifacts", "the eyes look natural"), untagged otherwise. A clause that both claims and denies
("the mouth is blurred with no visible seams") is cut again at "and", "with" and commas. A region named in a
claimed clause is a claimed region; one named in a
denying or hedging clause is not, and one named in an untagged clause is when the text claims artifacts
elsewhere ("1. Eyes:" heading a list) and is a mere mention otherwise ("a man with short hair").
"""

from __future__ import annotations

import json
import re
from functools import cache, lru_cache
from importlib import resources

STANCES = ("claimed", "none", "unclear")


@cache
def vocabulary() -> dict:
    return json.loads(resources.files("dfa_bench").joinpath("data/ad_vocabulary.json").read_text(encoding="utf-8"))


def _alternatives(patterns: list[str]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


@cache
def _patterns() -> dict[str, re.Pattern]:
    vocab = vocabulary()
    terms = _alternatives(vocab["artifact_terms"] + vocab["claim_terms"])
    negator = rf"(?:\b(?:{_alternatives(vocab['negators'])})\b|n't\b)"
    # one scan for every region: a named group each, more specific regions first ("brow ridge" is the
    # forehead, "eye brows" the eyebrows, not the eyes)
    order = sorted(vocab["regions"], key=lambda name: {"forehead": 0, "eyebrows": 1}.get(name, 2))
    named = "|".join(f"(?P<{name}>{_alternatives(vocab['regions'][name])})" for name in order)
    return {
        # the lookahead skips every position that cannot start a break (most of them) at once
        "break": re.compile(rf"(?=[\s.!?;,])(?:{_alternatives(vocab['clause_breaks'])})"),
        "piece": re.compile(r",\s*|\s+and\s+|\s+with\s+"),
        "uncertain": re.compile(rf"\b(?:{_alternatives(vocab['uncertain'])})"),
        # a negator governing an artifact term up to four words on, and what follows up to a comma
        # ("no signs of manipulation", "not see any blending seams along the jawline")
        "negated": re.compile(rf"{negator}(?:\s+[^\s,]+){{0,4}}?\s+(?:{terms})\b[^,]*"),
        "not_natural": re.compile(rf"{negator}(?:\s+[^\s,]+){{0,2}}?\s+(?:{_alternatives(vocab['natural_terms'])})\b"),
        "term": re.compile(rf"\b(?:{terms})\b"),
        "natural": re.compile(rf"\b(?:{_alternatives(vocab['natural_terms'])})\b"),
        "region": re.compile(rf"\b(?:{named})\b"),
    }


def regions() -> tuple[str, ...]:
    """The canonical regions, in the vocabulary's order."""
    return tuple(vocabulary()["regions"])


def normalise(text: str) -> str:
    """Lower case, hyphens and slashes made spaces, curly quotes straightened."""
    return re.sub(r"[-/\u2010-\u2015]", " ", text.lower().replace("\u2019", "'"))


def _tag(clause: str) -> str | None:
    p = _patterns()
    if p["uncertain"].search(clause):
        return "unclear"
    rest, negated = p["negated"].subn(" ", clause)
    if p["not_natural"].search(rest) or p["term"].search(rest):
        return "claimed"
    if negated or p["natural"].search(rest):
        return "none"
    return None


def _named(clause: str) -> set[str]:
    return {match.lastgroup for match in _patterns()["region"].finditer(clause)}


def _pieces(clause: str) -> list[tuple[str, str | None]]:
    """(piece, tag) for a clause; a clause that claims and denies at once is cut at 'and', 'with' and commas,
    an untagged piece taking the tag of the piece before it."""
    tag = _tag(clause)
    if tag != "claimed" or not _patterns()["negated"].search(clause):
        return [(clause, tag)]
    out: list[tuple[str, str | None]] = []
    previous = None
    for piece in _patterns()["piece"].split(clause):
        previous = _tag(piece) or previous
        out.append((piece, previous))
    return out


def clauses(text: str) -> list[tuple[str, str | None]]:
    """(clause text, its tag: claimed, none, unclear or None) in reading order."""
    out = []
    for clause in _patterns()["break"].split(normalise(text)):
        if clause.strip():
            out.extend(_pieces(clause.strip()))
    return out


@lru_cache(maxsize=4096)
def read(text: str) -> tuple[frozenset[str], str]:
    """(the regions the text says show artifacts, its stance): one reading of the text's clauses."""
    tagged = clauses(text)
    tags = {tag for _, tag in tagged}
    # an untagged clause names artifact regions only in a text that claims artifacts ("1. Eyes:" heads a list);
    # elsewhere it is a mere mention ("a man with short hair")
    counted = ("claimed", None) if "claimed" in tags else ("claimed",)
    found = frozenset().union(*(_named(clause) for clause, tag in tagged if tag in counted))
    return found, "claimed" if "claimed" in tags else "none" if "none" in tags else "unclear"


def claimed_regions(text: str) -> frozenset[str]:
    """The canonical regions the text says show artifacts (named, and neither denied nor hedged)."""
    return read(text or "")[0]


def stance(text: str | None) -> str:
    """'claimed' when any clause claims artifacts, else 'none' when one denies them, else 'unclear'."""
    return read(text or "")[1]


def region_scores(reference: frozenset[str], answer: frozenset[str]) -> dict[str, float] | None:
    """Precision, recall and F1 of the regions an answer claims against those its reference claims; None when
    the reference claims none (nothing to ground). An answer claiming no region scores 0 on all three."""
    if not reference:
        return None
    hits = len(reference & answer)
    precision = hits / len(answer) if answer else 0.0
    recall = hits / len(reference)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"region_precision": precision, "region_recall": recall, "region_f1": f1}


def consistent(verdict: str | None, answer_stance: str) -> bool | None:
    """Does an AD answer agree with the same model's DF-D verdict on the image? A forgery verdict wants artifacts
    claimed, a bona fide verdict wants none claimed; an unclear description agrees with neither. None when there
    is no parsed verdict to agree with."""
    if verdict == "forgery":
        return answer_stance == "claimed"
    if verdict == "bona_fide":
        return answer_stance == "none"
    return None
