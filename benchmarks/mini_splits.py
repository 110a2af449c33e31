"""The measurements behind DFA-Bench-mini v2's splits (docs/pipeline.md quotes them).

1. Identities: how dlib descriptors group the faces (single linkage at 0.6 against what the build uses).
2. Near-duplicates: can a check tell augmented copies of one face from faces of other people?
   pHash (imagehash's definition: 32 x 32 LANCZOS grey, 2-D DCT, 8 x 8 low band above its median; mirror
   included) against the registered correlation of `dfa_bench.instruct.near_duplicates`.

    python benchmarks/mini_splits.py [--mini BUILD_DIR]    (default: build one in a temp dir, ~45 s)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from scipy.fftpack import dct

from dfa_bench.imaging import load_rgb
from dfa_bench.instruct import mini
from dfa_bench.instruct.identities import SAME_PERSON, FaceDescriber, cluster_identities
from dfa_bench.instruct.near_duplicates import best_match
from dfa_bench.instruct.split import UnionFind


def phash(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=float)
    low = dct(dct(pixels, axis=0), axis=1)[:8, :8]
    return (low > np.median(low)).ravel()


def single_linkage(descriptors: np.ndarray, threshold: float) -> list[int]:
    links = UnionFind()
    distance = np.linalg.norm(descriptors[:, None] - descriptors[None], axis=-1)
    for a in range(len(descriptors)):
        links.find(a)
        for b in range(a + 1, len(descriptors)):
            if distance[a, b] < threshold:
                links.union(a, b)
    return [links.find(i) for i in range(len(descriptors))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mini", type=Path, help="An existing build-mini output (default: build one).")
    args = parser.parse_args()
    out = args.mini
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="mini-splits-")) / "mini"
        mini.build_mini(out)
    with np.load(out / "work" / "faces.npz") as stored:
        meta, images = json.loads(str(stored["meta"])), stored["images"]
    faces = [mini.Face(m["identity"], images[i], m["photo"], m["use"], tuple(m["related"])) for i, m in enumerate(meta)]

    descriptors = FaceDescriber().describe([f.image for f in faces])
    lfw = [i for i, f in enumerate(faces) if f.photo == "lfw_subset"]
    single = Counter(single_linkage(descriptors[lfw], SAME_PERSON))
    used = Counter(cluster_identities(descriptors))
    print(f"faces: {len(faces)} ({len(lfw)} LFW)")
    print(f"single linkage at {SAME_PERSON}, LFW only: {len(single)} groups, the largest {max(single.values())} faces")
    print(f"the build's clustering, all faces: {len(used)} people, the largest {max(used.values())} faces")

    splits = mini.assign_splits(faces, seed=0)
    split_of = {f.identity: s for s, members in splits.items() for f in members}
    records = [json.loads(line) for s in ("train", "dev", "test") for line in (out / f"records/{s}.jsonl").open()]
    real = [r for r in records if r["category"] == "bona_fide"]
    pictures = [Image.open(out / r["image"]) for r in real]
    hashes = [(phash(p), phash(ImageOps.mirror(p))) for p in pictures]
    copies, others = [], []
    for i in range(len(real)):
        for j in range(i + 1, len(real)):
            bits = min(int((hashes[i][0] != hashes[j][0]).sum()), int((hashes[i][0] != hashes[j][1]).sum()))
            if real[i]["identity"] == real[j]["identity"]:
                copies.append(bits)
            elif real[i]["split"] != real[j]["split"]:
                others.append(bits)
    print(f"pHash over {len(real)} bona fide records: copies of one face {min(copies)}-{max(copies)} bits apart; "
          f"faces of other splits as close as {min(others)} bits")  # fmt: skip

    similarity = best_match([f.image for f in faces], [np.asarray(load_rgb(out / r["image"])) for r in records])
    index = {f.identity: i for i, f in enumerate(faces)}
    print("registered correlation, per category: own source face (min) | closest face of another split (max)")
    for category in ("bona_fide", "face_swapping", "face_reenactment", "face_editing", "entire_face_synthesis"):
        columns = [j for j, r in enumerate(records) if r["category"] == category]
        own = min(similarity[index[records[j]["identity"]], j] for j in columns)
        other = max(
            similarity[i, j]
            for j in columns
            for i, f in enumerate(faces)
            if split_of[f.identity] != records[j]["split"]
        )
        print(f"  {category:24} {own:.3f} | {other:.3f}")


if __name__ == "__main__":
    main()
