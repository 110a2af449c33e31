"""What `dfa-gpt probe-projector` can hand DFA-GPT-mini: its linear heads' own dev and test figures.

    python benchmarks/mini_probe_ceiling.py --base base224 --build mini [--epochs 1,3,10,30]

The heads are fitted as `probe-projector` fits them (`fit_linear_head` on the mean of the base tower's image
tokens over the build's train split) and read on the dev and test splits' faces: DF-D AUC of the DF-D head
(forgery minus bona fide logit; also fitted class-balanced) and DF-C ACC of the category head over the forged
faces (its argmax among the forgery categories). An LM that reads these image tokens perfectly gets these
figures; one that reads them partly, less. Prints one line per head setting.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def tower_means(model, processor, build: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean image token [N, C], DF-D label [N], category index [N]) of a build split's faces."""
    from dfa_bench.adapters.probe_training import _read_training_records
    from dfa_bench.imaging import load_rgb
    from dfa_bench.schema import CATEGORIES, LABELS
    from dfa_gpt.projector import projector_inputs

    records = _read_training_records(build / "records" / f"{split}.jsonl")

    def batches():
        for start in range(0, len(records), 16):
            images = [load_rgb(build / r["image"]) for r in records[start : start + 16]]
            yield processor.image_processor(images=images, return_tensors="pt")["pixel_values"]

    with torch.no_grad():
        tokens = projector_inputs(model, batches())
    means = tokens.reshape(len(records), -1, tokens.shape[-1]).mean(1).numpy()
    labels = np.array([LABELS.index(r["label"]) for r in records])
    return means, labels, np.array([CATEGORIES.index(r["category"]) for r in records])


def main() -> None:
    from sklearn.metrics import roc_auc_score
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from dfa_bench.adapters.probe_training import fit_linear_head
    from dfa_bench.schema import CATEGORIES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--build", type=Path, required=True)
    parser.add_argument("--epochs", default="1,3,10,30")
    args = parser.parse_args()
    processor = AutoProcessor.from_pretrained(args.base)
    model = AutoModelForImageTextToText.from_pretrained(args.base, dtype=torch.float32).eval()
    splits = {s: tower_means(model, processor, args.build, s) for s in ("train", "dev", "test")}
    x, y, c = splits["train"]
    print(f"{args.build}: {len(y)} training faces ({int((y == 0).sum())} bona fide)")
    for epochs in (int(e) for e in args.epochs.split(",")):
        for balanced in (False, True):
            w, b = fit_linear_head(x, y, 2, epochs=epochs, balanced=balanced)
            wc, bc = fit_linear_head(x, c, len(CATEGORIES), epochs=epochs, balanced=balanced)
            parts = [f"train DF-D acc {((x @ w.numpy().T + b.numpy()).argmax(1) == y).mean():.3f}, "
                     f"category acc {((x @ wc.numpy().T + bc.numpy()).argmax(1) == c).mean():.3f}"]  # fmt: skip
            for split in ("dev", "test"):
                xs, ys, cs = splits[split]
                forgery = (xs @ w.numpy().T + b.numpy()) @ np.array([-1.0, 1.0])
                forged = ys == 1
                category = (xs[forged] @ wc.numpy().T + bc.numpy())[:, 1:].argmax(1) + 1
                parts.append(f"{split} DF-D AUC {roc_auc_score(ys, forgery):.3f}, "
                             f"DF-C ACC {(category == cs[forged]).mean():.3f}")  # fmt: skip
            print(f"epochs {epochs:>2}{' balanced' if balanced else '         '}: " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
