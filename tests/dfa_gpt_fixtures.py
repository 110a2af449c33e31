"""A generated LLaVA-format training set (all four abilities, multi-turn FC) for the DFA-GPT tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

ANSWERS = {
    "dfd": ("Is this face real or fake? Answer yes or no.", "Yes. This face image is forged."),
    "dfc": ("Which forgery is it? A. B. C. D. E.", "Face swapping (FS)."),
    "ad": ("Describe the artifacts.", "1. Eyes: a visible blending seam. 2. Mouth and lips: colour mismatch."),
}


def make_training_data(root: Path, n_images: int = 6, *, seed: int = 0) -> tuple[Path, Path]:
    """(train JSON, images root): one DF-D, DF-C and AD entry per image, and a two-turn FC conversation."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n_images):
        name = f"face_{i}.png"
        Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(images / name)
        real = i % 2 == 0
        for task, (question, answer) in ANSWERS.items():
            if real and task == "dfd":
                answer = "No. This face image is a bona fide, unmanipulated face."
            entries.append({
                "id": f"rec{i}:{task}",
                "image": name,
                "conversations": [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}],
            })  # fmt: skip
        entries.append({
            "id": f"rec{i}:fc",
            "image": name,
            "conversations": [
                {"from": "human", "value": "<image>\nIs this face real or fake?"},
                {"from": "gpt", "value": "Yes. This face image is forged."},
                {"from": "human", "value": "Where are the artifacts?"},
                {"from": "gpt", "value": "Cheeks and jawline: warping."},
            ],
        })  # fmt: skip
    data = root / "train.json"
    data.write_text(json.dumps(entries), encoding="utf-8")
    return data, images
