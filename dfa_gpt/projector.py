"""The multimodal projector's starting point: the base's, standardised on the training images, or a stage-1 one.

`standardize`: a data-dependent initialisation for a base whose projector is random and whose vision tower
is not CLIP (DFA-GPT-mini's EfficientNet: ReLU6 features, all positive, with a large mean shared by every
image). A random projector maps that shared mean to a large vector common to all images, and the part that
tells images apart is a small share of each image token, which training then learns to ignore. Folded into
the projector's weights (nothing changes in the architecture, so every LLaVA loader still reads the run):

- linear_1 sees per-channel standardised features, (x - mean) / std over the training images' tokens (as the
  vision-only probe standardises its features), and
- linear_2 is scaled so that the image tokens have the spread of the LM's input embeddings.

`load_projector`: a projector trained by `dfa-gpt train --stage align` (LLaVA's stage 1), or any
`mm_projector.safetensors` with llava-hf key names, loaded before stage 2 (LLaVA's `--pretrain_mm_mlp_adapter`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from dfa_gpt.recipe import PROJECTOR

PROJECTOR_FILE = "mm_projector.safetensors"


def projector_of(model: Any) -> torch.nn.Module:
    for name, module in model.named_modules():
        if name.endswith(PROJECTOR) and hasattr(module, "linear_1") and hasattr(module, "linear_2"):
            return module
    raise ValueError(f"{type(model).__name__} has no LLaVA-style {PROJECTOR} (linear_1, act, linear_2)")


@torch.no_grad()
def projector_inputs(model: Any, pixel_batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """[tokens, channels]: what the projector receives for these images (the model's own feature selection)."""
    captured: list[torch.Tensor] = []
    handle = projector_of(model).register_forward_pre_hook(
        lambda module, args: captured.append(args[0].detach().flatten(0, -2).float().cpu())
    )
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    device = model.get_input_embeddings().weight.device
    try:
        for pixel_values in pixel_batches:
            model.get_image_features(pixel_values=pixel_values.to(device, dtype=dtype))
    finally:
        handle.remove()
    if not captured:
        raise ValueError("no images to standardise the projector on")
    return torch.cat(captured)


@torch.no_grad()
def standardize_projector(model: Any, features: torch.Tensor) -> dict[str, float]:
    """Fold the features' standardisation into linear_1 and the embeddings' scale into linear_2 (in place).

    Returns the image tokens' spread before and after, and the embeddings' spread it was matched to."""
    projector = projector_of(model)
    first, second = projector.linear_1, projector.linear_2
    before = float(projector(features.to(first.weight)).float().std())
    mean, std = features.mean(0), features.std(0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # dead (constant) channels stay as they are
    weight = first.weight.float() / std.to(first.weight.device)
    bias = (first.bias.float() if first.bias is not None else 0) - weight @ mean.to(weight.device)
    first.weight.copy_(weight.to(first.weight.dtype))
    if first.bias is None:
        raise ValueError("the projector's first layer has no bias to fold the features' mean into")
    first.bias.copy_(bias.to(first.bias.dtype))
    target = float(model.get_input_embeddings().weight.float().std())
    spread = float(projector(features.to(first.weight)).float().std())
    second.weight.mul_(target / spread)
    if second.bias is not None:
        second.bias.mul_(target / spread)
    after = float(projector(features.to(first.weight)).float().std())
    return {"image_token_std_before": before, "image_token_std_after": after, "embedding_std": target,
            "tokens": int(features.shape[0])}  # fmt: skip


def save_projector(model: Any, path: Path | str) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in projector_of(model).state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", "module": PROJECTOR})


def load_projector(model: Any, path: Path | str) -> None:
    """A stage-1 projector (a file, or an align run holding mm_projector.safetensors) into `model`, checked."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / PROJECTOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no projector (dfa-gpt train --stage align writes {PROJECTOR_FILE})")
    state = load_file(str(path))
    state = {k.split(f"{PROJECTOR}.")[-1]: v for k, v in state.items()}  # full llava-hf key names too
    projector = projector_of(model)
    expected = projector.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        got = {k: tuple(v.shape) for k, v in state.items()}
        want = {k: tuple(v.shape) for k, v in expected.items()}
        raise ValueError(f"{path}: projector tensors {got} do not fit this base's {want}")
    projector.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
