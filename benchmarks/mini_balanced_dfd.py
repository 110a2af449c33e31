"""A build's merged training JSON with its bona fide DF-D conversations repeated until DF-D is balanced.

    python benchmarks/mini_balanced_dfd.py --build mini --abilities dfd,dfc --output mini/instruct/dc_balanced.json

DFA-Bench-mini is 4:1 forged, so a model can fit DF-D by its prior. Each repeat is the same conversation (id
suffixed "#k"); `--abilities` keeps only those conversations (the id's ":ability" suffix). An experiment of
docs/dfa_gpt.md ("Fourth session"); `dfa-gpt train --balance-dfd` now does the same in the trainer (the same
1632 conversations on mini96); this script stays to rerun those rows as they ran.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, required=True)
    parser.add_argument("--abilities", default="dfd,dfc,ad")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    labels = {}
    for line in (args.build / "records/train.jsonl").read_text().splitlines():
        record = json.loads(line)
        labels[record["record_id"]] = record["label"]
    keep = set(args.abilities.split(","))
    merged = json.loads((args.build / "instruct/dfa_instruct_merged.json").read_text())
    kept = [c for c in merged if c["id"].rsplit(":", 1)[1] in keep]
    dfd = [c for c in kept if c["id"].endswith(":dfd")]
    bona_fide = [c for c in dfd if labels[c["id"].rsplit(":", 1)[0]] == "bona_fide"]
    repeats = (len(dfd) - len(bona_fide)) // max(len(bona_fide), 1)
    out = kept + [dict(c, id=f"{c['id']}#{k}") for k in range(1, repeats) for c in bona_fide]
    args.output.write_text(json.dumps(out, indent=0))
    print(f"{args.output}: {len(out)} conversations; DF-D bona fide x{repeats} ({len(bona_fide)} faces)")


if __name__ == "__main__":
    main()
