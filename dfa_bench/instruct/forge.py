"""In-process forgery generators for DFA-Bench-mini: FS, FR, FE and EFS, each with its manipulation mask.

They work on real faces already aligned to the 5-point template (`dfa_bench.instruct.faces`), so every crop
has its eyes, nose and mouth at `FIVE_POINT_TEMPLATE * size` and a face from one photo can be
transplanted onto another without further registration. Every generator is deterministic given its
numpy Generator, leaves every pixel outside the mask it returns exactly as it was, and names the
artifact kind it leaves (a key of `dfa_bench.instruct.regions.ARTIFACT_DESCRIPTIONS`) for the offline annotator.

These are simple classical stand-ins for the DF-40 techniques (Poisson face swap, displacement-field
reenactment, attribute recolouring and smoothing, morph-and-retexture synthesis): enough to exercise
the pipeline and to give detectors real artifacts, not state-of-the-art forgeries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dfa_bench.instruct.regions import FIVE_POINT_TEMPLATE

MIN_SIZE = 112  # the ArcFace template's native crop; below it the eyes are a few pixels wide
_ALPHA_FLOOR = 0.02  # blend weights below this are dropped, so the mask's edge is the edit's edge
_MOVED_PX = 0.5  # a warp's mask: pixels displaced by more than this


@dataclass
class Forgery:
    image: np.ndarray  # S x S x 3 uint8
    mask: np.ndarray  # S x S bool: the manipulated pixels
    category: str  # one of schema.FORGERY_CATEGORIES
    technique: str  # "mini_<fs|fr|fe|efs>_<variant>"
    artifact_kind: str  # a key of regions.ARTIFACT_DESCRIPTIONS
    params: dict = field(default_factory=dict)  # the random choices, JSON-serialisable


# ---------------------------------------------------------------------------------------- inputs


def _check(*faces: np.ndarray) -> int:
    """The shared crop size of aligned RGB faces; ValueError naming what is wrong otherwise."""
    size = None
    for i, face in enumerate(faces):
        if not isinstance(face, np.ndarray) or face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3:
            got = f"{face.dtype} array of shape {face.shape}" if isinstance(face, np.ndarray) else type(face).__name__
            raise ValueError(f"face {i}: expected an aligned RGB face as an H x W x 3 uint8 array, got {got}")
        if face.shape[0] != face.shape[1] or face.shape[0] < MIN_SIZE:
            raise ValueError(
                f"face {i}: expected a square aligned crop of at least {MIN_SIZE} px, got {face.shape[:2]}"
            )
        if size is not None and face.shape[0] != size:
            raise ValueError(f"faces must share one crop size, got {size} and {face.shape[0]}")
        size = face.shape[0]
    return size


def _points(size: int, landmarks: np.ndarray | None) -> dict[str, np.ndarray]:
    """Named landmarks in crop pixels (x, y), plus the eye distance `d` that scales every edit."""
    points = FIVE_POINT_TEMPLATE * size if landmarks is None else np.asarray(landmarks, dtype=float)
    if points.shape != (5, 2):
        raise ValueError(f"landmarks must be a 5 x 2 array (eyes, nose, mouth corners), got shape {points.shape}")
    if not np.isfinite(points).all() or (points < 0).any() or (points > size).any():
        raise ValueError(f"landmarks must lie inside the {size} x {size} crop")
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    d = float(np.linalg.norm(right_eye - left_eye))
    if d < 0.1 * size:
        raise ValueError(f"landmarks: the eyes are {d:.1f} px apart, too close for a {size} px aligned crop")
    return {"left_eye": left_eye, "right_eye": right_eye, "nose": nose, "mouth_left": mouth_left,
            "mouth_right": mouth_right, "mouth": (mouth_left + mouth_right) / 2,
            "eyes": (left_eye + right_eye) / 2, "d": d}  # fmt: skip


def _r(x: float) -> float:
    return round(float(x), 4)


# ---------------------------------------------------------------------------------------- shared helpers


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return xx, yy


def _ellipse(size: int, centre: np.ndarray, radii: tuple[float, float]) -> np.ndarray:
    xx, yy = _grid(size)
    return ((xx - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 <= 1.0


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A soft alpha in [0, 1] from a hard mask or a soft weight map."""
    import cv2

    return np.clip(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma), 0, 1)


