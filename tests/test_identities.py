"""Identities for unlabelled faces: dlib descriptors on real photos, average-linkage clusters that do not chain."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from dfa_bench.instruct.faces import FaceAligner
from dfa_bench.instruct.identities import SAME_PERSON, FaceDescriber, cluster_identities
from dfa_bench.instruct.mini import locate, photo_specs


@pytest.fixture(scope="module")
def faces():
    """Aligned crops of two public-domain portraits, and the first one again, flipped and re-scaled."""
    aligner = FaceAligner(size=224)
    photos = {p.name: p for p in photo_specs()}
    crops = {}
    for name in ("astronaut", "grace_hopper"):
        path, _, problem = locate(photos[name])
        assert problem is None, problem
        with Image.open(path) as image:
            crops[name] = aligner.align(image.convert("RGB")).image
    small = ImageOps.mirror(crops["astronaut"]).resize((150, 150), Image.BICUBIC).resize((224, 224), Image.BICUBIC)
    crops["astronaut_copy"] = small
    return {name: np.asarray(crop) for name, crop in crops.items()}


def test_descriptors_tell_people_apart_and_recognise_a_copy(faces):
    names = list(faces)
    descriptors = FaceDescriber().describe([faces[n] for n in names])
    assert descriptors.shape == (3, 128)
    distance = dict(zip(names, np.linalg.norm(descriptors - descriptors[0], axis=1)))
    assert distance["astronaut_copy"] < SAME_PERSON < distance["grace_hopper"]
    assert cluster_identities(descriptors) == [0, 1, 0]


def test_average_linkage_does_not_chain_borderline_pairs():
    # a line of points 0.55 apart: every neighbour pair is under 0.6, so single linkage makes one blob
    line = np.zeros((8, 128))
    line[:, 0] = np.arange(8) * 0.55
    labels = cluster_identities(line)
    assert len(set(labels)) >= 3
    assert all(labels[i] in (labels[i - 1], labels[i - 1] + 1) for i in range(1, 8))  # contiguous groups
    # but a pair that is very close is always one identity
    tight = np.zeros((3, 128))
    tight[1, 0], tight[2, 0] = 0.45, 5.0
    assert cluster_identities(tight) == [0, 0, 1]
    assert cluster_identities(np.zeros((0, 128))) == [] and cluster_identities(np.zeros((1, 128))) == [0]
