"""The dev curve of a training run: dev figures at intervals and at each epoch's end, the decision tokens'
training loss apart from the rest, the best checkpoint by a named dev metric, and a plot.

    RUN/dev_curve.json   one point per evaluation: step, epoch, seconds spent, dev figures, train losses
    RUN/dev_curve.png    DF-D AUC and DF-C ACC against chance; decision-token and other-token losses
    RUN/best/            the adapter of the best point (`--keep-best METRIC`); copied into RUN at the end

Every process evaluates the whole dev set (ZeRO-3 needs each rank in every forward); process 0 writes.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from loguru import logger
from transformers import TrainerCallback

from dfa_bench.io import read_json, write_json
from dfa_gpt.dev_eval import CHANCE, HIGHER_IS_BETTER, DevEvaluator, at_chance
from dfa_gpt.encoding import IGNORE_INDEX

CURVE_FILE, PLOT_FILE, BEST_DIR = "dev_curve.json", "dev_curve.png", "best"
SHOWN = ("dfd_auc", "dfd_acer", "dfc_acc", "caption_acc", "dfd_first_token_loss", "dfc_answer_loss")


class TokenLosses:
    """Sums of the training loss on the decision tokens (`dataset.decision_positions`: where a DF-D or DF-C
    answer parts from the other reference answers) and on the other answer tokens, between two logging steps.
    Detached: it changes no gradient."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.decision = self.decision_n = self.rest = self.rest_n = 0.0

    @torch.no_grad()
    def add(self, logits: torch.Tensor, labels: torch.Tensor, decision: torch.Tensor) -> None:
        """`decision`: [batch, length] bool, aligned with `labels`."""
        logits, targets = logits[:, :-1], labels[:, 1:].to(logits.device)
        answer = targets != IGNORE_INDEX
        decision = answer & decision[:, 1:].to(logits.device)
        for mask, name in ((decision, "decision"), (answer & ~decision, "rest")):
            if mask.any():
                loss = torch.nn.functional.cross_entropy(logits[mask].float(), targets[mask], reduction="sum")
                setattr(self, name, getattr(self, name) + float(loss))
                setattr(self, f"{name}_n", getattr(self, f"{name}_n") + int(mask.sum()))

    def pop(self) -> dict[str, float]:
        out = {}
        if self.decision_n:
            out["loss_decision_tokens"] = self.decision / self.decision_n
        if self.rest_n:
            out["loss_other_tokens"] = self.rest / self.rest_n
        self.reset()
        return out


class DevCurve(TrainerCallback):
    """Evaluates `evaluator` every `eval_steps` optimizer steps, at each epoch's end and before the first step."""

    def __init__(
        self,
        evaluator: DevEvaluator,
        output: Path,
        *,
        eval_steps: int,
        keep_best: str | None = None,
        save: Callable[[Path], None] | None = None,
    ) -> None:
        if keep_best is not None and keep_best not in HIGHER_IS_BETTER:
            raise ValueError(f"--keep-best {keep_best!r}: choose one of {', '.join(HIGHER_IS_BETTER)}")
        if keep_best is not None and save is None:
            raise ValueError("keep_best needs a save function")
        self.evaluator, self.output, self.eval_steps = evaluator, Path(output), eval_steps
        self.keep_best, self.save = keep_best, save
        self.points: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.train_logs: dict[str, float] = {}  # the latest logged training losses
        self.train_curve: list[dict[str, float]] = []  # every logged step's
        self._evaluated_at = -1

    # ---------------------------------------------------------------- Trainer events

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step == 0:  # the untrained model: where the curve starts (chance, for a random projector)
            self.evaluate(args, state, model)
        elif (self.output / CURVE_FILE).is_file():  # a resumed run continues its curve up to the checkpoint
            earlier = read_json(self.output / CURVE_FILE)
            self.points = [p for p in earlier.get("points", []) if p["step"] <= state.global_step]
            self.train_curve = [p for p in earlier.get("train", []) if p["step"] <= state.global_step]
            # RUN/best may hold an adapter saved after the checkpoint (a trajectory the resume discards): the
            # best is chosen afresh from the resumed steps on
            self.best = None
            if state.is_world_process_zero:
                shutil.rmtree(self.output / BEST_DIR, ignore_errors=True)
            self._evaluated_at = state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        found = {k: logs[k] for k in ("loss", "loss_decision_tokens", "loss_other_tokens") if logs and k in logs}
        if found:
            self.train_logs = found
            self.train_curve.append({"step": state.global_step, **found})

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.eval_steps > 0 and state.global_step % self.eval_steps == 0:
            self.evaluate(args, state, model)

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.evaluate(args, state, model)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, args: Any, state: Any, model: Any) -> None:
        if state.global_step == self._evaluated_at:
            return
        self._evaluated_at = state.global_step
        started = time.perf_counter()
        figures = self.evaluator.evaluate(model)
        point = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **figures,
                 "train": dict(self.train_logs), "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
        self.points.append(point)
        shown = ", ".join(f"{k} {figures[k]:.4f}" for k in SHOWN if figures.get(k) is not None)
        if state.is_world_process_zero:
            logger.info(f"dev @ step {state.global_step}: {shown} ({point['seconds']:.1f} s)")
        if self.keep_best and figures.get(self.keep_best) is not None and state.global_step > 0:
            value = figures[self.keep_best]
            sign = 1 if HIGHER_IS_BETTER[self.keep_best] else -1
            if self.best is None or sign * value > sign * self.best["value"]:
                self.best = {"metric": self.keep_best, "value": value, "step": state.global_step}
                self.save(self.output / BEST_DIR)  # every process: a DeepSpeed save is collective
        if state.is_world_process_zero:
            self.write()

    def write(self) -> None:
        write_json(self.output / CURVE_FILE, {"points": self.points, "best": self.best, "chance": CHANCE,
                                              "train": self.train_curve})  # fmt: skip
        plot_curve(self.points, self.output / PLOT_FILE, best=self.best, train=self.train_curve)

    def summary(self) -> dict[str, Any]:
        """What the run records: the last point, the best one, and the figures still at chance."""
        if not self.points:
            return {}
        final = self.points[-1]
        chosen = next((p for p in self.points if self.best and p["step"] == self.best["step"]), final)
        return {"final": final, "best": self.best, "at_chance": at_chance(chosen), "points": len(self.points)}


