"""DFA-GPT's two stages and its dev evaluation on the LLaVA-1.5-7B architecture (random bf16 weights), one GPU.

    python benchmarks/gpu_dfa_gpt_stages.py            # one GPU: LLaVA-1.5-7B shapes
    python benchmarks/gpu_dfa_gpt_stages.py --tiny     # CPU smoke test of the same code path

1. Stage 1 (`--stage align`): the projector alone, the LM frozen, through `DFATrainer`; its projector is saved
   as mm_projector.safetensors. Step time and peak memory.
2. Stage 2 (finetune, the default recipe: LoRA r128 + projector, bf16, gradient checkpointing) started from
   that projector (`--projector`), with the dev curve callback (`--eval-bench`) scoring a planted-cue dev
   bench of DF-D and DF-C questions at 336 px from first-token logits every --eval-steps steps.

Printed: median step time of each stage, the dev evaluation's time per item, and the training slowdown the
dev evaluation costs at the default interval (Recipe.eval_steps) and dev size, computed as
eval seconds / (interval x median step seconds), beside the slowdown measured over this run's own interval.
The dev prompts are tokenized by a small byte-level BPE (no hub download here), so they are longer than
Vicuna's tokens would make them: the dev cost printed is an upper bound.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

try:  # the installed package; else this checkout
    import dfa_gpt  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_lora_train_speed


def processor_for(config, image_size: int, patch_size: int):
    from transformers import CLIPImageProcessor, LlavaProcessor

    from dfa_bench.chat_templates import VICUNA_CHAT_TEMPLATE
    from dfa_bench.tiny_models import build_tokenizer

    tokenizer = build_tokenizer()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=VICUNA_CHAT_TEMPLATE)  # fmt: skip
    config.image_token_index = tokenizer.convert_tokens_to_ids("<image>")
    return processor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (smoke test)")
    parser.add_argument("--batch-size", type=int, default=None, help="per-device batch (default: recipe's 16)")
    parser.add_argument("--align-steps", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16, help="stage-2 steps")
    parser.add_argument("--eval-steps", type=int, default=8, help="dev evaluation interval in this run")
    parser.add_argument("--dev-per-category", type=int, default=20, help="dev images per category (x2 questions)")
    parser.add_argument("--eval-batch-size", type=int, default=32)
    args = parser.parse_args()

    from gpu_lora_train_speed import StepTimer, SyntheticSet, llava_config
    from transformers import LlavaForConditionalGeneration

    from dfa_gpt.dataset import Collator
    from dfa_gpt.dev_curve import DevCurve
    from dfa_gpt.dev_eval import DevEvaluator, bench_dev_items
    from dfa_gpt.model import prepare_model
    from dfa_gpt.planted import build_planted_set
    from dfa_gpt.projector import PROJECTOR_FILE, load_projector
    from dfa_gpt.recipe import Recipe
    from dfa_gpt.train import DFATrainer, training_arguments

    cuda = torch.cuda.is_available() and not args.tiny
    device = "cuda" if cuda else "cpu"
    batch = args.batch_size or (16 if cuda else 2)
    config = llava_config(args.tiny)
    processor = processor_for(config, config.vision_config.image_size, config.vision_config.patch_size)
    work = Path(tempfile.mkdtemp(prefix="dfa-gpt-stages-"))
    planted = build_planted_set(work / "planted", per_category=1, heldout_per_category=args.dev_per_category,
                                size=config.vision_config.image_size)  # fmt: skip
    dev = DevEvaluator(bench_dev_items(planted["dev"]), processor, batch_size=args.eval_batch_size)
    prompt_tokens = statistics.median(len(ids) for ids in dev.input_ids)

    def fresh_model():
        torch.manual_seed(0)
        with torch.device(device):
            model = LlavaForConditionalGeneration(config).to(torch.bfloat16 if cuda else torch.float32)
        model.config.use_cache = False
        return model

    def run(recipe: Recipe, model, steps: int, output: Path, callbacks: list) -> tuple[list[float], float]:
        timer = StepTimer(cuda)
        trainer = DFATrainer(
            model=model,
            args=training_arguments(
                recipe,
                output,
                per_device_train_batch_size=batch,
                max_steps=steps,
                save_strategy="no",
                logging_steps=steps,
                use_cpu=not cuda,
            ),  # fmt: skip
            train_dataset=SyntheticSet(config, batch * steps),
            data_collator=Collator(0, pad_to_multiple_of=8 if cuda else None),
            callbacks=[timer, *callbacks],
            projector_lr=recipe.projector_lr,
            stage=recipe.stage,
        )
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
        trainer.save_model(str(output))
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        return timer.times, wall, peak

    base = Recipe(bf16=cuda, dataloader_workers=2 if cuda else 0, projector_lr=1e-3)
    align = Recipe(**{**base.to_dict(), "stage": "align", "learning_rate": 1e-3})
    align_times, _, align_peak = run(align, prepare_model(fresh_model(), align), args.align_steps, work / "align", [])
    saved = work / "align" / PROJECTOR_FILE
    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(
        f"device: {name}; batch {batch}; image tokens {(config.vision_config.image_size // config.vision_config.patch_size) ** 2}"
    )
    print(f"stage 1 (align: projector only, LM frozen): {args.align_steps} steps, median step "
          f"{statistics.median(align_times[1:] or align_times):.3f} s, peak memory {align_peak:.1f} GiB; "
          f"projector saved: {saved.stat().st_size / 2**20:.1f} MiB")  # fmt: skip

    import gc

    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    finetune = Recipe(**{**base.to_dict(), "projector": str(work / "align"), "eval_steps": args.eval_steps})
    model = fresh_model()
    load_projector(model, finetune.projector)
    model = prepare_model(model, finetune)
    curve = DevCurve(dev, work / "finetune", eval_steps=args.eval_steps)
    times, wall, peak = run(finetune, model, args.steps, work / "finetune", [curve])
    step = statistics.median(times[1:])
    evals = [p["seconds"] for p in curve.points]
    per_eval = statistics.median(evals[1:] or evals)
    items = len(dev.items) + len(dev.choices)  # DF-D at the decision token; DF-C by five answers each
    default = Recipe().eval_steps
    print(f"stage 2 (finetune from that projector: LoRA r{finetune.lora_rank} + projector): {args.steps} steps, "
          f"median step {step:.3f} s, peak memory {peak:.1f} GiB")  # fmt: skip
    print(f"dev evaluation: {items} items (median prompt {prompt_tokens:.0f} tokens), median {per_eval:.2f} s per "
          f"evaluation = {1000 * per_eval / items:.1f} ms per item; {len(evals)} evaluations: {[round(e, 2) for e in evals]}")  # fmt: skip
    print(
        f"slowdown at this run's interval ({args.eval_steps} steps): {100 * per_eval / (args.eval_steps * step):.1f}%"
    )
    print(
        f"slowdown at the default interval ({default} steps) and this dev size: {100 * per_eval / (default * step):.2f}%"
    )
    for n in (500, 1000):
        print(f"  with {n} dev items: {100 * per_eval * n / items / (default * step):.2f}%")
    print(f"stage-2 wall time {wall:.1f} s over {args.steps} steps (evaluations included)")


if __name__ == "__main__":
    main()
