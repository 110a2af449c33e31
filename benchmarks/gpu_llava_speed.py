"""DF-D items/s of `dfa_llava` (batched) against lmms-eval's built-in `llava_hf` (batch size 1) on LLaVA-1.5-7B.

    python benchmarks/gpu_llava_speed.py [--items 64] [--batch-sizes 1,8,16,32,64] [--repeats 2] [--device cuda]
    python benchmarks/gpu_llava_speed.py --tiny        # the same script on CPU with a tiny LLaVA (a smoke test)

Nothing is downloaded. The script builds the LLaVA-1.5-7B architecture (CLIP ViT-L/14-336 vision tower,
Llama-2-7B language model: hidden 4096, 32 layers, 32 heads, MLP 11008, vocabulary 32064, image token
32000, pad 32001, as llava-hf/llava-1.5-7b-hf) with random bf16 weights directly on the GPU, a byte-level
BPE tokenizer trained in-process and padded to LLaVA's ids, and saves both with `save_pretrained`. Both
engines then load that directory through their own `from_pretrained` code.

The DF-D items come from a synthetic bench (`make_source` + `build_bench`, --items records). The requests
are the ones lmms-eval itself builds: the script loads the `dfa_bench_dfd` task through lmms-eval's
TaskManager and `build_all_requests`, so prompts and generation settings (max_new_tokens 32, greedy,
and the `until: ["\\n\\n"]` lmms-eval adds) are exactly those of a real run. Each engine's
`generate_until` is then called directly on fresh copies of those Instances, which times the model
work alone: not model loading, task building or scoring, which `dfa-bench eval` would add equally to
both. Each configuration gets one untimed warm-up call, then --repeats timed calls over all items;
the table shows the median items/s (and the range). dfa_llava runs through its whole `generate_until`
path, response cache included (a fresh cache key per call, so nothing is served from the cache).

Answer identity compares the stripped responses (lmms-eval strips them before scoring) of each
configuration with llava_hf's, item by item. A random model's next-token distribution is nearly flat,
so in bf16 a different batch shape can tip a near tie; trained models have larger margins. Random
weights rarely emit end-of-sequence, so nearly every item decodes all 32 tokens, while a trained
LLaVA answers "Yes."/"No." in a few: absolute items/s here are a lower bound for both engines.

Time: the two batch-size-1 runs dominate (about a second per item each for a 7B model with HF generate,
times 1 + --repeats calls); with the defaults, expect roughly 6-8 minutes on one H100 plus about 14 GB
of disk for the checkpoint (an estimate, not a measurement). A reused --workdir skips the build.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASK = "dfa_bench_dfd"
# LLaVA-1.5 (llava-hf) ids: the Llama-2 vocabulary is 32000 pieces, then <image> and <pad>; the
# embedding matrix is padded to 32064 rows.
SIZES = {
    "full": {
        "base_vocab": 32000, "vocab": 32064,
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                   "num_attention_heads": 16, "image_size": 336, "patch_size": 14, "projection_dim": 768},
        "text": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096},
    },
    "tiny": {
        "base_vocab": 1000, "vocab": 1064,
        "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                   "image_size": 30, "patch_size": 6, "projection_dim": 32},
        "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "num_key_value_heads": 2, "max_position_embeddings": 1024},
    },
}  # fmt: skip
CORPUS = [
    "Would you say this face has been tampered with? Answer yes or no.",
    "Is this face image authentic? Is it forged? Answer yes or no.",
    "Yes. This face image is forged. No. This face image is a bona fide, unmanipulated face.",
    "USER: ASSISTANT: Describe the artifacts of the eyes, mouth, cheeks, jawline and forehead.",
]


def build_tokenizer(base_vocab: int):
    """A byte-level BPE trained on a few sentences, padded with filler pieces to `base_vocab` entries,
    then <image> and <pad> right after them (ids 32000 and 32001 at full size, as in LLaVA-1.5)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from dfa_bench.chat_templates import VICUNA_CHAT_TEMPLATE

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(base_vocab, 600),
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    for i in range(base_vocab - len(vocab)):  # unreachable by merges: they only fill the id space
        vocab[f"filler{i}"] = len(vocab)
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    tokenizer.add_special_tokens(["<image>", "<pad>"])
    assert tokenizer.token_to_id("<image>") == base_vocab and tokenizer.token_to_id("<pad>") == base_vocab + 1
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"}, chat_template=VICUNA_CHAT_TEMPLATE,
    )  # fmt: skip


