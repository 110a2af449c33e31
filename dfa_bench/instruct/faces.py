"""Face detection and 5-point similarity alignment to a fixed square crop.

Detection uses facenet-pytorch's MTCNN, whose weights ship inside the PyPI package (install it with
`--no-deps`: it pins an old torch). The five landmarks are mapped onto the ArcFace template scaled
to the crop by a least-squares similarity transform. An image with no confident face, or with
several, is reported as such, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfa_bench.instruct.regions import FIVE_POINT_TEMPLATE


@dataclass
class AlignedFace:
    status: str  # "ok", "no_face" or "multiple_faces"
    image: object | None = None  # aligned RGB PIL image (status "ok")
    landmarks: np.ndarray | None = None  # the five detected points in the input image
    confidence: float | None = None
    n_faces: int = 0
    input_size: tuple[int, int] | None = None  # (width, height) of the image the landmarks are in


def similarity_to_template(points: np.ndarray, size: int) -> np.ndarray:
    """3x3 matrix of the similarity transform that takes the five points onto the template."""
    from skimage.transform import SimilarityTransform

    transform = SimilarityTransform.from_estimate(points, FIVE_POINT_TEMPLATE * size)
    return transform.params


class FaceAligner:
    def __init__(self, size: int = 224, min_confidence: float = 0.9, device: str = "cpu") -> None:
        from facenet_pytorch import MTCNN

        self.size, self.min_confidence = size, min_confidence
        self.detector = MTCNN(keep_all=True, device=device)

    def _detect(self, image) -> tuple[list[int], object, object, object]:
        boxes, probs, points = self.detector.detect(image, landmarks=True)
        if boxes is None:
            return [], boxes, probs, points
        confident = [i for i, p in enumerate(probs) if p is not None and p >= self.min_confidence]
        return confident, boxes, probs, points

    def _warp(self, image, landmarks: np.ndarray, confidence: float, n_faces: int) -> AlignedFace:
        from PIL import Image

        landmarks = np.asarray(landmarks, dtype=float)  # MTCNN returns object arrays with keep_all
        matrix = similarity_to_template(landmarks, self.size)
        inverse = np.linalg.inv(matrix)  # PIL maps output pixels back to input pixels
        aligned = image.transform(
            (self.size, self.size), Image.Transform.AFFINE, data=tuple(inverse[:2].ravel()), resample=Image.BICUBIC
        )
        return AlignedFace("ok", aligned, landmarks, confidence, n_faces, image.size)

    def warp_like(self, image, face: AlignedFace):
        """Another image of the same frame (a forgery's bona fide source) warped by `face`'s transform, so the
        two crops match pixel for pixel; an image of another size is first resized to the aligned input's."""
        from PIL import Image

        matrix = similarity_to_template(np.asarray(face.landmarks, dtype=float), self.size)
        inverse = np.linalg.inv(matrix)
        image = image.convert("RGB")
        if face.input_size and image.size != face.input_size:
            image = image.resize(face.input_size, Image.BICUBIC)
        return image.transform(
            (self.size, self.size), Image.Transform.AFFINE, data=tuple(inverse[:2].ravel()), resample=Image.BICUBIC
        )

    def align(self, image) -> AlignedFace:
        """Detect faces in an RGB PIL image and align the single confident one."""
        image = image.convert("RGB")
        confident, _, probs, points = self._detect(image)
        if not confident:
            return AlignedFace("no_face")
        if len(confident) > 1:
            return AlignedFace("multiple_faces", n_faces=len(confident))
        return self._warp(image, points[confident[0]], float(probs[confident[0]]), 1)

    def align_all(self, image) -> list[AlignedFace]:
        """Every confident face of a group photo, aligned, left to right (for sources known to show several)."""
        image = image.convert("RGB")
        confident, boxes, probs, points = self._detect(image)
        confident.sort(key=lambda i: float(boxes[i][0]))
        return [self._warp(image, points[i], float(probs[i]), len(confident)) for i in confident]
