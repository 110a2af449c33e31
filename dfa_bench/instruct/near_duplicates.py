"""Near-duplicate images across splits, by perceptual hash.

A sha256 check only finds byte-identical files. Augmented copies of one face (flipped, rescaled, shifted,
re-compressed) differ in every byte but keep their low-frequency structure, which pHash summarises in 64
bits. Each image is hashed as it is and mirrored, so a flipped copy matches too; two images of different
splits whose hashes differ in at most `max_bits` bits are reported.

Measured limit (DFA-Bench-mini v2, its 96 bona fide records): on *aligned, augmented faces* pHash does
not separate copies of one face from faces of other people. Copies lie 2 to 22 bits apart, faces of
different people in different splits as close as 8; a 32 x 32 registration search (flip, scale, shift)
with normalised correlation narrows it (copies >= 0.934, other people <= 0.951) but does not close it.
So the mini's splits rely on provenance (every record keeps its source face's identity) and this check
is for photos that were not aligned onto one template.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dfa_bench.imaging import load_rgb

MAX_BITS = 10  # of 64: augmented copies of one face stay well within this; different faces lie ~32 apart


@dataclass(frozen=True)
class NearDuplicate:
    first: str
    second: str
    first_split: str
    second_split: str
    bits: int


def image_hashes(path: Path | str) -> tuple[object, object]:
    """(pHash of the image, pHash of its mirror image)."""
    import imagehash
    from PIL import ImageOps

    image = load_rgb(path)
    return imagehash.phash(image), imagehash.phash(ImageOps.mirror(image))


def near_duplicates(images: Iterable[tuple[str, str]], *, max_bits: int = MAX_BITS) -> list[NearDuplicate]:
    """Pairs of (path, split) in different splits whose images are near-duplicates.

    Quadratic in the number of images, which is fine for DFA-Bench-mini's few hundred; a DF-40-sized
    build would bucket the hashes first.
    """
    hashed = [(path, split, *image_hashes(path)) for path, split in images]
    found = []
    for i, (path_a, split_a, plain_a, _) in enumerate(hashed):
        for path_b, split_b, plain_b, mirror_b in hashed[i + 1 :]:
            if split_a == split_b:
                continue
            bits = min(plain_a - plain_b, plain_a - mirror_b)
            if bits <= max_bits:
                found.append(NearDuplicate(str(path_a), str(path_b), split_a, split_b, int(bits)))
    return found
