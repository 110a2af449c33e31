"""Dev figures of a base whose projector is replaced, before any stage-2 step: does the untrained LM read it?

    python benchmarks/mini_zero_shot_dev.py --base base224 --projector p4 --bench mini/bench/dev --tasks dfd

`--projector` is a probe-projector or align run (or "-": the base's own projector); every dev item of the named
tasks is scored from logits as `dfa-gpt train --eval-bench` scores them (`dfa_gpt.dev_eval`), with no sample
limit. An experiment of docs/dfa_gpt.md ("Fourth session"), not the recipe.
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from dfa_gpt.dev_eval import DevEvaluator, bench_dev_items
from dfa_gpt.projector import load_projector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--projector", default="-", help='a run with mm_projector.safetensors, or "-"')
    parser.add_argument("--bench", required=True, help="a dev bench directory")
    parser.add_argument("--tasks", default="dfd,dfc", help="comma-separated: dfd, dfc")
    args = parser.parse_args()
    model = AutoModelForImageTextToText.from_pretrained(args.base, dtype=torch.float32).eval()
    if args.projector != "-":
        load_projector(model, args.projector)
    tasks = set(args.tasks.split(","))
    items = [item for item in bench_dev_items(args.bench, limit=None) if item.task in tasks]
    figures = DevEvaluator(items, AutoProcessor.from_pretrained(args.base)).evaluate(model)
    print(json.dumps({k: v for k, v in figures.items() if not isinstance(v, list) or len(v) <= 2}))


if __name__ == "__main__":
    main()