def _composite(base: np.ndarray, new: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-blend `new` over `base`; returns the image and its mask (where alpha was kept). Pixels
    outside the mask are copied from `base` bit for bit, so the mask is exactly what was touched."""
    mask = alpha >= _ALPHA_FLOOR
    a = np.where(mask, alpha, 0).astype(np.float32)[..., None]
    mixed = base.astype(np.float32) * (1 - a) + np.asarray(new, dtype=np.float32) * a
    image = np.where(mask[..., None], np.clip(np.rint(mixed), 0, 255).astype(np.uint8), base)
    return image, mask


def _lab(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)


def _rgb(lab: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.clip(np.rint(lab), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def _colour_transfer(source: np.ndarray, target: np.ndarray, region: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Reinhard transfer in Lab: the source's mean and spread inside `region` moved (by `strength`,
    0 to 1) onto the target's, so a transplanted face takes the target's skin tone and lighting."""
    src, dst = _lab(source), _lab(target)
    s, t = src[region], dst[region]
    moved = (src - s.mean(0)) / (s.std(0) + 1e-6) * t.std(0) + t.mean(0)
    return _rgb(src + strength * (moved - src))


def _likeness(lab: np.ndarray, samples: np.ndarray, floor: tuple[float, float, float]) -> np.ndarray:
    """Per-pixel weight in [0, 1]: how close each Lab colour is to the samples' (robust statistics)."""
    centre = np.median(samples, axis=0)
    # robust spread, floored so that an evenly coloured sample does not reject every other pixel
    spread = np.maximum(1.4826 * np.median(np.abs(samples - centre), axis=0), floor)
    spread[0] *= 2.5  # lightness varies with shading far more than chroma does
    distance = np.sqrt((((lab - centre) / spread) ** 2).sum(axis=2))
    return np.clip(1.0 - (distance - 2.5) / 2.0, 0.0, 1.0)


def _skin_likeness(face: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """How skin-like each pixel is, judged against the cheeks. Lets the skin edit skip brows, eyes,
    lips and glasses, and the hair edit skip the forehead."""
    size, d = face.shape[0], p["d"]
    below = 0.6 * (p["mouth"][1] - p["eyes"][1])  # halfway down to the mouth, clear of eyes and glasses rims
    cheeks = _ellipse(size, p["left_eye"] + (0, below), (0.15 * d, 0.12 * d))
    cheeks |= _ellipse(size, p["right_eye"] + (0, below), (0.15 * d, 0.12 * d))
    lab = _lab(face)
    return _likeness(lab, lab[cheeks], (6.0, 2.5, 2.5))


def face_area(size: int, landmarks: np.ndarray | None = None) -> np.ndarray:
    """The whole face, brows' tops to chin and cheek to cheek, as an ellipse fitted to the landmarks."""
    return _face_area(size, _points(size, landmarks))


def _face_area(size: int, p: dict[str, np.ndarray]) -> np.ndarray:
    drop = p["mouth"][1] - p["eyes"][1]
    centre = np.array([(p["eyes"][0] + p["mouth"][0]) / 2, p["eyes"][1] + 0.5 * drop])
    return _ellipse(size, centre, (0.95 * p["d"], 1.0 * drop))


def inner_face_mask(size: int, landmarks: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray:
    """Brows to chin and cheek to cheek: the part of a face a swap replaces. A convex hull of points
    placed around the landmarks (grown or shrunk about its centre by `scale`), rounded by a blur so
    the blend boundary has no corners."""
    import cv2

    p = _points(size, landmarks)
    d = p["d"]
    hull = np.array([p["left_eye"] + (-0.45 * d, -0.4 * d), p["right_eye"] + (0.45 * d, -0.4 * d),
                     p["right_eye"] + (0.6 * d, 0.3 * d), p["mouth_right"] + (0.35 * d, 0.1 * d),
                     p["mouth"] + (0.2 * d, 0.5 * d), p["mouth"] + (-0.2 * d, 0.5 * d),
                     p["mouth_left"] + (-0.35 * d, 0.1 * d), p["left_eye"] + (-0.6 * d, 0.3 * d)])  # fmt: skip
    hull = hull.mean(axis=0) + scale * (hull - hull.mean(axis=0))
    polygon = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(polygon, cv2.convexHull(np.rint(hull).astype(np.int32)), 1)
    return _feather(polygon, 0.08 * d) >= 0.5


def _warp(face: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move image content by the smooth field (dx, dy); the mask is where it moved more than half a pixel."""
    import cv2

    xx, yy = _grid(face.shape[0])
    # backward map: each output pixel samples where its content came from. For smooth fields whose
    # gradient stays well below 1 (true for every field here) the field at the output pixel is close
    # enough to the field at the source pixel.
    warped = cv2.remap(face, xx - dx, yy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    moved = np.hypot(dx, dy) > _MOVED_PX
    return np.where(moved[..., None], warped, face), moved


def _bumps(size: int, controls: list[tuple[np.ndarray, np.ndarray, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """A displacement field: each control (point, shift, sigma_x, sigma_y) drags its neighbourhood
    by `shift` with an anisotropic Gaussian falloff."""
    xx, yy = _grid(size)
    dx, dy = np.zeros_like(xx), np.zeros_like(yy)
    for point, shift, sx, sy in controls:
        weight = np.exp(-(((xx - point[0]) / sx) ** 2 + ((yy - point[1]) / sy) ** 2) / 2)
        dx += weight * shift[0]
        dy += weight * shift[1]
    return dx, dy


# ---------------------------------------------------------------------------------------- FS


def face_swap(
    target: np.ndarray, source: np.ndarray, rng: np.random.Generator, landmarks: np.ndarray | None = None
) -> Forgery:
    """FS: the source's inner face (eyes, nose, mouth, cheeks) on the target's head.

    Either fully colour-matched (Reinhard, Lab) and Poisson-blended (`cv2.seamlessClone`), which leaves
    a blending seam, or only partly colour-matched and alpha-blended with a feathered edge, which leaves
    a colour mismatch. Both crops are aligned to the same template, so `landmarks` locates both faces.
    """
    import cv2

    size = _check(target, source)
    if np.array_equal(target, source):
        raise ValueError("face swap needs two different faces; target and source are the same image")
    scale = float(rng.uniform(0.92, 1.05))  # how much of the face goes: eyes-nose-mouth up to the cheeks' edges
    region = inner_face_mask(size, landmarks, scale)
    if rng.random() < 0.5:
        # seamlessClone ignores the mask's outermost pixels; drop them here so the bounding box below
        # is the one it uses (a chin that reaches the crop's edge would otherwise shift the clone)
        region[[0, -1], :] = region[:, [0, -1]] = False
        donor = _colour_transfer(source, target, region)
        ys, xs = np.nonzero(region)
        # seamlessClone centres the mask's bounding box on this point: put it back where it was
        centre = (int(xs.min() + (xs.max() - xs.min() + 1) // 2), int(ys.min() + (ys.max() - ys.min() + 1) // 2))
        clone = cv2.seamlessClone(donor, target, region.astype(np.uint8) * 255, centre, cv2.NORMAL_CLONE)
        image, mask = _composite(target, clone, region.astype(np.float32))
        return Forgery(image, mask, "face_swapping", "mini_fs_poisson", "blending_seam",
                       {"mask_scale": _r(scale), "blend": "poisson", "colour_transfer": 1.0})  # fmt: skip
    strength = float(rng.uniform(0.0, 0.5))  # an under-corrected donor keeps its own skin tone
    feather = float(rng.uniform(0.01, 0.025)) * size
    donor = _colour_transfer(source, target, region, strength)
    # feather inwards (blur an eroded region) so the blend stays inside the inner face
    inner = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=int(round(feather)))
    image, mask = _composite(target, donor, _feather(inner, feather))
    return Forgery(image, mask, "face_swapping", "mini_fs_alpha", "colour_mismatch",
                   {"mask_scale": _r(scale), "blend": "alpha", "colour_transfer": _r(strength),
                    "feather_px": _r(feather)})  # fmt: skip


# ---------------------------------------------------------------------------------------- FR


def face_reenactment(face: np.ndarray, rng: np.random.Generator, landmarks: np.ndarray | None = None) -> Forgery:
    """FR: the same identity with a new expression, driven through the landmarks by a smooth displacement
    field: a smile (mouth corners out and up, cheeks lifted), an opened mouth (jaw dropped) or raised brows."""
    size = _check(face)
    p = _points(size, landmarks)
    d = p["d"]
    motion = str(rng.choice(["smile", "mouth_open", "brow_raise"]))
    strength = float(rng.uniform(0.08, 0.13)) * d  # px; field gradients stay below ~0.7: no fold-overs
    if motion == "smile":
        lift = np.array([0.0, -0.35 * strength])
        dx, dy = _bumps(size, [(p["mouth_left"], np.array([-0.5, -1.0]) * strength, 0.22 * d, 0.2 * d),
                               (p["mouth_right"], np.array([0.5, -1.0]) * strength, 0.22 * d, 0.2 * d),
                               (p["left_eye"] + (0, 0.6 * d), lift, 0.25 * d, 0.2 * d),
                               (p["right_eye"] + (0, 0.6 * d), lift, 0.25 * d, 0.2 * d)])  # fmt: skip
    elif motion == "mouth_open":
        # jaw drop: nothing moves above the lip line, everything from the lower lip to the chin moves
        # down together, fading out sideways and below the chin
        xx, yy = _grid(size)
        below = (yy - p["mouth"][1]) / (0.35 * d)
        ramp = np.clip(below, 0, 1) ** 2 * (3 - 2 * np.clip(below, 0, 1))  # smoothstep
        fade = np.exp(-((np.maximum(yy - p["mouth"][1] - 0.7 * d, 0) / (0.3 * d)) ** 2))
        across = np.exp(-(((xx - p["mouth"][0]) / (0.55 * d)) ** 2) / 2)
        dx, dy = np.zeros_like(xx), (1.2 * strength * ramp * fade * across).astype(np.float32)
    else:
        # brows sit ~0.3 d above the eye centres; the narrow vertical falloff leaves the eyes nearly still
        up = np.array([0.0, -strength])
        dx, dy = _bumps(size, [(p["left_eye"] - (0, 0.3 * d), up, 0.3 * d, 0.14 * d),
                               (p["right_eye"] - (0, 0.3 * d), up, 0.3 * d, 0.14 * d)])  # fmt: skip
    image, mask = _warp(face, dx, dy)
    return Forgery(image, mask, "face_reenactment", f"mini_fr_{motion}", "warping",
                   {"motion": motion, "strength_px": _r(strength)})  # fmt: skip


# ---------------------------------------------------------------------------------------- FE

# target hair (Lab lightness, a, b in OpenCV's 0-255 scale) of a few dyes
_HAIR_DYES = {"blond": (170, 135, 170), "platinum": (205, 128, 135), "copper": (120, 160, 170),
              "auburn": (90, 150, 150), "blue": (105, 135, 90), "pink": (165, 170, 125), "black": (40, 128, 128)}  # fmt: skip
# lipstick shades (Lab)
_LIPSTICKS = {"red": (110, 185, 160), "berry": (80, 170, 125), "pink": (150, 175, 125), "coral": (140, 170, 160),
              "plum": (85, 155, 115), "nude": (150, 145, 150)}  # fmt: skip


def _recolour(face: np.ndarray, alpha: np.ndarray, colour: tuple[int, int, int], texture: float) -> np.ndarray:
    """Dye: move the region's mean Lab colour to `colour`, keeping `texture` of its lightness variation
    (the strands, the lip creases) and a little of its chroma variation."""
    lab = _lab(face)
    weights = alpha[..., None] / max(float(alpha.sum()), 1e-6)
    mean = (lab * weights).sum(axis=(0, 1))
    dyed = np.empty_like(lab)
    dyed[..., 0] = colour[0] + texture * (lab[..., 0] - mean[0])
    dyed[..., 1:] = np.asarray(colour[1:], np.float32) + 0.3 * (lab[..., 1:] - mean[1:])
    return _rgb(dyed)


def _fe_hair(face: np.ndarray, p: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    size, d = face.shape[0], p["d"]
    xx, yy = _grid(size)
    lab, not_skin = _lab(face), 1 - _skin_likeness(face, p)
    # the hair's colour, sampled on the head above the brows where it is not skin...
    head = _ellipse(size, p["eyes"] + (0, 0.2 * d), (1.9 * d, 2.3 * d))
    crown = head & (yy < p["eyes"][1] - 0.5 * d) & (not_skin > 0.5)
    # ...then dyed wherever that colour is, on the head but off the face, down to mouth level (side hair)
    region = head & ~_face_area(size, p) & (yy < p["mouth"][1])
    if crown.sum() >= 0.02 * size * size:
        hair = region * not_skin * _likeness(lab, lab[crown], (12.0, 4.0, 4.0))
        hair, fallback = np.where(hair > 0.2, hair, 0), False  # drop faint, scattered matches (shadows)
    else:  # bald, or the hair is outside the crop: tint the band above the brows instead
        hair, fallback = (head & (yy < p["eyes"][1] - 0.5 * d)) * 0.5, True
    name = str(rng.choice(sorted(_HAIR_DYES)))
    opacity = float(rng.uniform(0.6, 0.9))
    alpha = _feather(hair, size / 150) * opacity
    image, mask = _composite(face, _recolour(face, alpha, _HAIR_DYES[name], 0.8), alpha)
    return image, mask, {"dye": name, "opacity": _r(opacity), "fallback_band": fallback}


def _fe_lips(face: np.ndarray, p: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    size, d = face.shape[0], p["d"]
    lab = _lab(face)
    mouth = _ellipse(size, p["mouth"], (0.45 * (p["mouth_right"][0] - p["mouth_left"][0]) + 0.12 * d, 0.22 * d))
    # lips are redder than the skin round them (higher a*); teeth and the mouth's inside are not
    ring = _ellipse(size, p["mouth"], (0.9 * d, 0.45 * d)) & ~mouth
    redness = np.clip((lab[..., 1] - np.median(lab[..., 1][ring]) - 3) / 6, 0, 1)
    lips = _feather(mouth, size / 150) * redness
    if (lips > 0.5).sum() < 0.2 * mouth.sum():  # pale lips under odd light: colour the mouth area
        lips = _feather(mouth, size / 150) * 0.8
    name = str(rng.choice(sorted(_LIPSTICKS)))
    opacity = float(rng.uniform(0.6, 0.9))
    alpha = _feather(lips, size / 224) * opacity
    image, mask = _composite(face, _recolour(face, alpha, _LIPSTICKS[name], 0.9), alpha)
    return image, mask, {"shade": name, "opacity": _r(opacity)}


def _fe_skin(face: np.ndarray, p: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    import cv2

    size = face.shape[0]
    # a beauty filter: edge-preserving smoothing of the skin only (brows, eyes, lips, glasses keep detail)
    weight = _feather(_face_area(size, p), size / 100) * _skin_likeness(face, p)
    diameter = int(rng.integers(7, 12)) * size // 224 | 1
    sigma_colour = float(rng.uniform(25, 45))
    smooth = cv2.bilateralFilter(face, diameter, sigma_colour, diameter)
    smooth = cv2.bilateralFilter(smooth, diameter, sigma_colour, diameter)
    alpha = _feather(weight, size / 200) * float(rng.uniform(0.85, 1.0))
    image, mask = _composite(face, smooth, alpha)
    return image, mask, {"diameter": diameter, "sigma_colour": _r(sigma_colour)}


def _fe_eyes(face: np.ndarray, p: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    size, d = face.shape[0], p["d"]
    xx, yy = _grid(size)
    gain = float(rng.uniform(0.2, 0.35))
    radius = 0.32 * d
    dx, dy = np.zeros_like(xx), np.zeros_like(yy)
    for eye in (p["left_eye"], p["right_eye"]):
        # local magnification: content at distance r moves out by gain * r * (1 - (r/R)^2)^2, zero at R
        ox, oy = xx - eye[0], yy - eye[1]
        falloff = np.clip(1 - (ox**2 + oy**2) / radius**2, 0, 1) ** 2
        dx += gain * ox * falloff
        dy += gain * oy * falloff
    image, mask = _warp(face, dx, dy)
    return image, mask, {"gain": _r(gain), "radius_px": _r(radius)}


_EDITS = {  # edit -> (generator, artifact kind)
    "hair_colour": (_fe_hair, "colour_shift"),
    "lip_colour": (_fe_lips, "colour_shift"),
    "skin_smoothing": (_fe_skin, "over_smoothing"),
    "eye_enlarge": (_fe_eyes, "warping"),
}


def face_edit(face: np.ndarray, rng: np.random.Generator, landmarks: np.ndarray | None = None) -> Forgery:
    """FE: one local attribute edit, chosen by `rng`: hair colour (a dye on the non-skin part of the head
    above the brows), lip colour (lipstick on the redder-than-skin part of the mouth), skin smoothing
    (a bilateral beauty filter on skin-coloured face pixels) or eye enlargement (a local magnifying warp)."""
    size = _check(face)
    p = _points(size, landmarks)
    edit = str(rng.choice(list(_EDITS)))
    generate, kind = _EDITS[edit]
    image, mask, params = generate(face, p, rng)
    return Forgery(image, mask, "face_editing", f"mini_fe_{edit}", kind, {"edit": edit, **params})


# ---------------------------------------------------------------------------------------- EFS


def _periodic_texture(size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A checkerboard-like grid, as transposed-convolution upsampling leaves in GAN faces."""
    period = float(rng.uniform(3.0, 6.0))
    amplitude = float(rng.uniform(4.0, 7.0))
    xx, yy = _grid(size)
    pattern = np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period) * amplitude
    return pattern, {"period_px": _r(period), "amplitude": _r(amplitude)}


def _tiled_texture(size: int, rng: np.random.Generator, detail_std: float) -> tuple[np.ndarray, dict]:
    """Frequency-domain texture swap: the face's fine detail replaced by a small high-pass noise tile,
    repeated, at the detail's own strength: pores that repeat every few pixels."""
    tile = int(rng.integers(6, 13)) * size // 224 + 2
    # high-pass in the frequency domain, which keeps the tile periodic so its copies join without seams
    spectrum = np.fft.fft2(rng.normal(0, 1, (tile, tile)))
    fy, fx = np.meshgrid(np.fft.fftfreq(tile), np.fft.fftfreq(tile), indexing="ij")
    spectrum[np.hypot(fx, fy) < 0.15] = 0  # cycles per pixel: keep pore-scale detail only
    noise = np.fft.ifft2(spectrum).real.astype(np.float32)
    reps = -(-size // tile)
    pattern = np.tile(noise, (reps, reps))[:size, :size]
    gain = float(rng.uniform(1.2, 2.0))
    return pattern * (gain * detail_std / (pattern.std() + 1e-6)), {"tile_px": tile, "gain": _r(gain)}


def face_synthesis(
    faces: Sequence[np.ndarray], rng: np.random.Generator, landmarks: np.ndarray | None = None
) -> Forgery:
    """EFS: a face nobody has. A weighted morph of several (typically 2-4) aligned identities, its colour
    matched to the first face, given a new skin texture (waxy smoothing, a periodic upsampling grid, or
    a repeating noise tile in place of the fine detail) and composited over the first face's background,
    so the whole face region is new."""
    import cv2

    if isinstance(faces, np.ndarray) or len(faces) < 2:
        raise ValueError("entire face synthesis needs a list of at least two aligned faces")
    size = _check(*faces)
    area = _face_area(size, _points(size, landmarks))
    weights = rng.dirichlet(np.full(len(faces), 2.0))  # concentration 2: rarely one face dominates
    morph = sum(w * f.astype(np.float32) for w, f in zip(weights, faces))
    morph = _colour_transfer(np.clip(np.rint(morph), 0, 255).astype(np.uint8), faces[0], area)
    texture = str(rng.choice(["smooth", "grid", "tiled"]))
    params: dict = {"n_faces": len(faces), "weights": [_r(w) for w in weights], "texture": texture}
    # every variant starts from an over-smoothed face, as generators lose pores and fine hair
    smooth = cv2.bilateralFilter(morph, 9 * size // 224 | 1, 40, 5)
    smooth = cv2.GaussianBlur(smooth, (0, 0), size / 224).astype(np.float32)
    if texture == "smooth":
        new, kind = smooth, "over_smoothing"
    else:
        if texture == "grid":
            pattern, extra = _periodic_texture(size, rng)
        else:
            detail = morph.astype(np.float32).mean(axis=2) - cv2.GaussianBlur(morph, (0, 0), 1.5).mean(axis=2)
            pattern, extra = _tiled_texture(size, rng, float(detail[area].std()))
        new, kind = smooth + pattern[..., None], "texture_artifact"
        params.update(extra)
    alpha = _feather(area, size / 60)
    image, mask = _composite(faces[0], np.clip(new, 0, 255), alpha)
    return Forgery(image, mask, "entire_face_synthesis", f"mini_efs_morph_{texture}", kind, params)


GENERATORS: dict[str, Callable[..., Forgery]] = {
    "face_swapping": face_swap,
    "face_reenactment": face_reenactment,
    "face_editing": face_edit,
    "entire_face_synthesis": face_synthesis,
}
