"""DFA-Bench-mini: the embedded default benchmark, built offline from real photos inside PyPI packages.

A small synthetic-forgery benchmark that proves the pipeline end to end; it is not a substitute for
DF-40. The photos are located in the installed packages at build time (never copied into the
repository) and checked against `dfa_bench/data/mini_photos.json` (sha256, licence, use). Every split
holds the same mix of sources (LFW's grey crops, colour portraits, a group photo), so what a model learns
on train can transfer to test; a photo marked "test-only" would stay out of the training split.

Steps: locate photos -> detect and align every face -> link faces of one person (dlib descriptors) ->
spread each source's identity groups over the three splits -> generate
FS/FR/FE/EFS forgeries inside each split, with masks -> augment (crop, scale, flip, JPEG quality) ->
journal -> the shared pipeline tail (offline mask annotator, QA, LLaVA JSON, dev/test benches).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from dfa_bench.instruct.build_dir import DONE_JOBS, JOURNAL, REPORT, BuildReport
from dfa_bench.instruct.pipeline import FinishOptions, MaskAnnotator, finish_build
from dfa_bench.instruct.split import UnionFind, stratified_split
from dfa_bench.io import AppendLog, atomic_write_bytes, iter_jsonl, write_json
from dfa_bench.schema import CATEGORIES, label_of

NAME, VERSION = "dfa-bench-mini", "2"  # 2: splits share one mix of sources
LFW_UPSCALE = 8  # the 25 x 25 LFW crops are too small for MTCNN as they are
_ABBREVIATION = {"bona_fide": "real", "face_swapping": "fs", "face_reenactment": "fr", "face_editing": "fe",
                 "entire_face_synthesis": "efs"}  # fmt: skip


@dataclass(frozen=True)
class Photo:
    name: str
    distribution: str
    path: str  # inside the installed distribution
    sha256: str
    licence: str
    use: str  # "any" or "test-only"
    kind: str  # "photo", "group_photo" or "lfw_faces"


@dataclass
class Face:
    identity: str
    image: np.ndarray  # aligned S x S x 3 uint8
    photo: str
    use: str
    related: tuple[str, ...] = ()


def photo_specs() -> list[Photo]:
    spec = json.loads(resources.files("dfa_bench.data").joinpath("mini_photos.json").read_text(encoding="utf-8"))
    return [Photo(**{k: p[k] for k in Photo.__dataclass_fields__}) for p in spec["photos"]]


def locate(photo: Photo) -> tuple[Path | None, str | None, str | None]:
    """(file, distribution version, problem): where the installed package keeps the photo, checked by sha256."""
    try:
        distribution = importlib.metadata.distribution(photo.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None, None, f"package {photo.distribution!r} is not installed"
    path = Path(distribution.locate_file(photo.path))
    if not path.is_file():
        return None, distribution.version, f"{photo.path} not found in {photo.distribution} {distribution.version}"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != photo.sha256:
        return None, distribution.version, f"{path}: sha256 {digest} differs from the manifest's {photo.sha256}"
    return path, distribution.version, None


def detect_faces(photos: list[tuple[Photo, Path]], size: int, report: BuildReport) -> list[Face]:
    """Every usable face of every photo, aligned; each face that cannot be used goes to the report."""
    from PIL import Image

    from dfa_bench.instruct.faces import FaceAligner

    aligner = FaceAligner(size=size)
    faces: list[Face] = []
    for photo, path in photos:
        if photo.kind == "lfw_faces":
            for i, crop in enumerate(np.load(path)[:100]):  # the first 100 are faces, the rest background
                grey = Image.fromarray(np.uint8(np.clip(crop, 0, 1) * 255)).convert("RGB")
                big = grey.resize((25 * LFW_UPSCALE, 25 * LFW_UPSCALE), Image.BICUBIC)
                result = aligner.align(big)
                if result.status != "ok":
                    report.add(f"{photo.name}[{i}]", "align", f"{result.status} in the upscaled LFW crop")
                    continue
                # no identity labels ship with the subset: link_same_people gives them identities
                faces.append(Face(f"lfw_{i:03d}", np.asarray(result.image), photo.name, photo.use))
            continue
        with Image.open(path) as image:
            image = image.convert("RGB")
        if photo.kind == "group_photo":
            aligned = aligner.align_all(image)
            if not aligned:
                report.add(photo.name, "align", "no face found in the group photo")
            for k, result in enumerate(aligned):
                faces.append(Face(f"{photo.name}_{k}", np.asarray(result.image), photo.name, photo.use))
            continue
        result = aligner.align(image)
        if result.status != "ok":
            report.add(photo.name, "align", result.status)
            continue
        faces.append(Face(photo.name, np.asarray(result.image), photo.name, photo.use))
    return faces


def link_same_people(faces: list[Face]) -> list[Face]:
    """Faces that dlib's descriptor puts together (identities.cluster_identities) share a `person_k`
    link, so one person can never straddle splits, whichever photo or source a face came from."""
    from dfa_bench.instruct.identities import FaceDescriber, cluster_identities

    labels = cluster_identities(FaceDescriber().describe([f.image for f in faces]))
    sizes = Counter(labels)
    return [
        Face(f.identity, f.image, f.photo, f.use, (*f.related, f"person_{k:03d}") if sizes[k] > 1 else f.related)
        for f, k in zip(faces, labels)
    ]


def _cached_faces(out: Path, located: list[tuple[Photo, Path]], size: int, report: BuildReport) -> list[Face]:
    """Detected faces are kept in the build dir, so a resumed build does not detect them again."""
    cache = out / "work" / "faces.npz"
    key = json.dumps(["faces-v2: dlib identity links", size, [p.sha256 for p, _ in located]])
    if cache.exists():
        with np.load(cache) as stored:
            if str(stored["key"]) == key:
                meta, images = json.loads(str(stored["meta"])), stored["images"]
                return [Face(m["identity"], images[i], m["photo"], m["use"], tuple(m["related"]))
                        for i, m in enumerate(meta)]  # fmt: skip
    faces = link_same_people(detect_faces(located, size, report))
    meta = json.dumps([{"identity": f.identity, "photo": f.photo, "use": f.use, "related": f.related} for f in faces])
    buffer = io.BytesIO()
    np.savez(buffer, key=key, meta=meta, images=np.stack([f.image for f in faces]) if faces else np.zeros((0,)))
    atomic_write_bytes(cache, buffer.getvalue())
    return faces


SPLIT_RATIOS = {"train": 1 / 3, "dev": 1 / 3, "test": 1 / 3}


def assign_splits(faces: list[Face], seed: int) -> dict[str, list[Face]]:
    """Identity-disjoint splits that share one mix of sources: linked faces (one identity, or one person by
    their descriptors) form a group, and each photo source's groups are spread over the three splits."""
    links = UnionFind()
    for face in faces:
        links.find(face.identity)
        for other in face.related:
            links.union(face.identity, other)
    members: dict[str, list[Face]] = defaultdict(list)
    for face in faces:
        members[links.find(face.identity)].append(face)
    # a group's stratum: the source most of its faces come from; a photo marked test-only keeps its
    # group out of the training split
    groups = [
        (root, Counter(f.photo for f in group).most_common(1)[0][0], len(group)) for root, group in members.items()
    ]
    held_out = {root for root, group in members.items() if any(f.use == "test-only" for f in group)}
    split_of = stratified_split([g for g in groups if g[0] not in held_out], SPLIT_RATIOS, seed=seed)
    split_of |= stratified_split([g for g in groups if g[0] in held_out], {"dev": 0.5, "test": 0.5}, seed=seed)
    splits: dict[str, list[Face]] = {name: [] for name in SPLIT_RATIOS}
    for face in faces:
        splits[split_of[links.find(face.identity)]].append(face)
    return splits


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[bytes, np.ndarray, dict]:
    """Scale, shift and flip image and mask together, then re-encode the image at a random JPEG quality.

    Returns (PNG bytes of the augmented image, augmented mask, the parameters)."""
    from PIL import Image

    size = image.shape[0]
    scale = float(rng.uniform(0.92, 1.08))
    dx, dy = (float(v) for v in rng.uniform(-0.03, 0.03, 2) * size)
    flip = bool(rng.random() < 0.5)
    quality = int(rng.integers(55, 96))
    centre = size / 2
    # output pixel -> input pixel: undo the scale about the centre, then the shift
    affine = (1 / scale, 0, centre - (centre + dx) / scale, 0, 1 / scale, centre - (centre + dy) / scale)

    def warp(array: np.ndarray, resample) -> Image.Image:
        warped = Image.fromarray(array).transform((size, size), Image.Transform.AFFINE, affine, resample=resample)
        return warped.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else warped

    picture = warp(image, Image.BICUBIC)
    jpeg = io.BytesIO()
    picture.save(jpeg, format="JPEG", quality=quality)
    jpeg.seek(0)
    png = io.BytesIO()
    Image.open(jpeg).convert("RGB").save(png, format="PNG")
    warped_mask = np.asarray(warp(np.uint8(mask) * 255, Image.NEAREST)) > 127
    params = {"scale": round(scale, 4), "shift": [round(dx, 2), round(dy, 2)], "flip": flip, "jpeg_quality": quality}
    return png.getvalue(), warped_mask, params


