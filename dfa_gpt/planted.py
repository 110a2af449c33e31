"""A planted-cue set: images whose category is written on them, for checking that a trainer reads the image.

Every image is noise of its own, with a solid square of its category's colour in two corners. Any classifier
separates the categories perfectly from the pixels, and nothing else (question, option order, answer
format) tells them apart. A model trained on the train split that stays near chance on the held-out split
ignores its image tokens; `dfa-gpt guard` and tests/test_dfa_gpt_guard.py train on it and check.

    OUT/images/*.png
    OUT/records/{train,dev}.jsonl          DFA-Bench records (dfa_bench.schema)
    OUT/instruct/dfa_instruct_merged.json  DF-D and DF-C training conversations of the train split
    OUT/instruct/dfa_instruct_caption.json stage-1 captions of the train split (the category named first)
    OUT/bench/dev/                         a DFA-Bench directory of the held-out split
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dfa_bench.bench import build_bench
from dfa_bench.instruct.llava_json import caption_entry, llava_entry
from dfa_bench.io import write_json, write_jsonl
from dfa_bench.schema import CATEGORIES, label_of
from dfa_bench.templates import question_items

# one colour per category, far apart in RGB
COLOURS = {
    "bona_fide": (0, 200, 0),
    "face_swapping": (220, 0, 0),
    "face_reenactment": (0, 0, 230),
    "face_editing": (240, 220, 0),
    "entire_face_synthesis": (230, 0, 230),
}


def planted_image(category: str, size: int, rng: np.random.Generator) -> Image.Image:
    """Mid-grey pixel noise with the category's colour in the top-left and bottom-right quarter-size squares.
    (Noise, not a smooth background: on smooth colours EfficientNet-Lite0's 2 x 2 map at 64 px separates the
    squares' colours only 65-70% of the time, on noise perfectly; tests/test_dfa_gpt_guard.py checks it.)"""
    pixels = rng.integers(60, 196, (size, size, 3), dtype=np.uint8)
    side = max(size // 4, 2)
    pixels[:side, :side] = COLOURS[category]
    pixels[-side:, -side:] = COLOURS[category]
    return Image.fromarray(pixels)


def build_planted_set(output: Path | str, *, per_category: int = 16, heldout_per_category: int = 8,
                      size: int = 64, seed: int = 0) -> dict[str, Path]:  # fmt: skip
    """Write the set; returns {"data", "captions", "images", "dev"}: the DF-D + DF-C training JSON, the stage-1
    captions, their image root and the dev bench."""
    output = Path(output)
    rng = np.random.default_rng(seed)
    (output / "images").mkdir(parents=True, exist_ok=True)
    splits = {"train": per_category, "dev": heldout_per_category}
    records: dict[str, list[dict]] = {}
    for split, count in splits.items():
        rows = []
        for category in CATEGORIES:
            for i in range(count):
                record_id = f"planted-{split}-{category}-{i:03d}"
                name = f"images/{record_id}.png"
                planted_image(category, size, rng).save(output / name)
                label = label_of(category)
                rows.append({
                    "record_id": record_id, "image": name, "label": label, "category": category,
                    "technique": "planted colour cue" if label == "forgery" else "", "identity": record_id,
                    "artifact_description": "Two corners carry a solid colour square." if label == "forgery" else "",
                })  # fmt: skip
        write_jsonl(output / "records" / f"{split}.jsonl", rows)
        records[split] = rows
    entries = [
        llava_entry(item)
        for record in records["train"]
        for item in question_items(record, seed, record["image"])
        if item["task"] in ("dfd", "dfc")
    ]
    write_json(output / "instruct" / "dfa_instruct_merged.json", entries)
    captions = [caption_entry(record, record["image"], seed) for record in records["train"]]
    write_json(output / "instruct" / "dfa_instruct_caption.json", captions)
    build_bench(output / "records" / "dev.jsonl", output, output / "bench" / "dev", seed=seed, name="planted-cue")
    return {"data": output / "instruct" / "dfa_instruct_merged.json",
            "captions": output / "instruct" / "dfa_instruct_caption.json",
            "images": output, "dev": output / "bench" / "dev"}  # fmt: skip
