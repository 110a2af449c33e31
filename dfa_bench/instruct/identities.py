"""Who is who: identities for faces that come without labels (the LFW subset in DFA-Bench-mini).

dlib's face descriptor (the ResNet that `face-recognition-models` ships, 128-d) puts two photos of one
person within 0.6 of each other, its authors' usual threshold. Faces are grouped by average linkage at
that distance: single linkage would chain a hundred low-resolution faces into one blob through their
many borderline pairs, and then nothing could be split. To stay on the safe side of a leak, any pair
closer than `LINK_BELOW` is put together as well, whichever cluster average linkage gave it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from dfa_bench.instruct.split import UnionFind

SAME_PERSON = 0.6  # dlib's threshold: descriptors of one person are closer than this
LINK_BELOW = 0.5  # pairs this close are one identity, whatever the clustering says


def model_dir() -> Path:
    """The folder of dlib model files inside the installed `face-recognition-models`.

    Found without importing the package: its __init__ imports pkg_resources, which setuptools 81 removed.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed (pip install 'dfa-bench[data]')")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class FaceDescriber:
    """128-d dlib descriptors of aligned face crops (H x W x 3 uint8 RGB, the face filling the crop)."""

    def __init__(self) -> None:
        import dlib

        models = model_dir()
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self._rectangle = dlib.rectangle

    def describe(self, images: list[np.ndarray]) -> np.ndarray:
        rows = []
        for image in images:
            image = np.ascontiguousarray(image, dtype=np.uint8)
            height, width = image.shape[:2]
            # the crop is already aligned on the face: its whole area is the detection box
            shape = self._shape(image, self._rectangle(0, 0, width - 1, height - 1))
            rows.append(np.asarray(self._net.compute_face_descriptor(image, shape)))
        return np.stack(rows) if rows else np.zeros((0, 128))


def cluster_identities(
    descriptors: np.ndarray, *, threshold: float = SAME_PERSON, link_below: float = LINK_BELOW
) -> list[int]:
    """A cluster label per descriptor (0, 1, ...; in order of first appearance)."""
    n = len(descriptors)
    if n == 0:
        return []
    if n == 1:
        return [0]
    from sklearn.cluster import AgglomerativeClustering

    average = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, linkage="average")
    labels = average.fit_predict(descriptors)
    links = UnionFind()
    distances = np.linalg.norm(descriptors[:, None] - descriptors[None], axis=-1)
    for a in range(n):
        links.find(a)
        for b in range(a + 1, n):
            if labels[a] == labels[b] or distances[a, b] < link_below:
                links.union(a, b)
    renumber: dict[int, int] = {}
    return [renumber.setdefault(links.find(i), len(renumber)) for i in range(n)]
