"""A small generated source (cartoon faces + records) for tests, benchmarks and the demo.

This is not deepfake data: it exercises the record -> bench -> evaluation plumbing with images
a vision model can open. The real embedded benchmark is built by the DFA-Instruct pipeline.
"""

from __future__ import annotations

import random
from pathlib import Path

from dfa_bench.instruct.regions import ARTIFACT_DESCRIPTIONS, REGIONS
from dfa_bench.io import write_jsonl
from dfa_bench.schema import CATEGORIES, label_of

TECHNIQUES = {
    "bona_fide": ("",),
    "face_swapping": ("simswap", "inswap", "faceswap"),
    "face_reenactment": ("fomm", "wav2lip", "sadtalker"),
    "face_editing": ("stargan", "styleclip", "e4e"),
    "entire_face_synthesis": ("stylegan2", "ddim", "sd2.1"),
}


def artifact_description(rng: random.Random, n_regions: int | None = None) -> str:
    """A random AD reference in the paper's style (the real ones come from regions.describe_artifacts)."""
    regions = rng.sample(REGIONS, n_regions or rng.randint(2, 4))
    templates = sorted(ARTIFACT_DESCRIPTIONS.values())
    return "\n".join(
        f"{i}. {region}: {rng.choice(templates).format(region=region.lower())}." for i, region in enumerate(regions, 1)
    )


def draw_face(path: Path, rng: random.Random, size: int = 64) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), tuple(rng.randint(0, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    skin = (rng.randint(150, 255), rng.randint(110, 200), rng.randint(80, 170))
    m = size // 8
    draw.ellipse((m, m, size - m, size - m // 2), fill=skin)
    for x in (size * 3 // 8, size * 5 // 8):
        draw.ellipse((x - 3, size * 3 // 8 - 2, x + 3, size * 3 // 8 + 2), fill=(30, 30, 30))
    draw.line((size * 3 // 8, size * 11 // 16, size * 5 // 8, size * 11 // 16), fill=(150, 40, 40), width=2)
    image.save(path)


def make_source(output: Path | str, n_records: int = 40, *, seed: int = 0, image_size: int = 64) -> Path:
    """Write `images/` and `records.jsonl` with the five categories in turn; returns the records path."""
    output = Path(output)
    (output / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    records = []
    for i in range(n_records):
        category = CATEGORIES[i % len(CATEGORIES)]
        image = f"images/face_{i:06d}.png"
        draw_face(output / image, rng, image_size)
        records.append(
            {
                "record_id": f"syn{i:06d}",
                "image": image,
                "label": label_of(category),
                "category": category,
                "technique": rng.choice(TECHNIQUES[category]),
                "identity": f"id{i // 10:05d}",
                "artifact_description": artifact_description(rng) if category != "bona_fide" else "",
            }
        )
    write_jsonl(output / "records.jsonl", records)
    return output / "records.jsonl"
