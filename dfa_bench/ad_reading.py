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
def _scan_alternatives() -> tuple[tuple[str, str, re.Pattern | None], ...]:
    """What a clause is read for, in scan order, as (kind, regex, first token): the hedges; the regions, more
    specific first ("brow ridge" is the forehead, "eye brows" the eyebrows, not the eyes); a negator governing
    an artifact term up to four words on, with what follows up to a comma ("no signs of manipulation", "not see
    any blending seams along the jawline"); a negated natural term ("does not look natural"); the artifact
    terms; the natural terms. The first token is what the word a match begins at must start with (None: try
    everywhere); it lets a scan try at each word only the alternatives that can begin there."""
    vocab = vocabulary()
    terms = _alternatives(vocab["artifact_terms"] + vocab["claim_terms"])
    naturals = _alternatives(vocab["natural_terms"])
    negator = rf"(?:\b(?:{_alternatives(vocab['negators'])})\b|n't\b)"
    negator_first = re.compile("|".join([*(f"(?:{_first_token(p)})" for p in vocab["negators"]), "n't"]))
    order = sorted(vocab["regions"], key=lambda name: {"forehead": 0, "eyebrows": 1}.get(name, 2))
    out = [("uncertain", rf"\b(?:{p})", _token(p)) for p in vocab["uncertain"]]
    out += [(name, rf"\b(?:{p})\b", _token(p)) for name in order for p in vocab["regions"][name]]
    out += [("negated", rf"{negator}(?:\s+[^\s,]+){{0,4}}?\s+(?:{terms})\b[^,]*", negator_first),
            ("not_natural", rf"{negator}(?:\s+[^\s,]+){{0,2}}?\s+(?:{naturals})\b", negator_first)]  # fmt: skip
    out += [("term", rf"\b(?:{p})\b", _token(p)) for p in vocab["artifact_terms"] + vocab["claim_terms"]]
    out += [("natural", rf"\b(?:{p})\b", _token(p)) for p in vocab["natural_terms"]]
    return tuple(out)


def _first_token(pattern: str) -> str:
    """The part of a vocabulary regex before its first space outside groups, leading lookbehinds dropped."""
    pattern = re.sub(r"^(?:\(\?<[!=][^)]*\))+", "", pattern)
    depth = 0
    for i, char in enumerate(pattern):
        depth += {"(": 1, ")": -1}.get(char, 0) if i == 0 or pattern[i - 1] != "\\" else 0
        if char == " " and depth == 0:
            return pattern[:i]
    return pattern


def _token(pattern: str) -> re.Pattern | None:
    token = _first_token(pattern)
    return None if " " in token or "\\s" in token else re.compile(token)


def _join(alternatives: list[tuple[str, str]]) -> re.Pattern:
    """One regex of (kind, regex) alternatives in order, each kind a named group (consecutive ones merged)."""
    groups: list[tuple[str, list[str]]] = []
    for kind, regex in alternatives:
        if groups and groups[-1][0] == kind:
            groups[-1][1].append(regex)
        else:
            groups.append((kind, [regex]))
    return re.compile("|".join(f"(?P<{kind}>{'|'.join(regexes)})" for kind, regexes in groups))


@cache
def _patterns() -> dict[str, re.Pattern]:
    vocab = vocabulary()
    terms = _alternatives(vocab["artifact_terms"] + vocab["claim_terms"])
    return {
        # the lookahead skips every position that cannot start a break (most of them) at once
        "break": re.compile(rf"(?=[\s.!?;,])(?:{_alternatives(vocab['clause_breaks'])})"),
        "piece": re.compile(r",\s*|\s+and\s+|\s+with\s+"),
        "term": re.compile(rf"\b(?:{terms})\b"),
        # every alternative at once: what scanning a clause with finditer would use (see _matches)
        "scan": _join([(kind, regex) for kind, regex, _ in _scan_alternatives()]),
    }


@lru_cache(maxsize=2**16)
def _candidates(word: str) -> re.Pattern | None:
    """The scan restricted to the alternatives that can begin at `word` (None: none can)."""
    chosen = [(kind, regex) for kind, regex, token in _scan_alternatives() if token is None or token.match(word)]
    return _join(chosen) if chosen else None


def regions() -> tuple[str, ...]:
    """The canonical regions, in the vocabulary's order."""
    return tuple(vocabulary()["regions"])


def normalise(text: str) -> str:
    """Lower case, hyphens and slashes made spaces, curly quotes straightened."""
    return re.sub(r"[-/\u2010-\u2015]", " ", text.lower().replace("\u2019", "'"))


_CUES = ("uncertain", "negated", "not_natural", "term", "natural")
_WORD = re.compile(r"[a-z0-9][a-z0-9']*")


def _matches(text: str) -> Iterator[re.Match]:
    """The matches of the scan in `text`, as finditer would find them: a match begins at a word or at its
    "n't", and at each only the alternatives whose first token the word starts with are tried (several
    times faster than every alternative at every character)."""
    end = 0
    for word in _WORD.finditer(text):
        i = word.start()
        if i >= end and (pattern := _candidates(word.group())) and (match := pattern.match(text, i)):
            end = match.end()
            yield match
        elif "n't" in word.group() and (j := i + word.group().index("n't")) >= end:
            if (pattern := _candidates("n't")) and (match := pattern.match(text, j)):
                end = match.end()
                yield match


def _scan(clause: str) -> tuple[str | None, frozenset[str], bool]:
    """(the clause's tag, the regions it names outside negated and hedged spans, whether it negates)."""
    p = _patterns()
    cues: set[str] = set()
    named: set[str] = set()
    for match in _matches(clause):
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
