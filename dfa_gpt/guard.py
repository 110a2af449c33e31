"""The learnability guard: can this base and recipe learn what only the image says?

Trains on a planted-cue set (dfa_gpt.planted: the category is a colour in two corners), in LLaVA's two stages
when an align recipe is given (stage 1: the projector alone on the set's captions, LM frozen; stage 2: LoRA and
projector on its DF-D and DF-C pairs, from stage 1's projector), scores its held-out split from logits
(dfa_gpt.dev_eval), and passes when DF-C ACC and DF-D AUC clear thresholds that no image-blind model can
reach. `dfa-gpt guard --base B` runs it; tests/test_dfa_gpt_guard.py runs it on DFA-GPT-mini's architecture
and on LLaVA-1.5's (`mini-base --tower clip-random`), and checks that a blinded model fails it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from dfa_gpt.planted import build_planted_set
from dfa_gpt.recipe import Recipe

THRESHOLDS = {"dfc_acc": 0.90, "dfd_auc": 0.95}


class Blind(TrainerCallback):
    """Zeroes the projector's input in every forward from the first step on: a model blind to its image, the
    control that must fail the guard (`dfa-gpt guard --blind`)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from dfa_gpt.projector import projector_of

        projector_of(model).register_forward_pre_hook(lambda module, inputs: (torch.zeros_like(inputs[0]),))


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
    align: Recipe | None = None,
    blind: bool = False,
    per_category: int = 16,
    heldout_per_category: int = 8,
    image_size: int = 64,
    seed: int = 0,
    **train_kwargs: Any,
) -> GuardResult:
    """Build the planted set in OUTPUT/planted, align OUTPUT/align on its captions (with `align`), train
    OUTPUT/run on its DF-D and DF-C pairs, score the held-out split. `blind`: the image zeroed at the
    projector's input in both stages and in the scoring (the control)."""
    from dfa_gpt.train import train

    output = Path(output)
    if blind:
        train_kwargs["callbacks"] = [*train_kwargs.get("callbacks", []), Blind()]
    paths = build_planted_set(output / "planted", per_category=per_category,
                              heldout_per_category=heldout_per_category, size=image_size, seed=seed)  # fmt: skip
    if align is not None:
        train(base, [paths["captions"]], paths["images"], output / "align", replace(align, stage="align"),
              **train_kwargs)  # fmt: skip
        recipe = replace(recipe, projector=str(output / "align"), projector_init="base")  # aligned: kept as it is
    run = train(base, [paths["data"]], paths["images"], output / "run", recipe, eval_bench=paths["dev"],
                **train_kwargs)  # fmt: skip
    final = run["dev"]["final"]
    figures = {k: final.get(k) for k in THRESHOLDS}
    passed = all(v is not None and v >= THRESHOLDS[k] for k, v in figures.items())
    return GuardResult(passed, figures, run=run)
