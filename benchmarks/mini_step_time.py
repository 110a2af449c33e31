"""Stage 2's time per optimizer step, by where the gradient has to go: LoRA in every LM layer or the last N,
the projector trained or frozen (`--projector-lr 0` freezes it, so backward stops at the lowest LoRA layer).

    python benchmarks/mini_step_time.py --base base224 --data mini/instruct/dfa_instruct_merged.json \
        --images mini --projector p5 --steps 8 --layers 0,10,6

Each setting is a real `dfa-gpt train` run (the demo's batch of 8, float32, CPU) of --steps steps; the first
step (allocation, warm-up) is dropped and the median of the others printed, with its ratio to the first setting.
The settings run one after another in this process, so their ratios are side by side on the same machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    from transformers import TrainerCallback

    from dfa_gpt.recipe import Recipe
    from dfa_gpt.train import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--projector", help="a stage-1 projector (as `dfa-gpt train --projector`)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--layers", default="0,10,6", help="LoRA layer counts to time with a frozen projector")
    args = parser.parse_args()

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, *a, **k) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k) -> None:
            self.times.append(time.perf_counter() - self.start)

    common = dict(lora_rank=16, lora_alpha=32, learning_rate=5e-4, max_steps=args.steps, per_device_batch_size=8,
                  bf16=False, gradient_checkpointing=False, dataloader_workers=0, save_steps=1000, balance_dfd=True,
                  projector=args.projector)  # fmt: skip
    settings = [("every layer, projector trained (lr 1e-3)", Recipe(**common, projector_lr=1e-3))]
    for n in (int(x) for x in args.layers.split(",")):
        name = f"{'every layer' if n == 0 else f'last {n} layers'}, projector frozen (lr 0)"
        settings.append((name, Recipe(**common, projector_lr=0.0, lora_layers=n)))
    baseline = None
    for name, recipe in settings:
        timer = StepTimes()
        with tempfile.TemporaryDirectory() as out:
            train(args.base, [args.data], args.images, Path(out) / "run", recipe, callbacks=[timer], use_cpu=True)
        median = statistics.median(timer.times[1:])
        baseline = baseline or median
        print(f"{name}: median {median:.2f} s per step of 8 ({len(timer.times) - 1} steps), "
              f"{median / baseline:.2f}x the first", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
