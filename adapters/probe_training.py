"""Training the probe's linear heads (DF-D 2-way, DF-C 5-way) on a frozen backbone's cached features.

As in the paper (Table I): the backbone stays frozen and only a final projection layer is tuned, for one
epoch by default. `train_probe` writes `head.safetensors` (weights only) and `head.json` (backbone,
classes, counts, settings and the sha256 of the train data), which `dfa_probe` loads.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from loguru import logger

from dfa_bench import __version__
from dfa_bench.adapters.probe_features import (
    DEFAULT_BACKBONE,
    FEATURE_VERSION,
    FeatureCache,
    extract_record_features,
    make_backbone,
    resolve_training_data,
)
from dfa_bench.io import atomic_write_bytes, iter_jsonl, sha256_file, write_json
from dfa_bench.schema import CATEGORIES, LABELS, ValidationError, validate_record

HEAD_FORMAT = "dfa-probe-head/1"
HEAD_WEIGHTS = "head.safetensors"
HEAD_META = "head.json"
HEADS = {"dfd": LABELS, "dfc": CATEGORIES}  # head name -> its classes, in output order
DEFAULT_LR = 1e-3
DEFAULT_WEIGHT_DECAY = 1e-4

# ------------------------------------------------------------------------------------------------ heads


OPTIMIZERS = ("adamw", "sgd")


def check_optimizer(optimizer: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; use adamw or sgd")


def fit_linear_head(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    epochs: int = 1,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = DEFAULT_LR,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    optimizer: str = "adamw",
    balanced: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear layer (weight [C, D], bias [C]) on raw features, trained with cross-entropy.

    It is trained on standardised features (per-dimension train mean and std: well conditioned, so one epoch
    at a modest learning rate goes a long way) and the standardisation is folded into the returned weights,
    so the saved head is a plain linear layer on the backbone's features. Zero init and a seeded shuffle make
    it deterministic."""
    check_optimizer(optimizer)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    mean, std = x.mean(0), x.std(0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant dims (dead ReLU6 units) stay at 0
    z = (x - mean) / std
    layer = torch.nn.Linear(x.shape[1], n_classes)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    if optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(layer.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    counts = torch.bincount(y, minlength=n_classes).float()
    # inverse-frequency weights, mean 1 over the classes present; an absent class gets 0
    class_weights = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), max(1, batch_size)):
            index = order[start : start + batch_size]
            loss = torch.nn.functional.cross_entropy(
                layer(z[index]), y[index], weight=class_weights if balanced else None
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        weight = layer.weight / std
        bias = layer.bias - weight @ mean
    return weight.contiguous(), bias.contiguous()


def predict_proba(weight: torch.Tensor, bias: torch.Tensor, features: np.ndarray) -> np.ndarray:
    """Softmax probabilities [N, C] of a linear head on raw features."""
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    with torch.no_grad():
        return torch.softmax(x @ weight.T + bias, dim=1).numpy()


def _read_training_records(records_path: Path) -> list[dict]:
    records = []
    for line_no, obj in iter_jsonl(records_path):
        record = validate_record(obj, path=str(records_path), line=line_no)
        records.append({**record, "_line": line_no})
    if not records:
        raise ValidationError("no training records", path=str(records_path))
    return records


def train_probe(
    data: Path | str,
    output: Path | str,
    *,
    backbone: str = DEFAULT_BACKBONE,
    split: str = "train",
    images: Path | str | None = None,
    epochs: int = 1,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = DEFAULT_LR,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    optimizer: str = "adamw",
    balanced: bool = False,
    cache: Path | str | None = None,
    device: str | None = None,
    skip_bad_images: bool = False,
) -> dict:
    """Train the DF-D and DF-C heads on a build's train split (or a records JSONL); write them to `output`.

    Returns head.json's content plus this run's `run` figures (feature cache hits, timings)."""
    started = time.perf_counter()
    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    records_path, root = resolve_training_data(data, split, images)
    records = _read_training_records(records_path)
    extractor = make_backbone(backbone, device)
    output = Path(output)
    cache_root = Path(cache) if cache else output / "feature_cache"
    feature_cache = FeatureCache(cache_root, extractor.id)
    features, kept, skipped, feature_stats = extract_record_features(
        records, root, extractor, feature_cache, records_path=records_path, batch_size=batch_size,
        skip_bad_images=skip_bad_images,
    )  # fmt: skip
    for entry in skipped:
        logger.warning(f"probe: skipped {entry['record_id']} ({entry['image']}): {entry['reason']}")
    if not kept:
        raise ValidationError("no usable training images", path=str(records_path))

    train_started = time.perf_counter()
    tensors: dict[str, torch.Tensor] = {}
    heads: dict[str, dict] = {}
    settings = {"epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                "optimizer": optimizer, "balanced": balanced}  # fmt: skip
    for head, classes in HEADS.items():
        field = "label" if head == "dfd" else "category"
        labels = np.array([classes.index(r[field]) for r in kept])
        counts = Counter(r[field] for r in kept)
        if len(counts) < 2:
            raise ValidationError(
                f"the {head} head needs at least two classes in the train data, found only {sorted(counts)}",
                path=str(records_path),
            )
        weight, bias = fit_linear_head(features, labels, len(classes), **settings)
        tensors[f"{head}.weight"], tensors[f"{head}.bias"] = weight, bias
        accuracy = float((predict_proba(weight, bias, features).argmax(1) == labels).mean())
        heads[head] = {"classes": list(classes), "train_counts": {c: counts.get(c, 0) for c in classes},
                       "train_accuracy": round(accuracy, 6)}  # fmt: skip
    train_seconds = time.perf_counter() - train_started

    from safetensors.torch import save

    weights = save(tensors, metadata={"format": HEAD_FORMAT})
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output / HEAD_WEIGHTS, weights)
    images_digest = hashlib.sha256(
        "".join(f"{r['record_id']}\t{r['image_sha256']}\t{r['category']}\n" for r in kept).encode()
    ).hexdigest()
    meta = {
        "format": HEAD_FORMAT,
        "backbone": extractor.spec,
        "backbone_id": extractor.id,
        "backbone_weights_sha256": extractor.weights_sha256,
        "feature_dim": int(features.shape[1]),
        "feature_version": FEATURE_VERSION,
        "heads": heads,
        **settings,
        "train_data": {
            "records": str(records_path.resolve()),
            "images_root": str(root.resolve()),
            "split": split if Path(data).is_dir() else None,
            "records_sha256": sha256_file(records_path),
            "images_sha256": images_digest,  # over (record_id, image sha256, category) of the records used
            "n_records": len(records),
            "n_used": len(kept),
            "skipped": skipped,
        },
        "weights_file": HEAD_WEIGHTS,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "created_by": f"dfa-bench {__version__}",
    }
    write_json(output / HEAD_META, meta)
    run = {**feature_stats, "feature_cache": str(feature_cache.dir), "device": extractor.device,
           "train_seconds": round(train_seconds, 3), "total_seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
    return {**meta, "run": run}
