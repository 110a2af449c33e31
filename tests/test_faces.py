"""MTCNN detection and alignment on a real photograph shipped with scikit-image (offline)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from dfa_bench.instruct.faces import FaceAligner, similarity_to_template
from dfa_bench.instruct.regions import FIVE_POINT_TEMPLATE


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner(size=224)


def test_aligns_the_astronaut_to_the_template(aligner):
    result = aligner.align(Image.fromarray(data.astronaut()))
    assert result.status == "ok" and result.n_faces == 1 and result.confidence > 0.99
    assert result.image.size == (224, 224)
    # the warp puts the landmarks where the fitted similarity transform says: detecting again on the
    # aligned crop finds them there (a similarity cannot fit a smile exactly, hence the template slack)
    mapped = (np.c_[result.landmarks, np.ones(5)] @ similarity_to_template(result.landmarks, 224).T)[:, :2]
    again = aligner.align(result.image)
    assert again.status == "ok"
    assert np.linalg.norm(again.landmarks - mapped, axis=1).max() < 10  # MTCNN landmark jitter is ~3% of the crop
    assert np.linalg.norm(mapped - FIVE_POINT_TEMPLATE * 224, axis=1).max() < 16


def test_reports_no_face_and_several_faces(aligner):
    assert aligner.align(Image.fromarray(data.coffee())).status == "no_face"
    face = Image.fromarray(data.astronaut()).crop((120, 20, 330, 230))
    pair = Image.new("RGB", (420, 210))
    pair.paste(face, (0, 0))
    pair.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (210, 0))
    result = aligner.align(pair)
    assert result.status == "multiple_faces" and result.n_faces == 2 and result.image is None
