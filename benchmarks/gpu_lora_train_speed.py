"""DFA-GPT training throughput: the LLaVA-1.5-7B architecture with random bf16 weights, the default recipe.

    python benchmarks/gpu_lora_train_speed.py                # one GPU: LLaVA-1.5-7B shapes, batch 16
    python benchmarks/gpu_lora_train_speed.py --tiny         # CPU smoke test of the same code path

Runs `dfa_gpt.train.DFATrainer` (the trainer `dfa-gpt train` uses: LoRA r128 on the LM's linear layers,
the projector trained, gradient checkpointing, bf16, SDPA) on synthetic samples of 576 image tokens plus
100-400 text tokens, and prints tokens/s, samples/s, peak memory and MFU, as medians over the timed steps.

MFU counts 4 * N_LLM FLOPs per LLM token (forward 2N + backward 2N for the activation gradients: the base
weights are frozen, so their weight gradients are never computed) plus 2 * N_vision per image token for
the frozen CLIP tower's forward. It leaves out attention's sequence-quadratic FLOPs, the LoRA and
projector FLOPs (under 2% at rank 128), and the recomputed forward of gradient checkpointing (work done
but not counted, as in the usual definition). Peak: the GPU's dense bf16 figure (H100/H200 SXM: 989 TFLOPS),
or --peak-tflops.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

try:  # the installed package; else this checkout
    import dfa_gpt  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "L40S": 362.0}


def llava_config(tiny: bool):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    if tiny:
        vision = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=48,
            patch_size=2,
            projection_dim=32,
        )  # fmt: skip  (576 patches)
        text = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    else:  # llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14 at 336 px + Vicuna-7B
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)  # fmt: skip
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)  # fmt: skip
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=text.vocab_size - 1,
                       vision_feature_layer=-2, vision_feature_select_strategy="default")  # fmt: skip


class SyntheticSet(torch.utils.data.Dataset):
    """576 image tokens + 100-400 text tokens, the answer (last quarter) labelled."""

    def __init__(self, config, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.image_size = config.vision_config.image_size
        patches = (self.image_size // config.vision_config.patch_size) ** 2
        self.items = []
        for _ in range(n):
            text = int(torch.randint(100, 401, (1,), generator=g))
            ids = torch.randint(3, config.text_config.vocab_size - 2, (1 + patches + text,), generator=g)
            ids[ids == config.image_token_index] = 3  # image tokens only where the image goes
            ids[1 : 1 + patches] = config.image_token_index
            labels = torch.full_like(ids, -100)
            labels[-text // 4 :] = ids[-text // 4 :]
            self.items.append((ids, labels))
        self.lengths = [len(ids) for ids, _ in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        ids, labels = self.items[i]
        return {"input_ids": ids, "labels": labels, "pixel_values": torch.randn(3, self.image_size, self.image_size)}


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (synchronised with the GPU)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.times = cuda, []

    def on_step_begin(self, *a, **k):
        if self.cuda:
            torch.cuda.synchronize()
        self.start = time.perf_counter()

    def on_step_end(self, *a, **k):
        if self.cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (smoke test)")
    parser.add_argument("--batch-size", type=int, default=None, help="per-device batch (default: recipe's 16)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--attn", default="sdpa", help="sdpa | flash_attention_2 | eager")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: by GPU name)")
    args = parser.parse_args()

    from transformers import LlavaForConditionalGeneration

    from dfa_gpt.dataset import Collator
    from dfa_gpt.model import apply_lora
    from dfa_gpt.recipe import Recipe
    from dfa_gpt.train import DFATrainer, training_arguments

    cuda = torch.cuda.is_available() and not args.tiny
    recipe = Recipe(bf16=cuda, dataloader_workers=2 if cuda else 0, attn_implementation=args.attn)
    batch = args.batch_size or (recipe.per_device_batch_size if cuda else 2)
    config = llava_config(args.tiny)
    config.text_config._attn_implementation = config.vision_config._attn_implementation = args.attn
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = LlavaForConditionalGeneration(config).to(torch.bfloat16 if cuda else torch.float32)
    model.config.use_cache = False
    n_llm = sum(p.numel() for p in model.model.language_model.parameters()) + model.lm_head.weight.numel()
    n_vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    model = apply_lora(model, recipe)
    total_steps = args.warmup + args.steps
    dataset = SyntheticSet(config, batch * total_steps)

    timer = StepTimer(cuda)
    trainer = DFATrainer(
        model=model,
        args=training_arguments(
            recipe,
            Path("/tmp/gpu_lora_train_speed"),
            per_device_train_batch_size=batch,
            max_steps=total_steps,
            save_strategy="no",
            logging_steps=total_steps,
            use_cpu=not cuda,
        ),  # fmt: skip
        train_dataset=dataset,
        data_collator=Collator(0, pad_to_multiple_of=8 if cuda else None),
        callbacks=[timer],
        projector_lr=recipe.projector_lr,
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    # the length-grouped sampler's order is not the dataset's: count each step's tokens from its samples
    order = list(trainer._get_train_sampler())
    steps = [order[s * batch : (s + 1) * batch] for s in range(total_steps)]
    timed = list(zip(timer.times[args.warmup :], steps[args.warmup :], strict=True))
    patches = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    tokens = [sum(dataset.lengths[i] for i in idx) / t for t, idx in timed]
    samples = [len(idx) / t for t, idx in timed]
    flops = [
        (4 * n_llm * sum(dataset.lengths[i] for i in idx) + 2 * n_vision * patches * len(idx)) / t for t, idx in timed
    ]
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    print(f"device: {name}; LLM {n_llm / 1e6:,.1f}M + vision {n_vision / 1e6:,.1f}M parameters; batch {batch}; "
          f"{args.steps} timed steps after {args.warmup}; attention {args.attn}")  # fmt: skip
    print(f"step time (median): {statistics.median(t for t, _ in timed):.3f} s")
    print(f"tokens/s (median): {statistics.median(tokens):,.0f}")
    print(f"samples/s (median): {statistics.median(samples):.2f}")
    if cuda:
        print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    achieved = statistics.median(flops) / 1e12
    print(
        f"model TFLOPS (median): {achieved:.3g}" + (f"; MFU {100 * achieved / peak:.1f}% of {peak:.0f}" if peak else "")
    )


if __name__ == "__main__":
    main()
