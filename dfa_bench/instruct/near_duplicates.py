"""Near-duplicates across splits: is any record image a copy of a face that belongs to another split?

A sha256 check only finds byte-identical files, and an augmented copy (flipped, rescaled, shifted,
re-compressed) differs in every byte. Perceptual hashes do not work on *aligned* faces either: measured on
DFA-Bench-mini's 96 bona fide records, pHash (64 bits, mirror included) puts copies of one face 2 to 22
bits apart and faces of different people in different splits as close as 8. What separates them is
registration: each source face is warped through a grid of flips, scales and shifts covering the
augmentation, and compared with the record image by normalised correlation of the central crop. On the
mini, a bona fide record and its own source face score at least 0.978; any record and the closest face of
another split at most 0.952. `THRESHOLD` sits between. `python benchmarks/mini_splits.py` prints these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfa_bench.imaging import load_rgb

SIZE, CROP = 64, 40  # compare at 64 x 64, on the central 40 x 40 (augmentation borders left out)
THRESHOLD = 0.965
SCALES = np.linspace(0.9, 1.1, 7)  # the mini's augmentation: scale 0.92-1.08, shift +-3%, flip, JPEG
SHIFTS = np.linspace(-2.5, 2.5, 7)  # pixels at SIZE


@dataclass(frozen=True)
class NearDuplicate:
    record: str
    record_split: str
    face: str
    face_split: str
    similarity: float


def _grey(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(
        Image.fromarray(np.asarray(image, np.uint8)).convert("L").resize((SIZE, SIZE), Image.BILINEAR), np.float32
    )


def _normalised(batch: np.ndarray) -> np.ndarray:
    margin = (SIZE - CROP) // 2
    flat = batch[:, margin : margin + CROP, margin : margin + CROP].reshape(len(batch), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)


def best_match(faces: Sequence[np.ndarray], images: Sequence[np.ndarray]) -> np.ndarray:
    """[face, image] similarity: the best normalised correlation of the image with the face over the grid."""
    from scipy.ndimage import affine_transform

    grey = np.stack([_grey(f) for f in faces])
    targets = _normalised(np.stack([_grey(i) for i in images]))
    centre = (SIZE - 1) / 2
    best = np.full((len(faces), len(images)), -1.0, np.float32)
    for flip in (False, True):
        source = grey[:, :, ::-1] if flip else grey
        for scale in SCALES:
            matrix = np.eye(2) / scale  # output pixel -> input pixel
            for dy in SHIFTS:
                for dx in SHIFTS:
                    offset = centre - matrix @ np.array([centre + dy, centre + dx])
                    warped = np.stack([affine_transform(f, matrix, offset=offset, order=1) for f in source])
                    np.maximum(best, _normalised(warped) @ targets.T, out=best)
    return best


def copies_across_splits(
    faces: Iterable[tuple[str, np.ndarray, str]],
    records: Iterable[tuple[str, str]],
    *,
    threshold: float = THRESHOLD,
) -> list[NearDuplicate]:
    """Records (image path, split) that copy a face (name, aligned image, split) of another split."""
    faces, records = list(faces), list(records)
    if not faces or not records:
        return []
    similarity = best_match([f[1] for f in faces], [np.asarray(load_rgb(path)) for path, _ in records])
    found = []
    for j, (path, split) in enumerate(records):
        others = [i for i, f in enumerate(faces) if f[2] != split]
        if not others:
            continue
        i = max(others, key=lambda k: similarity[k, j])
        if similarity[i, j] >= threshold:
            found.append(NearDuplicate(str(Path(path)), split, faces[i][0], faces[i][2], float(similarity[i, j])))
    return found
