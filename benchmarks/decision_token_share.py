"""The decision tokens' share of a training set's answer tokens, and of the loss at a given --decision-weight.

    python benchmarks/decision_token_share.py --base base224 --data mini96/instruct/dfa_instruct_merged.json \
        --images mini96 --balance-dfd --weight 10

The decision tokens are `dfa_gpt.dataset.decision_positions`' (where a DF-D or DF-C answer parts from the other
reference answers); the set is tokenized as `dfa-gpt train` tokenizes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from transformers import AutoProcessor

    from dfa_gpt.dataset import TrainingSet
    from dfa_gpt.encoding import IGNORE_INDEX
    from dfa_gpt.entries import BadSampleReport, balance_dfd, load_entries

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--balance-dfd", action="store_true")
    parser.add_argument("--weight", type=float, default=10.0)
    args = parser.parse_args()
    report = BadSampleReport(None)
    entries, _ = load_entries([args.data], args.images, abilities=None, report=report)
    if args.balance_dfd:
        entries, _ = balance_dfd(entries)
    dataset = TrainingSet(entries, AutoProcessor.from_pretrained(args.base), max_length=2048, report=report)
    answer = sum(sum(label != IGNORE_INDEX for label in e.labels) for e in dataset.encoded)
    decision = sum(len(d) for d in dataset.decisions)
    weighted = args.weight * decision / (args.weight * decision + answer - decision)
    print(f"{len(dataset)} samples: {decision} decision tokens of {answer} answer tokens ({decision / answer:.1%}); "
          f"at --decision-weight {args.weight:g} they carry {weighted:.1%} of the loss")  # fmt: skip


if __name__ == "__main__":
    main()