def _forgery(category: str, faces: list[Face], rng: np.random.Generator):
    """(forgery, target face, other faces involved) for one record of a forgery category."""
    from dfa_bench.instruct import forge

    if category == "face_swapping":
        target, source = (faces[i] for i in rng.choice(len(faces), 2, replace=False))
        return forge.face_swap(target.image, source.image, rng), target, [source]
    if category == "entire_face_synthesis":
        k = int(rng.integers(2, min(4, len(faces)) + 1))
        chosen = [faces[i] for i in rng.choice(len(faces), k, replace=False)]
        return forge.face_synthesis([f.image for f in chosen], rng), chosen[0], chosen[1:]
    target = faces[int(rng.integers(len(faces)))]
    generate = forge.face_reenactment if category == "face_reenactment" else forge.face_edit
    return generate(target.image, rng), target, []


def generate_records(
    out: Path,
    splits: dict[str, list[Face]],
    per_category: dict[str, int],
    seed: int,
    journal: AppendLog,
    done: set[str],
) -> int:
    """Journal `per_category[split]` records of each category per split; each from its own seeded RNG, so an
    interrupted run resumes with exactly the records it would have made."""
    from PIL import Image

    made = 0
    with open(out / DONE_JOBS, "a", encoding="utf-8") as done_log:
        for split_index, (split, faces) in enumerate(splits.items()):
            n_identities = len({f.identity for f in faces})
            for category_index, category in enumerate(CATEGORIES):
                if category in ("face_swapping", "entire_face_synthesis") and n_identities < 2:
                    continue  # needs two people; reported in the summary's category counts
                for i in range(per_category[split]):
                    record_id = f"mini-{split}-{_ABBREVIATION[category]}-{i:04d}"
                    if record_id in done:
                        continue
                    rng = np.random.default_rng([seed, split_index, category_index, i])
                    if category == "bona_fide":
                        face, others = faces[int(rng.integers(len(faces)))], []
                        mask, extra = np.ones(face.image.shape[:2], bool), {}
                        png, _, augmentation = augment(face.image, mask, rng)
                    else:
                        forgery, face, others = _forgery(category, faces, rng)
                        png, mask, augmentation = augment(forgery.image, forgery.mask, rng)
                        mask_path = f"masks/{record_id}.png"
                        buffer = io.BytesIO()
                        Image.fromarray(np.uint8(mask) * 255).save(buffer, format="PNG")
                        atomic_write_bytes(out / mask_path, buffer.getvalue())
                        extra = {"technique": forgery.technique, "artifact_kind": forgery.artifact_kind,
                                 "mask": mask_path, "forgery_params": forgery.params}  # fmt: skip
                    image = f"images/{record_id}.png"
                    atomic_write_bytes(out / image, png)
                    related = sorted({*face.related, *(i for f in others for i in (f.identity, *f.related))})
                    journal.append(
                        {"job": record_id, "record_id": record_id, "image": image, "label": label_of(category),
                         "category": category, "technique": "", "identity": face.identity,
                         "related_identities": [r for r in related if r != face.identity], "split": split,
                         "photos": sorted({face.photo, *(f.photo for f in others)}), "augmentation": augmentation,
                         "artifact_description": "", **extra}
                    )  # fmt: skip
                    done_log.write(record_id + "\n")
                    done_log.flush()
                    made += 1
    return made


