"""Stage 1 in closed form: the projector started from a linear probe of the tower's own image tokens (LP-FT).

Kumar et al. (ICLR 2022, "Fine-Tuning can Distort Pretrained Features") fit a linear probe first and fine-tune
from it, because fine-tuning from a random head distorts the features before the head is any good. On
DFA-Bench-mini that is what happens to DFA-GPT-mini: stage 1 through the LM needs 3x the training images and
17 minutes to reach a fraction of what a logistic regression on the same features reads in seconds. Here the
probe's decisions are written into the projector, so the image tokens carry them from step 0 and stage 2
(LoRA) only has to learn to read them and to answer in the trained formats:

1. the projector is standardised on the training images' tokens (`projector.standardize_projector`): the
   random remainder of its hidden units;
2. two linear heads are fitted on the tokens' mean (the vision-only probe's own `fit_linear_head`): DF-D
   (bona fide / forgery) and the category (bona fide + the five forgery kinds);
3. each head's logit (per class; for DF-D, forgery minus bona fide), centred and scaled to unit spread over
   the training images, is written into a pair of hidden units, +a and -a. GELU(a) - GELU(-a) = a exactly,
   so with output columns +u and -u the image token gains a * u: the logit, linear in the token, along a
   direction u of its own (orthonormal, seeded, `scale` times the norm of an LM input embedding). The mean of
   the image tokens then carries each head's pooled logit exactly. With `readout="words"` the +a and -a units
   write instead the LM's input embeddings of the words the head names ("forged" / "bona fide", each
   category's name): the image token "says" the probe's decision in the LM's own vocabulary, which the
   untrained LM already reads (docs/dfa_gpt.md, "Fourth session").

Nothing changes in the architecture: the result is an ordinary `mm_projector.safetensors` that `dfa-gpt train
--projector DIR` loads, as it loads a `--stage align` run's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfa_gpt.projector import projector_inputs, projector_of, standardize_projector


def probe_directions(
    features: torch.Tensor, heads: dict[str, tuple[np.ndarray, int]], *, seed: int = 0, epochs: int = 1
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Linear functions of one image token whose mean over an image's tokens is a probe's logit.

    `features`: [images, tokens, channels]; `heads`: name -> (labels per image, number of classes).
    Returns (weight [K, channels], bias [K], figures): each row's pooled value has mean 0 and std 1 over the
    training images."""
    from dfa_bench.adapters.probe_training import fit_linear_head

    pooled = features.mean(1)
    rows_w, rows_b, figures = [], [], {}
    for name, (labels, n_classes) in heads.items():
        weight, bias = fit_linear_head(pooled.numpy(), labels, n_classes, epochs=epochs, seed=seed)
        logits = pooled @ weight.T + bias
        figures[f"{name}_train_accuracy"] = round(float((logits.argmax(1).numpy() == labels).mean()), 4)
        if n_classes == 2:  # one direction: the forgery logit minus the bona fide one
            weight, bias = (weight[1] - weight[0])[None], (bias[1] - bias[0])[None]
        rows_w.append(weight)
        rows_b.append(bias)
    weight, bias = torch.cat(rows_w), torch.cat(rows_b)
    values = pooled @ weight.T + bias
    mean, std = values.mean(0), values.std(0).clamp(min=1e-6)
    return weight / std[:, None], (bias - mean) / std, figures


@torch.no_grad()
def write_probe_into_projector(model: Any, weight: torch.Tensor, bias: torch.Tensor, *, scale: float = 1.0,
                               rest: float = 1.0, seed: int = 0,
                               readout: torch.Tensor | None = None) -> dict[str, float]:  # fmt: skip
    """Hidden units 0..2K-1 of the projector become +/- each row of (weight, bias); the other units' read-out is
    scaled by `rest` (0: the image tokens carry the probe alone) (in place).

    Read-out: by default K orthonormal seeded directions u (+a reads out +u, -a reads out -u: the token gains
    a * u exactly); or `readout` [K, 2, D], the vectors the +a and the -a unit write (zero rows write nothing),
    e.g. the embeddings of the words each decision names. Every nonzero vector is `scale` embedding norms long."""
    projector = projector_of(model)
    first, second = projector.linear_1, projector.linear_2
    k = weight.shape[0]
    if 2 * k > first.out_features:
        raise ValueError(f"{k} probe directions need {2 * k} hidden units; the projector has {first.out_features}")
    embeddings = model.get_input_embeddings().weight.float()
    norm = float(embeddings.norm(dim=1).median())
    if readout is None:
        generator = torch.Generator().manual_seed(seed)
        directions, _ = torch.linalg.qr(torch.randn(second.out_features, k, generator=generator))
        readout = torch.stack([directions.T, -directions.T], 1)
    if readout.shape != (k, 2, second.out_features):
        raise ValueError(f"readout must be [{k}, 2, {second.out_features}], not {list(readout.shape)}")
    lengths = readout.norm(dim=-1, keepdim=True)
    readout = torch.where(lengths > 0, readout / lengths.clamp(min=1e-12), readout) * (scale * norm)
    signs = torch.tensor([1.0, -1.0]).repeat(k)  # +a, -a, +b, -b, ...
    first.weight[: 2 * k] = (weight.repeat_interleave(2, 0) * signs[:, None]).to(first.weight)
    first.bias[: 2 * k] = (bias.repeat_interleave(2, 0) * signs).to(first.bias)
    second.weight[:, : 2 * k] = readout.reshape(2 * k, -1).T.to(second.weight)
    second.weight[:, 2 * k :] *= rest
    second.bias.mul_(rest)
    return {"directions": k, "direction_norm": scale * norm, "embedding_norm": norm, "rest": rest}


