"""Answer parsers: free-form model responses -> a DF-D label or a DF-C category, or unparseable.

Both parsers are pure functions of (response, item fields) and hold no state, so they are safe in
lmms-eval's threaded process_results. They prefer saying "unparseable" to guessing: an answer
that commits to two different classes, or hedges, scores as wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from dfa_bench.schema import UNPARSEABLE


def normalise(text: str) -> str:
    """Lower-case, straighten quotes, expand n't, and turn hyphens into spaces."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"\bcan't\b|\bcannot\b", "can not", t)
    t = re.sub(r"\bwon't\b", "will not", t)
    t = re.sub(r"n't\b", " not", t)
    t = re.sub(r"\b(it|that|this|there|what|here|which)'s\b", r"\1 is", t)
    t = re.sub(r"'re\b", " are", t)
    t = re.sub(r"[-_/]", " ", t)
    return re.sub(r"\s+", " ", t).strip()


# --- DF-D ---------------------------------------------------------------------------------------

_HEDGE = re.compile(
    r"\b(?:can not|could not|unable to|not able to|impossible to|hard to|difficult to|not possible to|no way to)"
    r"\s+(?:\w+ly\s+)?(?:determine|tell|say|judge|assess|verify|know|be sure|be certain|decide|conclude|confirm|"
    r"identify|detect|analy[sz]e|evaluate|help|assist)\b"
    r"|\b(?:not sure|unsure|uncertain|i do not know|i'm sorry|i am sorry|as an ai|inconclusive|"
    r"not enough information|insufficient information)\b"
)
_FAKE = (
    r"ai generated|computer generated|deep ?fakes?|fakes?|faked|forged|forgery|forgeries|manipulated|manipulations?|"
    r"synthetic|synthesi[sz]ed|generated|altered|alterations?|tampered|tampering|doctored|edited|counterfeit|"
    r"artificial(?:ly created)?|spoofed|photoshopped|morphed|swapped"
)
_REAL = (
    r"bona fide|genuine|authentic|pristine|unaltered|unmanipulated|untampered|unedited|legitimate|"
    r"real(?! (?:person|people|human|individual|world|life|time|identity))"
)
_TERM = re.compile(rf"\b(?:(?P<fake>{_FAKE})|(?P<real>{_REAL}))\b")
_NEGATION = re.compile(r"\b(?:not|no|never|without|nor|none|neither|lacks?|lacking|free (?:of|from)|absence of)\b")
_COORDINATION = re.compile(r"^\s*(?:,|or|and|nor|,? or|,? and)?\s*$")
_CLAUSE_SPLIT = re.compile(r"[,;:]|\b(?:but|however|although|though|while|whereas|because|since|so|and)\b")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_YES = ("yes", "yeah", "yep", "correct", "indeed", "absolutely", "definitely", "certainly")
_YES_NO = re.compile(
    r"^\W*(?:(?:the )?(?:final )?answer(?: is)?\W*)?"
    r"(?P<word>(?:absolutely|definitely|certainly|of course) not|not really|yes|yeah|yep|correct|indeed|absolutely|"
    r"definitely|certainly|no|nope)\b(?=\s*(?:[^\w\s]|$|it|this|that|the|i|there|image|face))"
)
_NEGATION_WINDOW_WORDS = 7


def _clause_claims(clause: str) -> list[str]:
    claims: list[str] = []
    prev_end, prev_negated = 0, False
    for match in _TERM.finditer(clause):
        gap = clause[prev_end : match.start()]
        window = " ".join(gap.split()[-_NEGATION_WINDOW_WORDS:])
        if claims and _COORDINATION.match(gap):
            negated = prev_negated  # "no signs of manipulation or forgery": the negation distributes
        else:
            negated = bool(_NEGATION.search(window))
        is_fake = match.group("fake") is not None
        claims.append("forgery" if is_fake != negated else "bona_fide")
        prev_end, prev_negated = match.end(), negated
    return claims


def _content_claims(text: str) -> list[str]:
    return [c for clause in _CLAUSE_SPLIT.split(text) for c in _clause_claims(clause)]


def parse_dfd(response: str, polarity: str) -> str:
    """Map a response to a yes/no DF-D question onto 'forgery', 'bona_fide' or 'unparseable'.

    `polarity` is 'forged' when "yes" asserts forgery, 'authentic' when "yes" asserts bona fide.
    """
    if polarity not in ("forged", "authentic"):
        raise ValueError(f"unknown polarity {polarity!r}")
    text = normalise(response or "")
    if not text or _HEDGE.search(text):
        return UNPARSEABLE

    yes_no = None
    rest = text
    if match := _YES_NO.match(text):
        says_yes = match.group("word") in _YES
        yes_no = "forgery" if says_yes == (polarity == "forged") else "bona_fide"
        rest = text[match.end() :]

    content = None
    for scope in (_SENTENCE_SPLIT.split(rest.strip())[0], rest):
        claims = set(_content_claims(scope))
        if len(claims) == 1:
            content = claims.pop()
            break

    if yes_no and content and yes_no != content:
        return UNPARSEABLE
    return yes_no or content or UNPARSEABLE