def build_mini(
    out: Path | str, *, seed: int = 0, size: int = 224, per_category: int = 32, train_per_category: int | None = None
) -> dict:
    """Build DFA-Bench-mini into `out` (resumable: finished records are not made again). The train split has
    `train_per_category` records per category (default: `per_category`, as dev and test): a larger train split
    draws more forgeries of the same train identities, so dev and test stay identity-disjoint and unchanged."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = set((out / DONE_JOBS).read_text(encoding="utf-8").splitlines()) if (out / DONE_JOBS).exists() else set()
    located, photo_rows = [], []
    with BuildReport(out / REPORT) as report:
        for photo in photo_specs():
            path, version, problem = locate(photo)
            photo_rows.append({**photo.__dict__, "version": version, "found": path is not None})
            if problem:
                report.add(photo.name, "locate", problem)
            else:
                located.append((photo, path))
        faces = _cached_faces(out, located, size, report)
    splits = assign_splits(faces, seed)
    for row in photo_rows:
        row["faces"] = sum(f.photo == row["name"] for f in faces)
    by_source = {s: dict(sorted(Counter(f.photo for f in members).items())) for s, members in splits.items()}
    write_json(
        out / "photos.json",
        {
            "photos": photo_rows,
            "faces_by_split": {s: len(f) for s, f in splits.items()},
            "faces_by_split_and_photo": by_source,
        },
    )
    empty = [s for s, f in splits.items() if not f]
    if empty:
        raise RuntimeError(f"no usable faces for split(s) {empty}; see {out / REPORT}")
    with AppendLog(out / JOURNAL) as journal:
        counts = {split: per_category for split in splits}
        if train_per_category is not None:
            counts["train"] = train_per_category
        made = generate_records(out, splits, counts, seed, journal, done)
    leaks = copies_of_other_splits(out, splits)
    if leaks:
        first = leaks[0]
        raise RuntimeError(
            f"{len(leaks)} record images copy a face of another split, e.g. {first.record} ({first.record_split}) "
            f"~ {first.face} ({first.face_split}), similarity {first.similarity:.3f}"
        )
    options = FinishOptions(seed=seed, name=NAME, version=VERSION)
    summary = finish_build(
        out,
        annotator=MaskAnnotator(),
        options=options,
        extra_summary={"photos": "photos.json", "near_duplicates_across_splits": len(leaks)},
    )
    return {**summary, "records_made_this_run": made}  # not in build_summary.json: a rebuild is byte-identical


def copies_of_other_splits(out: Path, splits: dict[str, list[Face]]) -> list:
    """Record images that are (augmented, edited) copies of a face assigned to another split: none, unless
    a face was linked to the wrong split (`near_duplicates`: registered correlation, not provenance)."""
    from dfa_bench.instruct.near_duplicates import copies_across_splits

    faces = [(f.identity, f.image, split) for split, members in splits.items() for f in members]
    records = {row["record_id"]: row for _, row in iter_jsonl(out / JOURNAL)}
    return copies_across_splits(faces, [(str(out / r["image"]), r["split"]) for r in records.values()])
