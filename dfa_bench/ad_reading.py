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
from collections.abc import Iterator
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
        "term": re.compile(rf"\b(?:{terms})\b"),
        # everything a clause is read for, in one left-to-right scan: a match consumes its span, so a region or
        # a term inside a negated span ("no artifacts around the eyes") is never seen, as intended
        # uncertain, then regions, then a negator governing an artifact term up to four words on with what
        # follows up to a comma ("no signs of manipulation", "not see any blending seams along the jawline"),
        # then a negated natural term ("does not look natural"), then terms and natural terms
        "scan": re.compile(
            rf"(?P<uncertain>\b(?:{_alternatives(vocab['uncertain'])}))"
            rf"|\b(?:{named})\b"
            rf"|(?P<negated>{negator}(?:\s+[^\s,]+){{0,4}}?\s+(?:{terms})\b[^,]*)"
            rf"|(?P<not_natural>{negator}(?:\s+[^\s,]+){{0,2}}?\s+(?:{_alternatives(vocab['natural_terms'])})\b)"
            rf"|(?P<term>\b(?:{terms})\b)"
            rf"|(?P<natural>\b(?:{_alternatives(vocab['natural_terms'])})\b)"
        ),
    }


def regions() -> tuple[str, ...]:
    """The canonical regions, in the vocabulary's order."""
    return tuple(vocabulary()["regions"])


def normalise(text: str) -> str:
    """Lower case, hyphens and slashes made spaces, curly quotes straightened."""
    return re.sub(r"[-/\u2010-\u2015]", " ", text.lower().replace("\u2019", "'"))


_CUES = ("uncertain", "negated", "not_natural", "term", "natural")
# Where a scan match can begin: every alternative starts at a word or at "n't". Trying the alternatives only
# there, not at every character, finds the same matches as finditer in three quarters of the time.
_STARTS = re.compile(r"\b[a-z0-9]|n't")


def _matches(pattern: re.Pattern, text: str) -> Iterator[re.Match]:
    end = 0
    for start in _STARTS.finditer(text):
        if start.start() >= end and (match := pattern.match(text, start.start())):
            end = match.end()
            yield match


def _scan(clause: str) -> tuple[str | None, frozenset[str], bool]:
    """(the clause's tag, the regions it names outside negated and hedged spans, whether it negates)."""
    p = _patterns()
    cues: set[str] = set()
    named: set[str] = set()
    for match in _matches(p["scan"], clause):
        kind = match.lastgroup
        if kind in _CUES:
            cues.add(kind)
        else:
            named.add(kind)
            if " " in match.group() and p["term"].search(match.group()):  # "blending boundary" claims too
                cues.add("term")
    if "uncertain" in cues:
        tag = "unclear"
    elif cues & {"not_natural", "term"}:
        tag = "claimed"
    elif cues & {"negated", "natural"}:
        tag = "none"
    else:
        tag = None
    return tag, frozenset(named), "negated" in cues


def _pieces(clause: str) -> list[tuple[str, str | None, frozenset[str]]]:
    """(piece, tag, regions) for a clause; a clause that claims and denies at once is cut at 'and', 'with' and
    commas, an untagged piece taking the tag of the piece before it."""
    tag, named, negates = _scan(clause)
    if tag != "claimed" or not negates:
        return [(clause, tag, named)]
    out: list[tuple[str, str | None, frozenset[str]]] = []
    previous = None
    for piece in _patterns()["piece"].split(clause):
        piece_tag, piece_named, _ = _scan(piece)
        previous = piece_tag or previous
        out.append((piece, previous, piece_named))
    return out


def clauses(text: str) -> list[tuple[str, str | None, frozenset[str]]]:
    """(clause text, its tag: claimed, none, unclear or None, the regions it names) in reading order."""
    out = []
    for clause in _patterns()["break"].split(normalise(text)):
        if clause.strip():
            out.extend(_pieces(clause.strip()))
    return out


@lru_cache(maxsize=4096)
def read(text: str) -> tuple[frozenset[str], str]:
    """(the regions the text says show artifacts, its stance): one reading of the text's clauses."""
    tagged = clauses(text)
    tags = {tag for _, tag, _ in tagged}
    # an untagged clause names artifact regions only in a text that claims artifacts ("1. Eyes:" heads a list);
    # elsewhere it is a mere mention ("a man with short hair")
    counted = ("claimed", None) if "claimed" in tags else ("claimed",)
    found = frozenset().union(*(named for _, tag, named in tagged if tag in counted))
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
