"""`dfa_probe`: the vision-only baselines of the paper's Table I answering DFA-Bench through lmms-eval.

The paper freezes ResNet101, DeiT-B/16, DeiT-L, CLIP-B/16 and CLIP-L/14 and tunes only a final projection
layer for one epoch on the DF-D labels (2-way) and, separately, on the DF-C labels (5-way). The pieces:
`probe_features` (backbones and the feature cache), `probe_training` (`dfa-bench probe train`: the two
linear heads), and this module: `Probe` loads a trained head directory with its backbone, and `DFAProbe`
turns its probabilities into DF-D and DF-C answers (and "-" for AD, which a probe cannot describe).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dfa_bench.adapters.base import DFAAdapter
from dfa_bench.adapters.probe_features import make_backbone
from dfa_bench.adapters.probe_training import HEAD_FORMAT, HEAD_META, HEAD_WEIGHTS, HEADS, predict_proba
from dfa_bench.contract import Answer, Query
from dfa_bench.schema import CATEGORIES, LABELS
from dfa_bench.templates import dfc_answer, dfd_answer

# ------------------------------------------------------------------------------------------------ inference


class Probe:
    """A trained head directory with its backbone: features -> DF-D P(forgery) and DF-C probabilities."""

    def __init__(self, head_dir: Path | str, *, backbone: str | None = None, device: str | None = None) -> None:
        from safetensors.torch import load

        self.head_dir = Path(head_dir)
        meta_path, weights_path = self.head_dir / HEAD_META, self.head_dir / HEAD_WEIGHTS
        if not meta_path.is_file() or not weights_path.is_file():
            raise ValueError(f"not a probe head directory (no {HEAD_META} / {HEAD_WEIGHTS}): {self.head_dir}")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if self.meta.get("format") != HEAD_FORMAT:
            raise ValueError(f"{meta_path}: unknown format {self.meta.get('format')!r}, expected {HEAD_FORMAT}")
        raw = weights_path.read_bytes()
        self.weights_sha256 = hashlib.sha256(raw).hexdigest()
        if self.weights_sha256 != self.meta["weights_sha256"]:
            raise ValueError(f"{weights_path} does not match the sha256 in {meta_path}")
        self.tensors = {k: v.float() for k, v in load(raw).items()}
        for head, classes in HEADS.items():
            shape = tuple(self.tensors[f"{head}.weight"].shape)
            same_classes = self.meta["heads"][head]["classes"] == list(classes)
            if shape != (len(classes), self.meta["feature_dim"]) or not same_classes:
                raise ValueError(f"{weights_path}: the {head} head has shape {shape}, classes do not match")
        self.backbone = make_backbone(backbone or self.meta["backbone"], device)
        # a head only makes sense on the features it was trained on: same weights, same preprocessing
        if self.backbone.id != self.meta["backbone_id"]:
            raise ValueError(
                f"backbone {self.backbone.spec} (id {self.backbone.id}) is not the one this head was trained on "
                f"({self.meta['backbone']}, id {self.meta['backbone_id']})"
            )
        self._memory: dict[str, np.ndarray] = {}  # pixel digest -> features: DF-D and DF-C share their images

    @staticmethod
    def _digest(image) -> str:
        digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
        return digest.hexdigest()

    def features(self, images: Sequence, batch_size: int = 32) -> np.ndarray:
        keys = [self._digest(image) for image in images]
        todo = {key: image for key, image in zip(keys, images) if key not in self._memory}
        if todo:
            computed = self.backbone.features(list(todo.values()), batch_size)
            self._memory.update(zip(todo, computed))
        return np.stack([self._memory[key] for key in keys])

    def p_forgery(self, features: np.ndarray) -> np.ndarray:
        probs = predict_proba(self.tensors["dfd.weight"], self.tensors["dfd.bias"], features)
        return probs[:, LABELS.index("forgery")]

    def categories(self, features: np.ndarray) -> list[str]:
        probs = predict_proba(self.tensors["dfc.weight"], self.tensors["dfc.bias"], features)
        return [CATEGORIES[i] for i in probs.argmax(1)]


def dfd_response(p_forgery: float, polarity: str, threshold: float = 0.5) -> str:
    """The bench's DF-D reference answer (templates.dfd_answer) for the probe's decision."""
    return dfd_answer(polarity, "forgery" if p_forgery >= threshold else "bona_fide")


def dfc_response(category: str, options: Sequence[dict]) -> str:
    """The bench's DF-C reference answer (templates.dfc_answer) for `category`, one of the item's options."""
    if not any(o["category"] == category for o in options):
        raise ValueError(f"the item offers no option for {category!r}")
    return dfc_answer(category)


class DFAProbe(DFAAdapter):
    """lmms-eval model `dfa_probe`: model_args `head=<dir from dfa-bench probe train>[,backbone=SPEC][,device=cpu]`.

    DF-D: the DF-D head's decision at P(forgery) >= threshold, `score` = P(forgery) (for AUC/EER).
    DF-C: the DF-C head's category, as the item's option. AD: "-" (vision-only models describe nothing).
    """

    name = "dfa_probe"

    def __init__(
        self,
        head: str | None = None,
        backbone: str | None = None,
        threshold: float | str = 0.5,
        feature_batch_size: int | str = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not head:
            raise ValueError("dfa_probe: give model_args head=<directory written by `dfa-bench probe train`>")
        self.probe = Probe(head, backbone=backbone, device=self.device_name)
        self.threshold = float(threshold)
        self.feature_batch_size = max(1, int(feature_batch_size))
        self.fingerprint = {"adapter": self.name, "backbone": self.probe.backbone.id,
                            "head_sha256": self.probe.weights_sha256, "threshold": self.threshold}  # fmt: skip

    def answer(self, queries: list[Query]) -> list[Answer]:
        answers: list[Answer | None] = [None] * len(queries)
        need: list[int] = []
        for i, query in enumerate(queries):
            if query.task == "ad":
                answers[i] = Answer("-")
            elif query.task not in ("dfd", "dfc"):
                answers[i] = Answer("", error=f"dfa_probe answers DFA-Bench dfd/dfc/ad items only, not {query.task!r}")
            elif not query.images:
                answers[i] = Answer("", error="no image")
            else:
                need.append(i)
        if need:
            features = self.probe.features([queries[i].images[0] for i in need], self.feature_batch_size)
            p_forgery = self.probe.p_forgery(features)
            categories = self.probe.categories(features)
            for j, i in enumerate(need):
                doc = queries[i].doc
                if queries[i].task == "dfd":
                    p = float(p_forgery[j])
                    answers[i] = Answer(dfd_response(p, doc["polarity"], self.threshold), score=p)
                else:
                    answers[i] = Answer(dfc_response(categories[j], doc["options"]))
        return answers  # type: ignore[return-value]


__all__ = ["DFAProbe", "Probe", "dfc_response", "dfd_response"]
