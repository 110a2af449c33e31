"""The paper's annotation ablation (Table II): one DFA-GPT run per preset, each evaluated and submitted.

    OUTPUT/runs/<preset>/   dfa-gpt train --annotations <preset>
    OUTPUT/eval/<preset>/   dfa-bench eval --model dfa_gpt --model-args pretrained=OUTPUT/runs/<preset>
    LEADERBOARD             dfa-bench submit ... --group tuned --annotations <preset>

Re-running the command continues where it stopped: a finished run is not retrained, an interrupted
one resumes from its last complete checkpoint, and the evaluation resumes from its response cache.
`dfa-bench leaderboard paper-tables --leaderboard LEADERBOARD` then shows the measured Table II rows
beside the reported ones.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from dfa_gpt.recipe import ANNOTATION_PRESETS, Recipe
from dfa_gpt.train import RUN_FILE, complete_checkpoints, train

logger = logging.getLogger(__name__)


def preset_dir(preset: str) -> str:
    """A folder name for a preset: D+C+AD -> d-c-ad."""
    return preset.lower().replace("+", "-")


def ablation(
    base: str,
    data: list[Path],
    images: Path,
    bench: Path,
    output: Path,
    recipe: Recipe,
    *,
    leaderboard: Path | None = None,
    presets: tuple[str, ...] = tuple(ANNOTATION_PRESETS),
    model_name: str = "DFA-GPT",
    model_args: str = "",
    batch_size: int = 8,
    limit: int | None = None,
    **argument_overrides: object,
) -> list[dict]:
    """Train, evaluate and submit one run per preset; returns their leaderboard entries."""
    from dfa_bench.evaluate import run_eval
    from dfa_bench.leaderboard.entries import LEADERBOARD_FILE, init_leaderboard
    from dfa_bench.leaderboard.submit import submit

    unknown = [p for p in presets if p not in ANNOTATION_PRESETS]
    if unknown:
        raise ValueError(f"unknown annotation preset(s) {unknown}; use {' | '.join(ANNOTATION_PRESETS)}")
    output = Path(output)
    leaderboard = Path(leaderboard) if leaderboard else output / "leaderboard"
    if not (leaderboard / LEADERBOARD_FILE).exists():
        init_leaderboard(leaderboard, bench)  # an existing one must be for this bench: submit checks it
    entries = []
    for preset in presets:
        run_dir = output / "runs" / preset_dir(preset)
        if (run_dir / RUN_FILE).exists():
            logger.info(f"dfa-gpt ablation: {preset}: {run_dir} is trained; not retraining")
        else:
            resume = run_dir.exists() and bool(complete_checkpoints(run_dir))
            train(base, data, images, run_dir, replace(recipe, annotations=preset), resume=resume,
                  **argument_overrides)  # fmt: skip
        eval_dir = output / "eval" / preset_dir(preset)
        args = ",".join(filter(None, [f"pretrained={run_dir.resolve()}", model_args]))
        run_eval("dfa_gpt", bench, eval_dir, model_args=args, batch_size=batch_size, limit=limit)
        # one entry per preset and name: a re-run replaces its own entry rather than adding another
        entry, _ = submit(eval_dir, leaderboard, model_name=f"{model_name} ({preset})", group="tuned",
                          annotations=preset, replace=True)  # fmt: skip
        entries.append(entry)
    return entries
