"""Facial regions on an aligned square crop, and the offline artifact annotator built on them.

Faces are aligned to the ArcFace 5-point template (scaled to the crop), so each region sits at a
fixed place. Given a forgery's manipulation mask and the artifact kind its generator produces, the
annotator names the regions the mask covers and writes the paper's AD answer style: a numbered
list of "Region: description". Deterministic: same mask and kind, same text.
"""

from __future__ import annotations

import numpy as np

# ArcFace 5-point template on a 112 x 112 crop, as fractions: left eye, right eye, nose, mouth corners.
FIVE_POINT_TEMPLATE = (
    np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]])
    / 112.0
)

REGIONS = ("Forehead", "Eyes", "Nose", "Cheeks and jawline", "Mouth and lips", "Hairline", "Face boundary")
ARTIFACT_DESCRIPTIONS = {
    "blending_seam": "a visible blending seam where the {region} meets the surrounding skin",
    "colour_mismatch": "a colour and lighting mismatch between the {region} and the rest of the face",
    "warping": "geometric warping that bends the natural contours of the {region}",
    "over_smoothing": "over-smoothed texture on the {region}, without natural pores or fine detail",
    "blur": "blurred, low-detail rendering of the {region} compared with the sharp background",
    "asymmetry": "unnatural asymmetry and inconsistent shapes in the {region}",
    "texture_artifact": "repetitive, synthetic-looking texture patterns on the {region}",
    "colour_shift": "an unnatural colour shift on the {region}",
}
_MIN_REGION_SHARE = 0.15  # of the region's pixels covered by the mask
_MIN_MASK_SHARE = 0.2  # of the mask's pixels falling in the region


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def region_masks(size: int) -> dict[str, np.ndarray]:
    """Boolean masks of every region on a size x size aligned crop."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float) / size
    (lx, ly), (rx_, ry_), (nx, ny), (mlx, mly), (mrx, mry) = FIVE_POINT_TEMPLATE
    eye_y, mouth_y, mouth_x = (ly + ry_) / 2, (mly + mry) / 2, (mlx + mrx) / 2
    face = _ellipse(yy, xx, 0.55, 0.5, 0.5, 0.40)
    eyes = _ellipse(yy, xx, ly, lx, 0.06, 0.11) | _ellipse(yy, xx, ry_, rx_, 0.06, 0.11)
    nose = (np.abs(xx - nx) <= 0.09) & (yy >= eye_y + 0.04) & (yy <= ny + 0.05) & ~eyes
    mouth = _ellipse(yy, xx, mouth_y, mouth_x, 0.08, 0.2)
    hairline = (yy < 0.08) & (np.abs(xx - 0.5) <= 0.35)
    forehead = (yy >= 0.08) & (yy < eye_y - 0.08) & (np.abs(xx - 0.5) <= 0.28)
    # a band around the face outline, where swapped or synthesised faces are blended in
    boundary = _ellipse(yy, xx, 0.55, 0.5, 0.53, 0.43) & ~_ellipse(yy, xx, 0.55, 0.5, 0.40, 0.31)
    cheeks = face & (yy > eye_y) & ~(eyes | nose | mouth | boundary)
    return {"Forehead": forehead, "Eyes": eyes, "Nose": nose, "Cheeks and jawline": cheeks, "Mouth and lips": mouth,
            "Hairline": hairline, "Face boundary": boundary}  # fmt: skip


def covered_regions(mask: np.ndarray) -> list[str]:
    """Regions a manipulation mask covers, most covered first (ties in REGIONS order)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"expected a square 2-D mask on the aligned crop, got shape {mask.shape}")
    total = mask.sum()
    if total == 0:
        raise ValueError("the manipulation mask is empty")
    shares = []
    for order, (name, region) in enumerate(region_masks(mask.shape[0]).items()):
        overlap = (mask & region).sum()
        region_share, mask_share = overlap / max(region.sum(), 1), overlap / total
        if region_share >= _MIN_REGION_SHARE or mask_share >= _MIN_MASK_SHARE:
            shares.append((-region_share, order, name))
    return [name for _, _, name in sorted(shares)]


def describe_artifacts(mask: np.ndarray, artifact_kind: str) -> str:
    """The AD reference for a forgery: "1. Region: description." per covered region."""
    if artifact_kind not in ARTIFACT_DESCRIPTIONS:
        raise KeyError(f"unknown artifact kind {artifact_kind!r}; known: {sorted(ARTIFACT_DESCRIPTIONS)}")
    regions = covered_regions(mask)
    if not regions:
        raise ValueError("the manipulation mask covers no facial region")
    template = ARTIFACT_DESCRIPTIONS[artifact_kind]
    return "\n".join(f"{i}. {r}: {template.format(region=r.lower())}." for i, r in enumerate(regions, 1))


# The artifact kind a source-pair mask is described with: what each category's methods typically leave where
# they changed the face (the mask says where; the kind is the category's, not measured).
PAIR_ARTIFACT_KIND = {"face_swapping": "blending_seam", "face_reenactment": "warping", "face_editing": "colour_shift"}
_PAIR_THRESHOLD = 24  # of 255, on the blurred per-pixel difference: above JPEG/c40 noise, below a real edit
_PAIR_MIN_SHARE = 0.01  # a difference covering less of the crop is noise, not a manipulation


def difference_mask(forgery: np.ndarray, source: np.ndarray) -> np.ndarray | None:
    """Where a FS/FR/FE forgery differs from the bona fide frame it was made from, both aligned with the same
    transform (S x S x 3 uint8): the blurred largest-channel difference over a threshold, opened to drop
    speckle. None when too little differs to be a manipulation (the pair is the same image, or nearly)."""
    import cv2

    if forgery.shape != source.shape:
        raise ValueError(f"the forgery {forgery.shape} and its source {source.shape} differ in shape")
    diff = np.abs(forgery.astype(np.int16) - source.astype(np.int16)).max(axis=-1).astype(np.float32)
    blurred = cv2.GaussianBlur(diff, (0, 0), sigmaX=max(1.0, forgery.shape[0] / 112))
    kernel = np.ones((5, 5), np.uint8)
    mask = cv2.morphologyEx(np.uint8(blurred > _PAIR_THRESHOLD), cv2.MORPH_OPEN, kernel).astype(bool)
    return mask if mask.mean() >= _PAIR_MIN_SHARE else None