def plot_curve(
    points: list[dict[str, Any]], path: Path, *, best: dict | None = None, train: list[dict[str, float]] = ()
) -> None:
    """Two panels: dev DF-D AUC and DF-C ACC against chance; the dev first-token losses at each evaluation
    and the training loss of every logged step, first answer tokens apart from the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in points]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    for key, label, colour in (("dfd_auc", "dev DF-D AUC", "tab:blue"), ("dfc_acc", "dev DF-C ACC", "tab:orange"),
                               ("caption_acc", "dev caption ACC (align)", "tab:green")):  # fmt: skip
        values = [p.get(key) for p in points]
        if any(v is not None for v in values):
            top.plot(steps, [math.nan if v is None else v for v in values], "o-", label=label, color=colour)
            top.axhline(CHANCE[key], ls=":", color=colour, lw=1)
    if best:
        top.axvline(best["step"], ls="--", color="grey", lw=1, label=f"best {best['metric']}")
    top.set_ylim(0, 1)
    top.set_ylabel("dev figure (dotted: chance)")
    top.legend(loc="upper left", fontsize=8)
    top.set_title("DFA-GPT dev curve")
    train_steps = [t["step"] for t in train]
    for key, label, colour in (("loss_decision_tokens", "train: decision tokens", "tab:red"),
                               ("loss_other_tokens", "train: other answer tokens", "tab:grey")):  # fmt: skip
        values = [t.get(key, math.nan) for t in train]
        if train and any(not math.isnan(v) for v in values):
            bottom.plot(train_steps, [max(v, 1e-3) for v in values], "-", label=label, color=colour, lw=1)
    for key, label, colour in (("dfd_first_token_loss", "dev DF-D decision token (chance ln 2)", "tab:blue"),
                               ("dfc_answer_loss", "dev DF-C answer choice (chance ln 5)", "tab:orange")):  # fmt: skip
        values = [p.get(key) for p in points]
        if any(v is not None for v in values):
            bottom.plot(steps, [math.nan if v is None else v for v in values], "o-", label=label, color=colour, ms=4)
    bottom.axhline(math.log(2), ls=":", color="tab:blue", lw=1)
    bottom.axhline(math.log(5), ls=":", color="tab:orange", lw=1)
    bottom.set_yscale("log")  # the other tokens fall by orders of magnitude; the decision does not
    bottom.set_ylim(bottom=1e-3)
    bottom.set_xlabel("optimizer step")
    bottom.set_ylabel("loss (nats)")
    bottom.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