def word_readout(model: Any, tokenizer: Any, words: list[tuple[str, str | None]]) -> torch.Tensor:
    """[K, 2, D]: per probe row, the mean input embedding of the words its +a and its -a unit name (None: none).

    Of each text only the tokens that tell it from the other rows' texts on the same side are kept ("Face
    swapping (FS)" and "Face editing (FE)" share " Face" and the brackets); a text with none keeps them all."""
    embeddings = model.get_input_embeddings().weight.detach().float()

    def side(texts: list[str | None]) -> list[torch.Tensor]:
        ids = [tokenizer(" " + t, add_special_tokens=False)["input_ids"] if t is not None else [] for t in texts]
        out = []
        for row, own in enumerate(ids):
            shared = {i for other, theirs in enumerate(ids) if other != row for i in theirs}
            distinct = [i for i in own if i not in shared] or own
            out.append(embeddings[distinct].mean(0) if distinct else torch.zeros(embeddings.shape[1]))
        return out

    positive, negative = side([pos for pos, _ in words]), side([neg for _, neg in words])
    return torch.stack([torch.stack(pair) for pair in zip(positive, negative)])


def probe_projector(model: Any, pixel_batches: Iterable[torch.Tensor], heads: dict[str, tuple[np.ndarray, int]],
                    *, scale: float = 1.0, rest: float = 1.0, seed: int = 0, epochs: int = 1,
                    readout: torch.Tensor | None = None) -> dict[str, Any]:  # fmt: skip
    """Standardise the projector on these images, then write the probe's heads into it; returns the figures.

    `heads`' labels follow the images' order in `pixel_batches`."""
    tokens = projector_inputs(model, pixel_batches)
    n_images = len(next(iter(heads.values()))[0])
    if tokens.shape[0] % n_images:
        raise ValueError(f"{tokens.shape[0]} image tokens do not split evenly over {n_images} labelled images")
    done: dict[str, Any] = {"standardize": standardize_projector(model, tokens)}
    features = tokens.reshape(n_images, tokens.shape[0] // n_images, tokens.shape[1])
    weight, bias, figures = probe_directions(features, heads, seed=seed, epochs=epochs)
    done.update(
        figures, **write_probe_into_projector(model, weight, bias, scale=scale, rest=rest, seed=seed, readout=readout)
    )
    return done


PROBE_FILE = "probe_projector.json"
READOUTS = ("random", "words")


def build_probe_projector(base: str, data: Path | str, output: Path | str, *, split: str = "train",
                          scale: float = 1.0, rest: float = 1.0, seed: int = 0, epochs: int = 1,
                          readout: str = "random") -> dict[str, Any]:  # fmt: skip
    """Fit the probe on a build's `split` (or a records JSONL) with `base`'s tower; write OUTPUT/mm_projector.safetensors
    (what `dfa-gpt train --projector OUTPUT` loads) and OUTPUT/probe_projector.json (the figures)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from dfa_bench.adapters.pooled_vlm import register as register_pooled_vlm
    from dfa_bench.adapters.probe_features import resolve_training_data
    from dfa_bench.adapters.probe_training import _read_training_records
    from dfa_bench.imaging import load_rgb
    from dfa_bench.io import write_json
    from dfa_bench.schema import CATEGORIES, CATEGORY_NAMES, LABELS
    from dfa_gpt.projector import PROJECTOR_FILE, save_projector

    if readout not in READOUTS:
        raise ValueError(f"readout {readout!r}: choose one of {', '.join(READOUTS)}")
    records_path, root = resolve_training_data(data, split)
    records = _read_training_records(records_path)
    processor = AutoProcessor.from_pretrained(base)
    register_pooled_vlm()  # DFA-GPT-mini's pooled-token model type, if this is one
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32).eval()

    def batches() -> Iterable[torch.Tensor]:
        for start in range(0, len(records), 16):
            chunk = records[start : start + 16]
            images = [load_rgb(root / r["image"], what=f"{records_path}:{r['_line']} image") for r in chunk]
            yield processor.image_processor(images=images, return_tensors="pt")["pixel_values"]

    heads = {
        "dfd": (np.array([LABELS.index(r["label"]) for r in records]), len(LABELS)),
        "category": (np.array([CATEGORIES.index(r["category"]) for r in records]), len(CATEGORIES)),
    }
    # words: DF-D's +a unit names the forgery, its -a unit the bona fide face; each category's unit its name
    words = [("forged", "bona fide"), *[(CATEGORY_NAMES[c], None) for c in CATEGORIES]]
    vectors = word_readout(model, processor.tokenizer, words) if readout == "words" else None
    done = probe_projector(model, batches(), heads, scale=scale, rest=rest, seed=seed, epochs=epochs, readout=vectors)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    save_projector(model, output / PROJECTOR_FILE)
    summary = {"base": str(base), "records": str(records_path), "images": len(records), "scale": scale,
               "rest": rest, "readout": readout, "seed": seed, "epochs": epochs, **done}  # fmt: skip
    write_json(output / PROBE_FILE, summary)
    return summary
