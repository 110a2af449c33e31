"""DFA-Instruct step 3 outputs: LLaVA-format training conversations, and the train/held-out leak check.

QA pairs come from the same template libraries as the bench (dfa_bench.templates), so a trained
model sees the question styles it is tested on, never the test images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from dfa_bench.io import write_json
from dfa_bench.templates import question_items

ABILITIES = ("dfd", "dfc", "ad")


def llava_conversations(
    records: Iterable[dict], image_of: Callable[[dict], str], *, seed: int
) -> dict[str, list[dict]]:
    """{"dfd": [...], "dfc": [...], "ad": [...], "merged": [...]}: LLaVA entries with an `<image>` turn."""
    out: dict[str, list[dict]] = {ability: [] for ability in ABILITIES}
    for record in records:
        for item in question_items(record, seed, image_of(record)):
            out[item["task"]].append(llava_entry(item))
    out["merged"] = [entry for ability in ABILITIES for entry in out[ability]]
    return out


def llava_entry(item: dict) -> dict:
    """One question item as a LLaVA training conversation (the image token opens the first turn)."""
    return {
        "id": item["question_id"],
        "image": item["image"],
        "conversations": [
            {"from": "human", "value": f"<image>\n{item['question']}"},
            {"from": "gpt", "value": item["answer"]},
        ],
    }


def caption_entry(record: dict, image: str, seed: int) -> dict:
    """The record's stage-1 caption (dfa_bench.templates.caption_item) as a LLaVA entry, id `<record>:caption`."""
    from dfa_bench.templates import caption_item

    item = caption_item(record, seed)
    return llava_entry({"question_id": f"{record['record_id']}:caption", "image": image, **item})


def write_training_json(output: Path | str, conversations: dict[str, list[dict]]) -> list[Path]:
    """One JSON file per ability plus the merged one (each written atomically)."""
    paths = []
    for name, entries in conversations.items():
        path = Path(output) / f"dfa_instruct_{name}.json"
        write_json(path, entries)
        paths.append(path)
    return paths


def _digests(paths: Iterable[Path]) -> dict[str, Path]:
    return {hashlib.sha256(Path(p).read_bytes()).hexdigest(): Path(p) for p in paths}


def check_no_leak(training_images: Iterable[Path], heldout_images: Iterable[Path]) -> None:
    """Raise if any training image has the same bytes as a dev or test image (whatever its name)."""
    training = _digests(training_images)
    leaks = [(training[d], p) for d, p in _digests(heldout_images).items() if d in training]
    if leaks:
        shown = "; ".join(f"{a} == {b}" for a, b in leaks[:5])
        raise ValueError(f"{len(leaks)} training images are also dev/test images: {shown}")
