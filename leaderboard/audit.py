"""`dfa-bench leaderboard audit`: re-ask a seeded sample of an entry's questions with the model it claims.

`submit` recomputes every metric from the logged answers, so edited metrics are caught; answers edited
before submission (wrong made right, everything derived recomputed) are not. An audit catches those: it
loads the claimed model through its adapter, asks a seeded random sample of the bench's items with the
task YAMLs' generation settings, and compares each new answer with the submitted one (kept beside the entry
in answers/<entry>.jsonl, its hash in the entry):

- DF-D and DF-C: they agree when both parse to the same verdict, or when the texts themselves agree
  (ROUGE-L between the two answers >= TEXT_AGREEMENT: two unparseable answers agree only if alike);
- AD: they agree when ROUGE-L between the two answers >= AD_AGREEMENT (greedy decoding on other hardware
  may drift late in a long answer);
- DF-D forgery probabilities, where both the entry and the model give one: within PROBABILITY_TOLERANCE.

The sample is drawn when the audit runs, from a fresh random seed unless `seed` is given (to repeat an audit),
and stratified over the tasks, so an entry cannot know which answers will be checked. One disagreement fails
it: a share f of edited answers escapes a sample of n with probability (1 - f)^n, about 3% for 10% edited
answers and the default n = 32 (`detection`). The entry is `verified` when every sampled answer agrees,
`failed` otherwise; the result, with the sample, seed, date, package versions and that detection probability,
is written into the entry.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from datetime import UTC, datetime
from pathlib import Path

from dfa_bench.bench import read_bench
from dfa_bench.contract import Query, is_dfa_adapter
from dfa_bench.environment import package_versions
from dfa_bench.evaluate import parse_model_args, redact_model_args
from dfa_bench.imaging import load_rgb
from dfa_bench.io import iter_jsonl
from dfa_bench.leaderboard.entries import answers_path, bench_path, entry_path, read_config, read_entry, write_entry
from dfa_bench.parsing import parse
from dfa_bench.rouge import rouge_l
from dfa_bench.schema import UNPARSEABLE, ValidationError

TEXT_AGREEMENT = 0.8
AD_AGREEMENT = 0.5
PROBABILITY_TOLERANCE = 0.05  # |P(forgery) re-asked - submitted|: bf16 on other hardware moves it by ~0.01
DEFAULT_SAMPLE = 32  # 1 - 0.9^32 = 96.6% >= 95%: 10% edited answers are caught (the bar)
EDITED_SHARE = 0.1  # the share of edited answers the entry's `detection` is stated for
SHOWN = 5  # disagreements listed in the entry


def fresh_seed() -> int:
    """A seed nobody could know when the entry was submitted."""
    return secrets.randbits(32)


def detection_probability(sample: int, edited_share: float = EDITED_SHARE) -> float:
    """The chance that a sample of `sample` answers holds at least one of a share `edited_share` of edited
    answers (drawn with replacement: a lower bound for a finite bench)."""
    return 1.0 - (1.0 - edited_share) ** sample


def stratified_sample(items: list[dict], n: int, rng: random.Random) -> list[dict]:
    """n items spread over the tasks in turn (DF-D, DF-C, AD, DF-D ...), each task's drawn at random."""
    by_task = {task: rng.sample(group, len(group)) for task in ("dfd", "dfc", "ad")
               if (group := [i for i in items if i["task"] == task])}  # fmt: skip
    chosen: list[dict] = []
    while len(chosen) < n and any(by_task.values()):
        for group in by_task.values():
            if group and len(chosen) < n:
                chosen.append(group.pop())
    return chosen


def submitted_answers(leaderboard_dir: Path | str, entry: dict) -> dict[str, str | None]:
    """{question_id: response} as submitted; refused when the file is not the one the entry hashed."""
    path = answers_path(leaderboard_dir, entry["model"])
    if not path.is_file():
        raise ValidationError(
            "no submitted answers kept for this entry (submitted before audits existed?)", path=str(path)
        )
    if hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("answers_sha256"):
        raise ValidationError(
            "these answers are not the ones submitted (sha256 differs from the entry's)", path=str(path)
        )
    return {row["question_id"]: row for _, row in iter_jsonl(path)}


