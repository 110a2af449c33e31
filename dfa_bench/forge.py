"""In-process forgery generators for DFA-Bench-mini: FS, FR, FE and EFS, each with its manipulation mask.

They work on real faces already aligned to the 5-point template (`dfa_bench.faces`), so every crop
has its eyes, nose and mouth at `FIVE_POINT_TEMPLATE * size` and a face from one photo can be
transplanted onto another without further registration. Every generator is deterministic given its
numpy Generator, changes nothing outside the mask it returns, and names the artifact kind it leaves
(a key of `dfa_bench.regions.ARTIFACT_DESCRIPTIONS`) for the offline annotator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dfa_bench.regions import FIVE_POINT_TEMPLATE


@dataclass
class Forgery:
    image: np.ndarray  # S x S x 3 uint8
    mask: np.ndarray  # S x S bool: the manipulated pixels
    category: str
    technique: str
    artifact_kind: str
    params: dict = field(default_factory=dict)  # the random choices, JSON-serialisable


def _check(*faces: np.ndarray) -> int:
    size = None
    for face in faces:
        if not isinstance(face, np.ndarray) or face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3:
            raise ValueError("expected an aligned RGB face as an H x W x 3 uint8 array")
        if face.shape[0] != face.shape[1] or face.shape[0] < 64:
            raise ValueError(f"expected a square aligned crop of at least 64 px, got {face.shape[:2]}")
        if size is not None and face.shape[0] != size:
            raise ValueError(f"faces must share one crop size, got {size} and {face.shape[0]}")
        size = face.shape[0]
    return size


def _points(size: int, landmarks: np.ndarray | None) -> dict[str, np.ndarray]:
    points = FIVE_POINT_TEMPLATE * size if landmarks is None else np.asarray(landmarks, dtype=float)
    if points.shape != (5, 2):
        raise ValueError(f"landmarks must be 5 x 2, got {points.shape}")
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    return {"left_eye": left_eye, "right_eye": right_eye, "nose": nose, "mouth_left": mouth_left,
            "mouth_right": mouth_right, "mouth": (mouth_left + mouth_right) / 2,
            "eyes": (left_eye + right_eye) / 2, "d": np.linalg.norm(right_eye - left_eye)}  # fmt: skip


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A soft alpha from a hard mask; zero (exactly) where the blur does not reach."""
    import cv2

    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    alpha[alpha < 1e-3] = 0
    return alpha


