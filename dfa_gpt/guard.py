"""The learnability guard: can this base and recipe learn what only the image says?

Trains on a planted-cue set (dfa_gpt.planted: the category is a colour in two corners), scores its held-out
split from logits (dfa_gpt.dev_eval), and passes when DF-C ACC and DF-D AUC clear thresholds that no
image-blind model can reach. `dfa-gpt guard --base B` runs it; tests/test_dfa_gpt_guard.py runs it on
DFA-GPT-mini's architecture and on a tiny CLIP-tower LLaVA, and checks that a blinded model fails it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfa_gpt.planted import build_planted_set
from dfa_gpt.recipe import Recipe

THRESHOLDS = {"dfc_acc": 0.90, "dfd_auc": 0.95}


@dataclass
class GuardResult:
    passed: bool
    figures: dict[str, float | None]
    thresholds: dict[str, float] = field(default_factory=lambda: dict(THRESHOLDS))
    run: dict = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        shown = ", ".join(
            f"{k} {self.figures.get(k) if self.figures.get(k) is None else round(self.figures[k], 4)} (needs >= {v})"
            for k, v in self.thresholds.items()
        )
        return f"{'PASSED' if self.passed else 'FAILED'}: held-out {shown}"


def run_guard(
    base: str,
    output: Path | str,
    recipe: Recipe,
    *,
    per_category: int = 16,
    heldout_per_category: int = 8,
    image_size: int = 64,
    seed: int = 0,
    **train_kwargs: Any,
) -> GuardResult:
    """Build the planted set in OUTPUT/planted, train OUTPUT/run on it, score the held-out split."""
    from dfa_gpt.train import train

    output = Path(output)
    paths = build_planted_set(output / "planted", per_category=per_category,
                              heldout_per_category=heldout_per_category, size=image_size, seed=seed)  # fmt: skip
    run = train(base, [paths["data"]], paths["images"], output / "run", recipe, eval_bench=paths["dev"],
                **train_kwargs)  # fmt: skip
    final = run["dev"]["final"]
    figures = {k: final.get(k) for k in THRESHOLDS}
    passed = all(v is not None and v >= THRESHOLDS[k] for k, v in figures.items())
    return GuardResult(passed, figures, run=run)