def probabilities_agree(new: float | None, old: float | None) -> bool:
    """Re-asked and submitted DF-D forgery probabilities agree (either missing: nothing to compare)."""
    return new is None or old is None or abs(float(new) - float(old)) <= PROBABILITY_TOLERANCE


def agrees(item: dict, new: str, old: str | None) -> bool:
    old = old or ""
    if new.strip() == old.strip():
        return True
    if item["task"] in ("dfd", "dfc"):
        verdict = parse(item, new)
        if verdict != UNPARSEABLE and verdict == parse(item, old):
            return True
        return rouge_l(old, new) >= TEXT_AGREEMENT
    return rouge_l(old, new) >= AD_AGREEMENT


def claimed_adapter(model: str, model_args: dict) -> object:
    """The claimed model through its lmms-eval adapter class, which must be a DFA adapter (ours or a subclass)."""
    from dfa_bench.evaluate import model_class

    cls = model_class(model)
    if not is_dfa_adapter(cls):
        raise ValidationError(f"--model {model}: an audit asks through a DFA adapter (dfa_*, or a DFAAdapter subclass)")
    return cls(**model_args)


def audit_entry(
    leaderboard_dir: Path | str,
    name: str,
    model: str,
    model_args: str = "",
    *,
    sample: int = DEFAULT_SAMPLE,
    seed: int | None = None,
    batch_size: int = 8,
) -> dict:
    """Audit one entry and write the result into it; returns the audit record. `seed`: None draws a fresh one
    (recorded, so the audit can be repeated)."""
    path = entry_path(leaderboard_dir, name)
    if not path.is_file():
        raise ValidationError(f"no entry named {name!r} on this leaderboard", path=str(path))
    entry = read_entry(path)
    if entry["provenance"] != "measured":
        raise ValidationError("only measured entries can be audited", path=str(path))
    answers = submitted_answers(leaderboard_dir, entry)
    bench = read_bench(bench_path(leaderboard_dir, read_config(leaderboard_dir)))
    items = [i for i in bench.items if i["question_id"] in answers]
    seed = fresh_seed() if seed is None else seed
    chosen = stratified_sample(items, sample, random.Random(seed))
    adapter = claimed_adapter(model, parse_model_args(model_args))

    agreeing, disagreements = 0, []
    for task in ("dfd", "dfc", "ad"):
        task_items = [i for i in chosen if i["task"] == task]
        for start in range(0, len(task_items), batch_size):
            batch = task_items[start : start + batch_size]
            queries = [Query.for_item(i, [load_rgb(bench.image_path(i))]) for i in batch]
            for item, answer in zip(batch, adapter.answer(queries)):
                submitted = answers[item["question_id"]]
                if not agrees(item, answer.response, submitted["response"]):
                    disagreements.append(item["question_id"])
                elif task == "dfd" and not probabilities_agree(answer.score, submitted.get("score")):
                    disagreements.append(f"{item['question_id']} (P(forgery) {answer.score:.3f}, "
                                         f"submitted {submitted['score']:.3f})")  # fmt: skip
                else:
                    agreeing += 1
    agreement = agreeing / len(chosen) if chosen else 0.0
    record = {
        "status": "verified" if chosen and agreeing == len(chosen) else "failed",
        "agreement": agreement,
        "sample": len(chosen),
        "sample_by_task": {t: sum(i["task"] == t for i in chosen) for t in ("dfd", "dfc", "ad")},
        "detection": {
            "edited_share": EDITED_SHARE,
            "caught_probability": round(detection_probability(len(chosen)), 4),
            "note": "a share f of edited answers escapes this sample with probability (1 - f)^sample",
        },
        "seed": seed,
        "model": model,
        "model_args": redact_model_args(model_args),
        "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "versions": package_versions(),
        "disagreements": disagreements[:SHOWN],
    }
    write_entry(leaderboard_dir, {**entry, "audit": record}, replace=True)
    return record