def _blend(base: np.ndarray, new: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    mixed = base.astype(np.float32) * (1 - alpha[..., None]) + new.astype(np.float32) * alpha[..., None]
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.abs(before.astype(int) - after.astype(int)).max(axis=2) > 0


def _ellipse(size: int, centre: np.ndarray, radii: tuple[float, float]) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    return ((xx - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 <= 1.0


def inner_face_mask(size: int, landmarks: np.ndarray | None = None) -> np.ndarray:
    """Brows to chin and cheek to cheek: the part of a face a swap replaces."""
    import cv2

    p = _points(size, landmarks)
    d = p["d"]
    polygon = np.array([p["left_eye"] + (-0.45 * d, -0.5 * d), p["right_eye"] + (0.45 * d, -0.5 * d),
                        p["right_eye"] + (0.6 * d, 0.35 * d), p["mouth_right"] + (0.35 * d, 0.15 * d),
                        p["mouth"] + (0, 0.6 * d), p["mouth_left"] + (-0.35 * d, 0.15 * d),
                        p["left_eye"] + (-0.6 * d, 0.35 * d)])  # fmt: skip
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, np.rint(polygon).astype(np.int32), 1)
    return mask.astype(bool)


def _colour_transfer(source: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Reinhard transfer in Lab: source's statistics inside `region` moved onto the target's."""
    import cv2

    src, dst = (cv2.cvtColor(x, cv2.COLOR_RGB2LAB).astype(np.float32) for x in (source, target))
    s, t = src[region], dst[region]
    moved = (src - s.mean(0)) / (s.std(0) + 1e-6) * t.std(0) + t.mean(0)
    return cv2.cvtColor(np.clip(moved, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def face_swap(target: np.ndarray, source: np.ndarray, rng: np.random.Generator, landmarks=None) -> Forgery:
    """FS: the source's inner face on the target's head, colour-matched and Poisson-blended (or, without
    colour matching, alpha-blended, which leaves a colour mismatch)."""
    import cv2

    size = _check(target, source)
    region = inner_face_mask(size, landmarks)
    seamless = bool(rng.random() < 0.6)
    if seamless:
        donor = _colour_transfer(source, target, region)
        ys, xs = np.nonzero(region)
        centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
        clone = cv2.seamlessClone(donor, target, region.astype(np.uint8) * 255, centre, cv2.NORMAL_CLONE)
        image = np.where(region[..., None], clone, target)
        technique, kind = "mini_fs_poisson", "blending_seam"
    else:
        image = _blend(target, source, _feather(region, size / 80))
        technique, kind = "mini_fs_alpha", "colour_mismatch"
    return Forgery(image, _changed(target, image), "face_swapping", technique, kind, {"seamless": seamless})


def _displace(
    face: np.ndarray, controls: list[tuple[np.ndarray, np.ndarray]], sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Warp by a smooth field: each control point drags its neighbourhood (Gaussian falloff)."""
    import cv2

    size = face.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = np.zeros_like(xx), np.zeros_like(yy)
    for point, shift in controls:
        weight = np.exp(-((xx - point[0]) ** 2 + (yy - point[1]) ** 2) / (2 * sigma**2))
        dx += weight * shift[0]
        dy += weight * shift[1]
    # backward map: each output pixel samples where its content came from (fine for small, smooth shifts)
    warped = cv2.remap(face, xx - dx, yy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    moved = np.hypot(dx, dy) > 0.5
    return np.where(moved[..., None], warped, face), moved


def face_reenactment(face: np.ndarray, rng: np.random.Generator, landmarks=None) -> Forgery:
    """FR: the same identity with a new expression: a smile, an opened mouth or raised brows."""
    size = _check(face)
    p = _points(size, landmarks)
    d = p["d"]
    motion = str(rng.choice(["smile", "mouth_open", "brow_raise"]))
    strength = float(rng.uniform(0.08, 0.14)) * d
    if motion == "smile":
        controls = [
            (p["mouth_left"], np.array([-0.6, -1.0]) * strength),
            (p["mouth_right"], np.array([0.6, -1.0]) * strength),
        ]
        sigma = 0.25 * d
    elif motion == "mouth_open":
        controls = [
            (p["mouth"] + (0, 0.15 * d), np.array([0, 1.3]) * strength),
            (p["mouth"] + (0, 0.45 * d), np.array([0, 0.8]) * strength),
        ]
        sigma = 0.25 * d
    else:
        controls = [
            (p["left_eye"] - (0, 0.35 * d), np.array([0, -1.2]) * strength),
            (p["right_eye"] - (0, 0.35 * d), np.array([0, -1.2]) * strength),
        ]
        sigma = 0.3 * d
    image, moved = _displace(face, controls, sigma)
    mask = moved & _changed(face, image)
    return Forgery(image, mask, "face_reenactment", f"mini_fr_{motion}", "warping",
                   {"motion": motion, "strength_px": round(strength, 3)})  # fmt: skip


def face_edit(face: np.ndarray, rng: np.random.Generator, landmarks=None) -> Forgery:
    """FE: one local attribute edit: lip colour, hair colour, skin smoothing or enlarged eyes."""
    import cv2

    size = _check(face)
    p = _points(size, landmarks)
    d = p["d"]
    edit = str(rng.choice(["lip_colour", "hair_colour", "skin_smoothing", "eye_enlarge"]))
    params: dict = {"edit": edit}
    if edit == "eye_enlarge":
        gain = float(rng.uniform(0.15, 0.25))
        params["gain"] = round(gain, 3)
        # magnify around each eye: points on a ring are pushed outwards
        controls = [(eye + offset, offset / np.linalg.norm(offset) * gain * 0.2 * d)
                    for eye in (p["left_eye"], p["right_eye"])
                    for offset in (np.array([np.cos(a), np.sin(a)]) * 0.15 * d for a in np.linspace(0, 2 * np.pi, 8, endpoint=False))]  # fmt: skip
        image, moved = _displace(face, controls, 0.12 * d)
        return Forgery(image, moved & _changed(face, image), "face_editing", "mini_fe_eye_enlarge", "warping", params)
    if edit == "skin_smoothing":
        # skin only: eyes, brows and lips keep their detail (so the annotator names skin regions)
        keep = [_ellipse(size, p[eye], (0.45 * d, 0.3 * d)) for eye in ("left_eye", "right_eye")]
        keep.append(_ellipse(size, p["mouth"], (0.6 * d, 0.3 * d)))
        skin = inner_face_mask(size, landmarks) & ~np.logical_or.reduce(keep)
        strength = int(rng.integers(9, 15))
        params["diameter"] = strength
        smooth = cv2.bilateralFilter(face, strength, 60, 60)
        smooth = cv2.GaussianBlur(smooth, (0, 0), 1.2)
        image = _blend(face, smooth, _feather(skin, size / 100))
        return Forgery(image, _changed(face, image), "face_editing", "mini_fe_skin_smoothing", "over_smoothing", params)
    if edit == "lip_colour":
        area = _ellipse(size, p["mouth"], (0.42 * d, 0.2 * d))
        sigma = size / 150
    else:  # hair colour: the band above the brows up to the top of the crop
        area = np.zeros((size, size), bool)
        top = int(max(0, p["eyes"][1] - 0.75 * d))
        area[:top, int(p["eyes"][0] - 1.1 * d) : int(p["eyes"][0] + 1.1 * d)] = True
        sigma = size / 60
    hsv = cv2.cvtColor(face, cv2.COLOR_RGB2HSV).astype(np.int32)
    hue = int(rng.integers(0, 180))
    params["hue"] = hue
    hsv[..., 0] = hue
    hsv[..., 1] = np.maximum(hsv[..., 1], int(rng.integers(90, 160)))
    recoloured = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    image = _blend(face, recoloured, _feather(area, sigma) * float(rng.uniform(0.55, 0.8)))
    return Forgery(image, _changed(face, image), "face_editing", f"mini_fe_{edit}", "colour_shift", params)


def face_synthesis(faces: list[np.ndarray], rng: np.random.Generator, landmarks=None) -> Forgery:
    """EFS: a face nobody has: a weighted morph of several aligned identities given a new, synthetic
    skin texture (smoothed, then either left waxy or overlaid with a periodic generator-like pattern)."""
    import cv2

    if len(faces) < 2:
        raise ValueError("entire face synthesis needs at least two aligned faces")
    size = _check(*faces)
    weights = rng.dirichlet(np.ones(len(faces)))
    morph = sum(w * f.astype(np.float32) for w, f in zip(weights, faces))
    morph = cv2.GaussianBlur(morph, (0, 0), size / 150)
    textured = bool(rng.random() < 0.5)
    if textured:
        period = float(rng.uniform(3.0, 6.0))
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        pattern = np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period) * float(rng.uniform(4, 8))
        morph = morph + pattern[..., None]
    face_area = _ellipse(size, np.array([0.5, 0.55]) * size, (0.36 * size, 0.46 * size))
    image = _blend(faces[0], np.clip(morph, 0, 255), _feather(face_area, size / 40))
    kind, technique = (
        ("texture_artifact", "mini_efs_morph_texture") if textured else ("over_smoothing", "mini_efs_morph")
    )
    return Forgery(image, _changed(faces[0], image), "entire_face_synthesis", technique, kind,
                   {"weights": [round(float(w), 4) for w in weights], "textured": textured})  # fmt: skip


GENERATORS: dict[str, Callable[..., Forgery]] = {
    "face_swapping": face_swap,
    "face_reenactment": face_reenactment,
    "face_editing": face_edit,
    "entire_face_synthesis": face_synthesis,
}
