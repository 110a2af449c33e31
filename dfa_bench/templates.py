"""Instruction template libraries and the deterministic question/answer renderer.

A template is chosen from (seed, record_id, task) by hashing, never by a global RNG, so the same
record always gets the same question no matter how many other records a bench holds or in
which order they come.
"""

from __future__ import annotations

import hashlib
import json
import random
from functools import cache
from importlib import resources

from dfa_bench.schema import CATEGORIES, CATEGORY_EXPLANATIONS, CATEGORY_NAMES, LABELS

LETTERS = "ABCDE"


@cache
def library() -> dict:
    """The shipped template library: dfd (with polarity), dfc stems and ad questions."""
    return json.loads(resources.files("dfa_bench").joinpath("data/templates.json").read_text(encoding="utf-8"))


def stable_rng(seed: int, record_id: str, purpose: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x1f{record_id}\x1f{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# The questions alone (no answer), chosen from (seed, record id): the bench's items and the interactive
# demo's analysis (`dfa-gpt chat /analyse`) ask through these, so both ask alike.


def dfd_question(record_id: str, seed: int) -> dict:
    template = stable_rng(seed, record_id, "dfd").choice(library()["dfd"])
    return {"question": template["text"] + library()["dfd_suffix"], "polarity": template["polarity"]}


def dfc_question(record_id: str, seed: int) -> dict:
    stem = stable_rng(seed, record_id, "dfc").choice(library()["dfc"])
    order = list(CATEGORIES)
    stable_rng(seed, record_id, "dfc-options").shuffle(order)
    options = [{"letter": letter, "category": c, "text": CATEGORY_NAMES[c]} for letter, c in zip(LETTERS, order)]
    lines = [stem, *(f"{o['letter']}. {o['text']}" for o in options), library()["dfc_suffix"]]
    return {"question": "\n".join(lines), "options": options}


def ad_question(record_id: str, seed: int) -> dict:
    return {"question": stable_rng(seed, record_id, "ad").choice(library()["ad"])}


def caption_item(record: dict, seed: int) -> dict:
    """A stage-1 (alignment) caption: a plain "what is this face?" question whose answer is the DF-C answer
    (the category's name, then its explanation), with no options to read: its words follow from the image
    alone, the direct signal a projector aligned with a frozen LM learns from (`dfa-gpt train --stage align`)."""
    question = stable_rng(seed, record["record_id"], "caption").choice(library()["caption"])
    return {"question": question, "answer": dfc_answer(record["category"])}


def dfd_answer(polarity: str, label: str) -> str:
    """The DF-D reference answer to a question of `polarity` about a face of `label`: the verdict first, then
    the yes/no it makes. The first answer word is what the image decides ("forged" / "bona fide"); a leading
    "Yes"/"No" would be the image's verdict crossed with the question's polarity, a composition a model
    trained on few images fails to learn (docs/dfa_gpt.md, "Learnability")."""
    is_forgery = label == "forgery"
    says_yes = is_forgery == (polarity == "forged")
    verdict = "forged" if is_forgery else "a bona fide, unmanipulated face"
    return f"This face image is {verdict}, so the answer is {'yes' if says_yes else 'no'}."


def dfd_answer_label(answer: str) -> str | None:
    """The label a DF-D reference answer (`dfd_answer`, either polarity) states; None for any other text."""
    for label in LABELS:
        if any(answer.strip() == dfd_answer(polarity, label) for polarity in ("forged", "authentic")):
            return label
    return None


def dfc_answer(category: str) -> str:
    """The DF-C reference answer: the category's name and a one-sentence explanation (the paper's format).
    The option letter is left out: it is the category looked up in a shuffled list, not something the image
    shows, and parse_dfc reads the name."""
    return f"{CATEGORY_NAMES[category]}. {CATEGORY_EXPLANATIONS[category]}"


def dfd_item(record: dict, seed: int) -> dict:
    item = dfd_question(record["record_id"], seed)
    answer = dfd_answer(item["polarity"], record["label"])
    return {"question": item["question"], "answer": answer, "polarity": item["polarity"]}


def dfc_item(record: dict, seed: int) -> dict:
    item = dfc_question(record["record_id"], seed)
    return {"question": item["question"], "answer": dfc_answer(record["category"]), "options": item["options"]}


def ad_item(record: dict, seed: int) -> dict:
    return {"question": ad_question(record["record_id"], seed)["question"], "answer": record["artifact_description"]}


def question_items(record: dict, seed: int, image: str) -> list[dict]:
    """All question items for one validated record: dfd and dfc always, ad for forgeries with a reference."""
    common = {
        "record_id": record["record_id"],
        "image": image,
        "label": record["label"],
        "category": record["category"],
        "technique": record["technique"],
        "identity": record["identity"],
    }
    builders = {"dfd": dfd_item, "dfc": dfc_item}
    if record["label"] == "forgery" and record["artifact_description"]:
        builders["ad"] = ad_item
    return [
        {"question_id": f"{record['record_id']}:{task}", "task": task, **common, **build(record, seed)}
        for task, build in builders.items()
    ]
