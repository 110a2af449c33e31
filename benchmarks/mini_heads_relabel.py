"""A training set whose DF-D and DF-C answers say what `probe-projector`'s heads say of each face, not the truth.

    python benchmarks/mini_heads_relabel.py --base base224 --build mini96 --epochs 10 \
        --data mini/instruct/dfa_instruct_merged.json --output mini/instruct/merged_heads10.json

With `--readout words --rest 0` the image tokens carry the heads' decisions alone, so an LM trained on the true
answers is rewarded for fitting the training faces past their heads (memorising them), which does not carry
to new faces. Trained on the heads' own decisions instead (distillation from the probe, fitted on the train
split's labels only), the answer is a function of the image tokens, and the most the LM can learn is to read
them: on new faces, the heads' figures (`benchmarks/mini_probe_ceiling.py`). The heads are fitted exactly as
`dfa-gpt probe-projector --base BASE --data BUILD --epochs N` fits them (same features, order and seed); AD
answers are kept. Prints how many answers changed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from mini_probe_ceiling import tower_means


def main() -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from dfa_bench.adapters.probe_training import _read_training_records, fit_linear_head
    from dfa_bench.schema import CATEGORIES, LABELS
    from dfa_bench.templates import dfc_answer, dfd_answer, dfd_answer_label

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--build", type=Path, required=True, help="the build whose train split fits the heads")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", type=Path, required=True, help="LLaVA JSON to relabel (its images in --build)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    processor = AutoProcessor.from_pretrained(args.base)
    model = AutoModelForImageTextToText.from_pretrained(args.base, dtype=torch.float32).eval()
    x, y, c = tower_means(model, processor, args.build, "train")
    w, b = fit_linear_head(x, y, len(LABELS), epochs=args.epochs)
    wc, bc = fit_linear_head(x, c, len(CATEGORIES), epochs=args.epochs)
    verdicts = (x @ w.numpy().T + b.numpy()).argmax(1)
    categories = (x @ wc.numpy().T + bc.numpy()).argmax(1)
    records = _read_training_records(args.build / "records" / "train.jsonl")
    heads = {r["image"]: (LABELS[v], CATEGORIES[k]) for r, v, k in zip(records, verdicts, categories)}
    print(f"heads on {len(y)} training faces: DF-D acc {(verdicts == y).mean():.3f}, "
          f"category acc {(categories == c).mean():.3f}")  # fmt: skip

    entries = json.loads(args.data.read_text(encoding="utf-8"))
    changed = {"dfd": 0, "dfc": 0}
    for entry in entries:
        ability = entry["id"].rsplit(":", 1)[-1]
        if ability not in changed:
            continue
        if entry["image"] not in heads:
            raise SystemExit(f"{args.data}: {entry['id']}: {entry['image']} is not in {args.build}'s train split")
        label, category = heads[entry["image"]]
        answer = entry["conversations"][1]["value"]
        if ability == "dfd":
            truth = dfd_answer_label(answer)
            if truth is None:
                raise SystemExit(f"{args.data}: {entry['id']}: not a DF-D reference answer: {answer!r}")
            says_yes = answer.rstrip(".").endswith("yes")
            polarity = "forged" if (truth == "forgery") == says_yes else "authentic"
            assert dfd_answer(polarity, truth) == answer, entry["id"]  # the question's polarity read back right
            new = dfd_answer(polarity, label)
        else:
            new = dfc_answer(category)
        changed[ability] += new != answer
        entry["conversations"][1]["value"] = new
    args.output.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    print(f"{args.output}: {len(entries)} entries; answers changed: DF-D {changed['dfd']}, DF-C {changed['dfc']}")


if __name__ == "__main__":
    main()