def llava_config(size: str, tokenizer):
    """LLaVA-1.5's configuration at `size` ("full": the 7B of llava-hf/llava-1.5-7b-hf)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    spec = SIZES[size]
    vision = CLIPVisionConfig(**spec["vision"], hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = LlamaConfig(
        vocab_size=spec["vocab"], rms_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **spec["text"],
    )  # fmt: skip
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
        image_seq_length=(spec["vision"]["image_size"] // spec["vision"]["patch_size"]) ** 2,
    )  # fmt: skip


def build_checkpoint(output: Path, size: str, device: str, dtype_name: str, seed: int = 0) -> Path:
    """Random LLaVA-1.5 weights, created on `device` in `dtype`, saved with their processor."""
    import torch
    from transformers import CLIPImageProcessor, LlavaForConditionalGeneration, LlavaProcessor

    from dfa_bench.chat_templates import VICUNA_CHAT_TEMPLATE

    spec = SIZES[size]
    image = spec["vision"]["image_size"]
    tokenizer = build_tokenizer(spec["base_vocab"])
    config = llava_config(size, tokenizer)
    torch.manual_seed(seed)
    with torch.device(device):  # built in place: a 7B model never exists in float32 or in CPU memory
        model = LlavaForConditionalGeneration._from_config(config, dtype=getattr(torch, dtype_name)).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image}, crop_size={"height": image, "width": image}, resample=3
        ),
        tokenizer=tokenizer, patch_size=spec["vision"]["patch_size"], vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=VICUNA_CHAT_TEMPLATE,
    )  # fmt: skip
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(output)
    processor.save_pretrained(output)
    del model
    free_memory()
    print(
        f"built a random LLaVA-1.5 ({size}, {parameters / 1e9:.2f}B parameters, {dtype_name}) in {output}", flush=True
    )
    return output


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_requests(bench_dir: Path, n_items: int) -> tuple[list, dict]:
    """(lmms-eval Instances for the first `n_items` DF-D questions, the task_dict a model reads docs from)."""
    import os

    from lmms_eval.tasks import TaskManager, get_task_dict

    from dfa_bench.evaluate import tasks_path
    from dfa_bench.lmms_task import BENCH_ENV

    os.environ[BENCH_ENV] = str(bench_dir)
    task = get_task_dict([TASK], TaskManager("WARNING", include_path=str(tasks_path())))[TASK]
    task.build_all_requests(limit=n_items, rank=0, world_size=1)
    requests = list(task.instances)
    assert len(requests) == n_items, f"{len(requests)} requests for {n_items} items"
    return requests, {TASK: task.dataset}


def fresh(requests: list) -> list:
    """New Instances with their own generation_kwargs: llava_hf edits them in place (pops `until`)."""
    from lmms_eval.api.instance import Instance

    return [
        Instance(request_type=r.request_type, arguments=(r.args[0], copy.deepcopy(r.args[1]), *r.args[2:]),
                 idx=r.idx, metadata={"task": r.task_name, "doc_id": r.doc_id, "repeats": r.repeats})
        for r in requests
    ]  # fmt: skip


def timed_runs(model, requests: list, repeats: int, before_call) -> tuple[list[float], list[str]]:
    """(items/s of each timed call, the stripped answers of the first), after one untimed warm-up."""
    import torch

    def call(batch: list) -> list[str]:
        before_call()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return model.generate_until(fresh(batch))

    call(requests[: max(1, getattr(model, "batch_size", 1))])  # kernels, allocator and caches warm up
    rates, answers = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = call(requests)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rates.append(len(requests) / (time.perf_counter() - start))
        answers = answers or [a.strip() for a in out]
    return rates, answers


def run_dfa_llava(checkpoint: Path, args, requests: list, task_dict: dict, cache: Path) -> dict[int, tuple]:
    from dfa_bench.adapters.llava import DFALlava

    model = DFALlava(pretrained=str(checkpoint), dtype=args.dtype, device=args.device, response_cache=str(cache))
    model.task_dict = task_dict
    calls = iter(range(10**9))
    run_id = time.time_ns()  # a reused --workdir keeps its cache file: earlier runs' keys must not match

    def new_key() -> None:
        # a fresh fingerprint field per call: every answer is computed, none comes from the cache
        model.fingerprint["benchmark_call"] = f"{run_id}-{next(calls)}"

    results = {}
    for batch_size in args.batch_sizes:
        model.batch_size = batch_size
        print(f"dfa_llava, batch size {batch_size} ...", flush=True)
        results[batch_size] = timed_runs(model, requests, args.repeats, new_key)
        failed = [row["error"] for row in model.failures]
        assert not failed, f"dfa_llava failed on {len(failed)} items: {failed[:3]}"
        free_memory()
    return results  # the model goes with this frame; the caller frees its memory before loading llava_hf


def run_llava_hf(checkpoint: Path, args, requests: list, task_dict: dict) -> tuple:
    from lmms_eval.models.simple.llava_hf import LlavaHf

    model = LlavaHf(pretrained=str(checkpoint), dtype=args.dtype, device=args.device, device_map=args.device)
    model.task_dict = task_dict
    print("llava_hf, batch size 1 ...", flush=True)
    result = timed_runs(model, requests, args.repeats, lambda: None)
    del model
    free_memory()
    return result


def same_share(answers: list[str], reference: list[str]) -> float:
    return sum(a == b for a, b in zip(answers, reference)) / len(reference)


def report(dfa: dict[int, tuple], hf: tuple) -> list[dict]:
    hf_rate = statistics.median(hf[0])
    reference_bs = min(dfa)
    rows = [{"engine": "llava_hf", "batch": 1, "items_per_s": hf_rate, "min": min(hf[0]), "max": max(hf[0]),
             "speedup": 1.0, "same_as_llava_hf": 1.0, "same_as_dfa_bs1": same_share(hf[1], dfa[reference_bs][1])}]  # fmt: skip
    for batch_size, (rates, answers) in sorted(dfa.items()):
        rate = statistics.median(rates)
        rows.append({"engine": "dfa_llava", "batch": batch_size, "items_per_s": rate, "min": min(rates),
                     "max": max(rates), "speedup": rate / hf_rate, "same_as_llava_hf": same_share(answers, hf[1]),
                     "same_as_dfa_bs1": same_share(answers, dfa[reference_bs][1])})  # fmt: skip
    return rows


def print_table(rows: list[dict], args) -> None:
    from tabulate import tabulate

    table = [[r["engine"], r["batch"], f"{r['items_per_s']:.2f}", f"{r['min']:.2f}-{r['max']:.2f}",
              f"{r['speedup']:.1f}x", f"{r['same_as_llava_hf']:.0%}", f"{r['same_as_dfa_bs1']:.0%}"] for r in rows]  # fmt: skip
    reference = f"same as dfa_llava bs {min(args.batch_sizes)}"
    headers = ["engine", "batch", "items/s (median)", "range", "vs llava_hf", "same as llava_hf", reference]
    print(f"\nDF-D, {args.items} items, {args.repeats} timed runs each, {args.size} LLaVA-1.5, {args.dtype}, "
          f"{args.device_label}")  # fmt: skip
    print(tabulate(table, headers=headers, tablefmt="github"))


def describe_answers(answers: list[str]) -> str:
    """A guard against a vacuous identity check: all-empty or all-equal answers would match trivially."""
    return (f"llava_hf answers: {len(set(answers))} distinct of {len(answers)}, {answers.count('')} empty; "
            f"first: {answers[0][:60]!r}")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random LLaVA on CPU: checks the script runs")
    parser.add_argument("--device", help="cuda (default), cuda:N or cpu; cpu with --tiny")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], help="bfloat16, float32 with --tiny")
    parser.add_argument("--items", type=int, help="DF-D items (default 64, 12 with --tiny)")
    parser.add_argument("--batch-sizes", help="dfa_llava batch sizes (default 1,8,16,32,64; 1,4,8 with --tiny)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per configuration (median reported)")
    parser.add_argument("--workdir", type=Path, help="where the checkpoint and bench go (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    args.size = "tiny" if args.tiny else "full"
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    args.dtype = args.dtype or ("float32" if args.tiny else "bfloat16")
    args.items = args.items or (12 if args.tiny else 64)
    args.batch_sizes = sorted(
        {int(b) for b in (args.batch_sizes or ("1,4,8" if args.tiny else "1,8,16,32,64")).split(",")}
    )
    if args.items < max(args.batch_sizes):
        parser.error(f"--items {args.items} cannot fill a batch of {max(args.batch_sizes)}")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    import torch
    from loguru import logger

    from dfa_bench.bench import build_bench
    from dfa_bench.instruct.synthetic import make_source

    logger.remove()  # per-call info lines from lmms-eval and the adapter would bury the table
    logger.add(sys.stderr, level="WARNING")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: run on a GPU machine, or pass --tiny (CPU)")
    args.device_label = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    with tempfile.TemporaryDirectory(prefix="gpu_llava_speed-") as temp:
        workdir = args.workdir or Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        make_source(workdir / "source", args.items, seed=0)
        build_bench(workdir / "source" / "records.jsonl", workdir / "source", workdir / "bench", seed=0)
        checkpoint = workdir / f"llava-1.5-{args.size}-{args.dtype}-random"
        if (checkpoint / "config.json").exists():  # same seed, same weights: a reused --workdir skips the build
            print(f"reusing {checkpoint}", flush=True)
        else:
            build_checkpoint(checkpoint, args.size, args.device, args.dtype)
        requests, task_dict = build_requests(workdir / "bench", args.items)
        dfa = run_dfa_llava(checkpoint, args, requests, task_dict, workdir / "responses.jsonl")
        free_memory()
        hf = run_llava_hf(checkpoint, args, requests, task_dict)
    rows = report(dfa, hf)
    print_table(rows, args)
    best = max(rows[1:], key=lambda r: r["items_per_s"])
    print(f"best dfa_llava batch size: {best['batch']} ({best['items_per_s']:.2f} items/s, "
          f"{best['speedup']:.1f}x llava_hf at batch size 1)")  # fmt: skip
    print(describe_answers(hf[1]))
    if args.json:
        args.json.write_text(json.dumps({"items": args.items, "size": args.size, "dtype": args.dtype,
                                         "device": args.device_label, "rows": rows}, indent=1))  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
