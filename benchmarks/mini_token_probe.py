"""Do DFA-GPT-mini's image tokens carry the mini's labels, at a given resolution? A linear check.

For each image size, runs DFA-GPT-mini's own vision tower (the base's EfficientNet-Lite0, with its processor's
normalisation) on a build's train and dev images, and fits a logistic regression (scikit-learn, features
standardised on train) on (a) the tokens' mean (what the probe reads) and (b) all tokens flattened (what the
LM sees, read linearly). Prints dev DF-C ACC (5 ways) and DF-D AUC for each. If (b) is near chance at a
resolution, no projector + LM can be expected to learn the mini's cues from that many images there.

    python benchmarks/mini_token_probe.py --build demo_out/mini --base demo_out/dfa-gpt-mini/base \
        [--sizes 128,224] [--c 0.01]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, required=True, help="a build directory (records/{train,dev}.jsonl)")
    parser.add_argument("--base", type=Path, required=True, help="a DFA-GPT-mini base (dfa-gpt mini-base)")
    parser.add_argument("--sizes", default="128,224", help="image sizes in pixels, multiples of 32")
    parser.add_argument("--c", type=float, default=0.01, help="inverse L2 strength of the logistic regression")
    args = parser.parse_args()

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from transformers import AutoModelForImageTextToText, CLIPImageProcessor

    from dfa_bench.imaging import load_rgb
    from dfa_bench.schema import CATEGORIES

    model = AutoModelForImageTextToText.from_pretrained(args.base).eval()
    tower = model.model.vision_tower
    base_processor = CLIPImageProcessor.from_pretrained(args.base)

    def split(name: str) -> tuple[list, np.ndarray]:
        records = [json.loads(line) for line in (args.build / f"records/{name}.jsonl").read_text().splitlines()]
        images = [load_rgb(args.build / r["image"]) for r in records]
        return images, np.array([CATEGORIES.index(r["category"]) for r in records])

    def features(images: list, size: int) -> torch.Tensor:
        processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                       image_mean=base_processor.image_mean, image_std=base_processor.image_std)  # fmt: skip
        with torch.inference_mode():
            return torch.cat([tower(processor(images[i : i + 32], return_tensors="pt")["pixel_values"]).last_hidden_state
                              for i in range(0, len(images), 32)])  # fmt: skip

    (train, y_train), (dev, y_dev) = split("train"), split("dev")
    print(f"{len(train)} train and {len(dev)} dev images; C = {args.c}")
    for size in (int(s) for s in args.sizes.split(",")):
        f_train, f_dev = features(train, size), features(dev, size)
        for reading, pool in (
            ("mean of the tokens", lambda f: f.mean((2, 3))),
            ("tokens flattened", lambda f: f.flatten(1)),
        ):
            a, b = pool(f_train).numpy(), pool(f_dev).numpy()
            mean, std = a.mean(0), a.std(0) + 1e-6
            a, b = (a - mean) / std, (b - mean) / std
            dfc = LogisticRegression(C=args.c, max_iter=2000).fit(a, y_train)
            dfd = LogisticRegression(C=args.c, max_iter=2000).fit(a, y_train > 0)
            acc = float((dfc.predict(b) == y_dev).mean())
            auc = roc_auc_score(y_dev > 0, dfd.predict_proba(b)[:, 1])
            tokens = f_train.shape[2] * f_train.shape[3]
            print(f"{size} px ({tokens} tokens), {reading}: dev DF-C ACC {acc:.3f} (chance 0.2), DF-D AUC {auc:.3f}")


if __name__ == "__main__":
    main()
