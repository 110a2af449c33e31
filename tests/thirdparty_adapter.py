"""Third-party adapters for the tests, written as docs/adapters.md says, registered under names that are not ours."""

from __future__ import annotations

import numpy as np
from lmms_eval.models import MODEL_REGISTRY_V2
from lmms_eval.models.registry_v2 import ModelManifest

from dfa_bench.adapters.base import Answer, DFAAdapter, Query


class ImageMeanAdapter(DFAAdapter):
    """Answers from the pixels: DF-D "Yes" with the image's mean brightness as its forgery probability."""

    name = "acme_image_mean"
    calls: list[str] = []  # question ids asked, across instances (lmms-eval builds a new one per run)

    def __init__(self, fail: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.fail = fail  # "all": every item raises
        self.fingerprint = {"adapter": self.name}

    def answer(self, queries: list[Query]) -> list[Answer]:
        answers = []
        for query in queries:
            ImageMeanAdapter.calls.append(query.question_id)
            if self.fail == "all":
                raise RuntimeError(f"no chat template for {query.question_id}")
            mean = float(np.asarray(query.images[0], dtype=np.float64).mean() / 255)
            text = {"dfd": "Yes", "dfc": "A"}.get(query.task, "blurry edges around the mouth")
            answers.append(Answer(text, score=mean if query.task == "dfd" else None))
        return answers


def register() -> str:
    MODEL_REGISTRY_V2.register_manifest(
        ModelManifest(model_id=ImageMeanAdapter.name, simple_class_path="thirdparty_adapter.ImageMeanAdapter"),
        overwrite=True,
    )
    return ImageMeanAdapter.name
