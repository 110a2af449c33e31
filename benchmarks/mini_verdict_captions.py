"""Stage-1 captions that state the DF-D verdict before the category, and how far a projector aligned on them reads
a bench's images. Two commands:

    # the build's captions rewritten: "This face image is forged. Face swapping (FS). ..." /
    # "This face image is a bona fide, unmanipulated face. Bona fide. ..."
    python benchmarks/mini_verdict_captions.py write --build mini96 --output mini96/instruct/caption_verdict.json
    # a stage-1 run (or "-" for the base's own projector) scored on every dev image, teacher-forced over the five
    # verdict captions: caption ACC (5 ways, 95% bootstrap interval) and DF-D AUC from P(not the bona fide caption)
    python benchmarks/mini_verdict_captions.py score --base base224 --run align --bench mini96/bench/dev

An experiment of docs/dfa_gpt.md ("What else was tried"), not the recipe: `dfa-bench data build` keeps the
DF-C answer as the caption. Scoring reuses `dfa_gpt.dev_eval` (the prompts rendered as training renders them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def verdict_caption(category: str) -> str:
    from dfa_bench.templates import dfc_answer, dfd_answer

    label = "bona_fide" if category == "bona_fide" else "forgery"
    verdict = dfd_answer("forged", label).split(", so the answer")[0]  # "This face image is forged"
    return f"{verdict}. {dfc_answer(category)}"


def write(build: Path, output: Path) -> None:
    from dfa_bench.io import iter_jsonl

    categories = {r["record_id"]: r["category"] for _, r in iter_jsonl(build / "records/train.jsonl")}
    entries = json.loads((build / "instruct/dfa_instruct_caption.json").read_text(encoding="utf-8"))
    for entry in entries:
        entry["conversations"][1]["value"] = verdict_caption(categories[entry["id"].split(":")[0]])
    output.write_text(json.dumps(entries, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {len(entries)} captions to {output}")


def score(base: str, run: str, bench: Path, limit: int | None) -> dict:
    import torch
    from sklearn.metrics import roc_auc_score

    from dfa_bench.schema import CATEGORIES
    from dfa_gpt.dev_eval import DevEvaluator, bench_dev_items
    from dfa_gpt.model import load_base
    from dfa_gpt.projector import load_projector
    from dfa_gpt.recipe import Recipe
    from dfa_gpt.train import load_processor

    model = load_base(base, Recipe(bf16=False))
    if run != "-":
        load_projector(model, Path(run) / "mm_projector.safetensors")
    items = [i for i in bench_dev_items(bench, limit=limit, captions=True) if i.task == "caption"]
    evaluator = DevEvaluator(items, load_processor(base), batch_size=20)
    answers = [verdict_caption(c) for c in CATEGORIES]
    first = {}
    evaluator.choice_sequences = []
    for item in evaluator.choices:  # the five verdict captions instead of the five DF-C answers
        if item.question not in first:
            first[item.question] = evaluator.tokenized(item, ["", answers[0]])[1]
        evaluator.choice_sequences.append((evaluator.tokenized(item, answers)[0], first[item.question]))
    scores = evaluator.choice_log_likelihoods(model)
    figures = evaluator.score(torch.empty(0, 0), scores)
    p_forged = 1 - scores.log_softmax(-1)[:, CATEGORIES.index("bona_fide")].exp()
    truth = [item.category != "bona_fide" for item in evaluator.choices]
    figures["dfd_auc_from_caption"] = float(roc_auc_score(truth, p_forged.numpy()))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("--build", type=Path, required=True)
    w.add_argument("--output", type=Path, required=True)
    s = sub.add_parser("score")
    s.add_argument("--base", required=True, help="a DFA-GPT-mini base (dfa-gpt mini-base)")
    s.add_argument("--run", required=True, help="a stage-1 run directory (mm_projector.safetensors), or -")
    s.add_argument("--bench", type=Path, required=True)
    s.add_argument("--limit", type=int, default=None, help="a seeded sample of N images (default: all)")
    args = parser.parse_args()
    if args.command == "write":
        write(args.build, args.output)
    else:
        print(json.dumps(score(args.base, args.run, args.bench, args.limit)))


if __name__ == "__main__":
    main()
