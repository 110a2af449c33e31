"""Floors: what answers that never look at the image score on a bench, with the same scorer as any model.

Each floor is a set of answers made from the bench's questions and labels alone, scored by
`scoring.score_predictions` and written as a run directory (`dfa_bench.rundir`), so `dfa-bench compare` tests a
model against it item by item and the leaderboard shows it as a reference row:

- majority: DF-D and DF-C answer the most frequent label and category; AD answers the single best constant,
  the reference with the highest mean ROUGE-L against the other references;
- random: DF-D and DF-C guess uniformly at random, balanced (each true class's items are split evenly over
  the answers in a seeded random order, so the scores are chance up to rounding), DF-D P(forgery) 0.5;
  AD answers another item's reference drawn at random;
- category-oracle (AD only): each item gets the most central reference of its true category, what a model
  that knows the forgery type, but not where this face was edited, could write.

What a floor chooses (the majority, the constants) is chosen on `choose_on`: the dev split where one is given,
else the bench itself (an optimistic floor: a constant then scores 1 on its own item).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from dfa_bench.bench import Bench
from dfa_bench.rouge import rouge_l_tokens, tokens
from dfa_bench.rundir import write_results
from dfa_bench.schema import CATEGORIES, FORGERY_CATEGORIES, LABELS
from dfa_bench.scoring import score_predictions
from dfa_bench.templates import dfc_answer, dfd_answer

FLOORS = {
    "majority": "floor: majority class, best constant AD",
    "random": "floor: uniform random",
    "category-oracle": "floor: category oracle (AD)",
}
# Central references are chosen among at most this many (drawn with the seed): the choice costs pairs of them.
MAX_CANDIDATES = 300


def central_reference(references: list[str], *, seed: int = 0) -> str | None:
    """The reference with the highest mean ROUGE-L against the others (scored as an answer to each); ties go to
    the first in sorted order. Among at most MAX_CANDIDATES, drawn with `seed`."""
    pool = sorted(set(references))
    if len(pool) > MAX_CANDIDATES:
        pool = sorted(random.Random(seed).sample(pool, MAX_CANDIDATES))
    if len(pool) < 2:
        return pool[0] if pool else None
    toks = [tokens(text) for text in pool]
    means = [sum(rouge_l_tokens(other, mine) for j, other in enumerate(toks) if j != i) / (len(toks) - 1)
             for i, mine in enumerate(toks)]  # fmt: skip
    return pool[max(range(len(pool)), key=lambda i: (means[i], -i))]


def _balanced(items: list[dict], truth: str, answers: tuple[str, ...], rng: random.Random) -> dict[str, str]:
    """{question_id: answer}: each true class's items, shuffled, get the answers in turn from a random start."""
    out: dict[str, str] = {}
    for value in sorted({item[truth] for item in items}):
        group = [item["question_id"] for item in items if item[truth] == value]
        rng.shuffle(group)
        start = rng.randrange(len(answers))
        out.update({qid: answers[(start + k) % len(answers)] for k, qid in enumerate(group)})
    return out


def floor_answers(bench: Bench, name: str, *, choose_on: Bench | None = None, seed: int = 0) -> dict[str, dict]:
    """The floor's predictions, {question_id: {"response", "score"}}, for the tasks it answers."""
    choose_on = choose_on or bench
    references = [item["answer"] for item in choose_on.items_for("ad")]
    rng = random.Random(seed)
    answers: dict[str, dict] = {}
    if name == "majority":
        labels = Counter(item["label"] for item in choose_on.items_for("dfd"))
        label = max(LABELS, key=lambda value: (labels[value], value == "forgery"))
        share = labels["forgery"] / max(sum(labels.values()), 1)
        categories = Counter(item["category"] for item in choose_on.items_for("dfc"))
        category = max(CATEGORIES, key=lambda value: (categories[value], -CATEGORIES.index(value)))
        constant = central_reference(references, seed=seed)
        for item in bench.items_for("dfd"):
            answers[item["question_id"]] = {"response": dfd_answer(item["polarity"], label), "score": share}
        for item in bench.items_for("dfc"):
            answers[item["question_id"]] = {"response": dfc_answer(category), "score": None}
        for item in bench.items_for("ad"):
            answers[item["question_id"]] = {"response": constant, "score": None}
    elif name == "random":
        verdicts = _balanced(bench.items_for("dfd"), "label", LABELS, rng)
        guesses = _balanced(bench.items_for("dfc"), "category", CATEGORIES, rng)
        for item in bench.items_for("dfd"):
            answers[item["question_id"]] = {"response": dfd_answer(item["polarity"], verdicts[item["question_id"]]),
                                            "score": 0.5}  # fmt: skip
        for item in bench.items_for("dfc"):
            answers[item["question_id"]] = {"response": dfc_answer(guesses[item["question_id"]]), "score": None}
        for item in bench.items_for("ad"):
            others = [text for text in references if text != item["answer"]] or references
            answers[item["question_id"]] = {"response": rng.choice(others), "score": None}
    elif name == "category-oracle":
        fallback = central_reference(references, seed=seed)
        by_category = {
            category: central_reference(
                [item["answer"] for item in choose_on.items_for("ad") if item["category"] == category], seed=seed
            )
            or fallback
            for category in FORGERY_CATEGORIES
        }
        for item in bench.items_for("ad"):
            answers[item["question_id"]] = {"response": by_category[item["category"]], "score": None}
    else:
        raise ValueError(f"unknown floor {name!r}; known: {', '.join(FLOORS)}")
    return answers


def score_floor(
    bench: Bench, name: str, *, choose_on: Bench | None = None, seed: int = 0
) -> tuple[dict, list[dict], list[dict]]:
    """(metrics, judged rows, predictions) of one floor on `bench`."""
    answers = floor_answers(bench, name, choose_on=choose_on, seed=seed)
    predictions = {qid: {**p, "line": i} for i, (qid, p) in enumerate(answers.items(), 1)}
    metrics, rows, _ = score_predictions(bench, predictions, only_answered=True, seed=seed)
    lines = [{"question_id": qid, "task": bench.by_id[qid]["task"], **p} for qid, p in answers.items()]
    return metrics, rows, lines


def floor_run(bench: Bench, name: str, *, choose_on: Bench | None = None, seed: int = 0) -> dict:
    """run.json of a floor (model "floor", model_args "name=<floor>"), as `dfa-bench compare` reads runs."""
    return {
        "model": "floor",
        "model_args": f"name={name}",
        "floor": {
            "name": name,
            "title": FLOORS[name],
            "chosen_on": str((choose_on or bench).root),
            "chosen_on_manifest_sha256": (choose_on or bench).manifest_sha256,
        },
        "bench": str(bench.root),
        "bench_manifest_sha256": bench.manifest_sha256,
        "seed": seed,
    }


def write_floors(bench: Bench, output: Path | str, *, choose_on: Bench | None = None, seed: int = 0) -> dict[str, dict]:
    """OUTPUT/<floor>/ as finished run directories, one per floor; returns {floor: metrics}."""
    output = Path(output)
    out = {}
    for name in FLOORS:
        metrics, rows, lines = score_floor(bench, name, choose_on=choose_on, seed=seed)
        run_dir = output / name
        run_dir.mkdir(parents=True, exist_ok=True)
        write_results(run_dir, floor_run(bench, name, choose_on=choose_on, seed=seed), lines, metrics, rows)
        out[name] = metrics
    return out