# --- DF-C ---------------------------------------------------------------------------------------

_CATEGORY_PATTERNS = {
    "bona_fide": (
        r"bona fide|genuine|authentic|pristine|unmanipulated|unaltered|no (?:manipulation|forgery)|"
        r"not (?:been )?(?:manipulated|forged|altered|fake)|"
        r"(?:is|looks|appears|seems|be|a) (?:to be )?(?:a )?real(?! (?:person|people|human|individual|identity))"
    ),
    "face_swapping": (
        r"face ?swap\w*|swap(?:ped|ping|s)? (?:the |of )?(?:faces?|identit\w+)|identity (?:swap\w*|replacement)|"
        r"(?:face|identity) (?:was|has been|is|had been) (?:swapped|replaced|exchanged)"
    ),
    "face_reenactment": (
        r"re ?enact\w*|puppeteer\w*|lip ?sync\w*|expression (?:transfer|swap\w*)|talking head\w*|motion transfer"
    ),
    "face_editing": (
        r"face editing|facial editing|edited face|(?:facial )?attributes? (?:edit\w*|manipulation|modification)|"
        r"edit(?:ed|ing)? (?:of )?(?:facial )?attributes?|local (?:attribute )?edit\w*|"
        r"(?:was|were|been|is|are) (?:digitally |locally )?(?:edited|retouched)"
    ),
    "entire_face_synthesis": (
        r"entire(?:ly)? (?:face )?synthe\w*|entire face|whole face synthe\w*|face synthesis|"
        r"(?:fully|completely|entirely|wholly) (?:synthetic|synthesi[sz]ed|generated|ai generated)|"
        r"(?:gan|diffusion|stylegan)(?: model)? (?:generated|synthesi[sz]ed)|"
        r"generated (?:entirely )?(?:by|with|from) (?:a |an )?(?:gan|diffusion|stylegan|generative)|"
        r"synthetic face|synthesi[sz]ed face|generated face|non ?existent person|"
        r"(?:produced|generated|created|synthesi[sz]ed) (?:entirely )?from scratch|by a generative model"
    ),
}
_ABBREVIATIONS = {"FS": "face_swapping", "FR": "face_reenactment", "FE": "face_editing", "EFS": "entire_face_synthesis"}
_CATEGORY_RE = re.compile("|".join(f"(?P<{c}>{p})" for c, p in _CATEGORY_PATTERNS.items()))
_ABBREVIATION_RE = re.compile(r"\b(EFS|FS|FR|FE)\b")
_NAME_NEGATION = re.compile(
    r"\b(?:not|no|never|rather than|instead of|unlike|neither|nor|excluding)\b(?:\s+\w+){0,3}\s*$"
)
_NAME_CLAUSE_SPLIT = re.compile(r"[,.;:!?]|\b(?:but|however|although|while|whereas)\b")
_LETTER_ALONE = re.compile(r"^\W*\(?([A-Ea-e])\)?[.):]?\W*$")
_LETTER_LEAD = re.compile(r"^\W*(?:\(([A-E])\)|([A-E])(?:[.):]|\s*$))")
_LETTER_ANYWHERE = re.compile(r"\(([A-E])\)|\b(?i:option|answer|choice)\s*(?:is\s*)?:?\s*\(?([A-E])\b")


def _letters(response: str) -> set[str]:
    if match := _LETTER_ALONE.match(response):
        return {match.group(1).upper()}
    found = {g for m in _LETTER_LEAD.finditer(response) for g in m.groups() if g}
    found |= {g for m in _LETTER_ANYWHERE.finditer(response) for g in m.groups() if g}
    return found


def _negated(prefix: str) -> bool:
    """Whether a negation governs what follows `prefix` (within its clause)."""
    clause = _NAME_CLAUSE_SPLIT.split(normalise(prefix))[-1]
    return bool(_NAME_NEGATION.search(clause))


def _named_categories(response: str) -> set[str]:
    text = normalise(response)
    found = {m.lastgroup for m in _CATEGORY_RE.finditer(text) if not _negated(text[: m.start()])}
    found |= {
        _ABBREVIATIONS[m.group(1)] for m in _ABBREVIATION_RE.finditer(response) if not _negated(response[: m.start()])
    }
    return found


def parse_dfc(response: str, options: Sequence[dict]) -> str:
    """Map a response to a DF-C multiple-choice item onto one of the five categories, or 'unparseable'.

    `options` are the item's {letter, category, text} entries in shown order.
    """
    text = (response or "").strip()
    if not text:
        return UNPARSEABLE
    letter_to_category = {o["letter"]: o["category"] for o in options}
    categories = {letter_to_category[letter] for letter in _letters(text) if letter in letter_to_category}
    categories |= _named_categories(text)
    return categories.pop() if len(categories) == 1 else UNPARSEABLE


def parse(item: dict, response: str) -> str:
    """Parse a response for a dfd or dfc item."""
    if item["task"] == "dfd":
        return parse_dfd(response, item["polarity"])
    if item["task"] == "dfc":
        return parse_dfc(response, item["options"])
    raise ValueError(f"task {item['task']!r} has no categorical answer to parse")
