"""`dfa-gpt train`: transformers' Trainer with peft, the recipe's optimizer groups and a length-grouped sampler.

The run directory is what `dfa_llava` (`lora=RUN`) and `dfa_gpt` (`pretrained=RUN`) load:

    RUN/adapter_config.json, adapter_model.safetensors   the LoRA + the trained projector (peft)
    RUN/processor files                                  the base's processor and chat template
    RUN/dfa_gpt_run.json                                 base, recipe, data counts, loss curve
    RUN/bad_samples.jsonl                                every skipped sample, with its file and index
    RUN/checkpoint-N/                                    adapter + projector, optimizer, scheduler, RNG, state

Everything else (optimizer steps, schedule, checkpoints, resume, DDP/DeepSpeed) is the Trainer's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from loguru import logger
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from dfa_bench.imaging import load_rgb
from dfa_bench.io import write_json
from dfa_gpt.dataset import Collator, TrainingSet
from dfa_gpt.dev_curve import BEST_DIR, DevCurve, TokenLosses
from dfa_gpt.encoding import IGNORE_INDEX
from dfa_gpt.entries import BadSampleReport, balance_dfd, load_entries, read_report
from dfa_gpt.model import PROJECTOR, load_base, prepare_model, trainable_summary
from dfa_gpt.recipe import Recipe

RUN_FILE = "dfa_gpt_run.json"
REPORT_FILE = "bad_samples.jsonl"
TOKEN_LOSS_KEYS = ("loss_decision_tokens", "loss_other_tokens")
CHECKPOINT_FILES = ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")


class RunExistsError(ValueError):
    """The output directory already holds a run, and --resume was not given."""


def complete_checkpoints(output: Path) -> list[Path]:
    """checkpoint-N directories holding everything a resume needs, oldest first (a run killed while saving
    leaves a partial one: the Trainer writes trainer_state.json last)."""
    found = []
    for path in output.glob("checkpoint-*"):
        if not path.name.split("-")[-1].isdigit() or not all((path / f).is_file() for f in CHECKPOINT_FILES):
            continue
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except ValueError:
            continue
        found.append(path)
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


class DFATrainer(Trainer):
    """The Trainer, with the projector's own learning rate, lengths that need no image decoding, and the batch's
    decision tokens (`decision_mask`, the collator's) taken out of the model's inputs for the loss and its log."""

    def __init__(self, *args: Any, projector_lr: float, stage: str = "finetune", decision_weight: float = 1.0,
                 **kwargs: Any) -> None:  # fmt: skip
        self.projector_lr, self.stage = projector_lr, stage
        self.token_losses = TokenLosses()
        self.decision: torch.Tensor | None = None  # the batch's decision tokens, for the loss
        if decision_weight != 1:
            kwargs["compute_loss_func"] = lambda outputs, labels, num_items_in_batch=None: decision_weighted_loss(
                outputs.logits, labels, self.decision, decision_weight, num_items_in_batch
            )
        super().__init__(*args, **kwargs)

    def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False, num_items_in_batch: Any = None):
        labels = inputs.get("labels")  # super() pops them when a compute_loss_func is set
        decision = inputs.pop("decision_mask", None)  # not the model's: the loss's
        if decision is None and labels is not None:
            decision = torch.zeros_like(labels, dtype=torch.bool)
        self.decision = decision
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training and labels is not None and getattr(outputs, "logits", None) is not None:
            self.token_losses.add(outputs.logits, labels, self.decision)
        return (loss, outputs) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """An align run (and each of its checkpoints) saves the projector alone, as mm_projector.safetensors."""
        if self.stage != "align":
            return super()._save(output_dir, state_dict)
        from safetensors.torch import save_file

        from dfa_gpt.projector import PROJECTOR_FILE

        if not self.args.should_save:
            return None
        output = Path(output_dir or self.args.output_dir)
        output.mkdir(parents=True, exist_ok=True)
        state = state_dict if state_dict is not None else self.accelerator.unwrap_model(self.model).state_dict()
        tensors = {
            k.split(f"{PROJECTOR}.")[-1]: v.detach().cpu().contiguous()
            for k, v in state.items()
            if f"{PROJECTOR}." in k
        }
        save_file(tensors, str(output / PROJECTOR_FILE), metadata={"format": "pt", "module": PROJECTOR})
        if self.processing_class is not None:
            self.processing_class.save_pretrained(str(output))
        return None

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:  # the decision token apart from the text after it
            logs.update(self.token_losses.pop())
        super().log(logs, *args, **kwargs)

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(opt_model))
            groups: dict[tuple[float, float], list] = {}
            for name, param in opt_model.named_parameters():
                if not param.requires_grad:
                    continue
                lr = self.projector_lr if PROJECTOR in name else self.args.learning_rate
                weight_decay = self.args.weight_decay if name in decay else 0.0
                groups.setdefault((lr, weight_decay), []).append(param)
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            params = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
            self.optimizer = optimizer_cls(params, **optimizer_kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and hasattr(dataset, "lengths"):
            generator = torch.Generator().manual_seed(self.args.data_seed or self.args.seed)
            # grouped by the global batch (as LLaVA does): every process count then sees the same order,
            # and accelerate deals consecutive per-device batches of it to the ranks
            global_batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            return LengthGroupedSampler(
                global_batch,
                lengths=dataset.lengths,
                generator=generator,
            )
        return super()._get_train_sampler(train_dataset)


class _LossLog(TrainerCallback):
    """Prints one line per logged step (the Trainer's own progress bar hides the numbers)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and logs and "loss" in logs:
            parts = "".join(
                f", {k.removeprefix('loss_').replace('_', ' ')} {logs[k]:.4f}" for k in TOKEN_LOSS_KEYS if k in logs
            )
            logger.info(f"step {state.global_step}/{state.max_steps}: loss {logs['loss']:.4f}{parts}")


def decision_weighted_loss(logits: torch.Tensor, labels: torch.Tensor, decision: torch.Tensor, weight: float,
                           num_items_in_batch: Any = None) -> torch.Tensor:  # fmt: skip
    """The causal-LM loss with the decision tokens (`decision`, [batch, length] bool aligned with `labels`:
    where a DF-D / DF-C answer parts from the other reference answers) weighted `weight` times the other answer
    tokens. With weight 1 it equals the model's own loss, normalised the same way (by the answer tokens of the
    whole accumulated, all-process batch)."""
    logits = logits[:, :-1]
    labels = labels.to(logits.device)
    targets = labels[:, 1:]
    answer = targets != IGNORE_INDEX
    chosen = decision.to(logits.device)[:, 1:][answer]
    ce = torch.nn.functional.cross_entropy(logits[answer].float(), targets[answer], reduction="none")
    weights = torch.where(chosen, torch.full_like(ce, weight), torch.ones_like(ce))
    count = answer.sum()
    # the weighted mean of this micro-batch, at this micro-batch's share of the batch's answer tokens
    total = (weights * ce).sum() / weights.sum().clamp(min=1e-12) * count
    return total / (num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1))


def training_arguments(recipe: Recipe, output: Path, **overrides: Any) -> TrainingArguments:
    kwargs: dict[str, Any] = dict(
        output_dir=str(output),
        per_device_train_batch_size=recipe.per_device_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        warmup_steps=recipe.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type=recipe.lr_scheduler,
        optim="adamw_torch",
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps,
        bf16=recipe.bf16,
        activation_checkpointing=recipe.gradient_checkpointing,
        # non-reentrant checkpointing passes gradients to LoRA weights behind frozen embeddings
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=recipe.logging_steps,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=recipe.save_total_limit,
        seed=recipe.seed,
        data_seed=recipe.seed,
        dataloader_num_workers=recipe.dataloader_workers,
        remove_unused_columns=False,
        label_names=["labels"],
        train_sampling_strategy="group_by_length" if recipe.group_by_length else "random",
        report_to="none",
        ddp_find_unused_parameters=False,
        deepspeed=recipe.deepspeed,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def load_processor(base: str) -> Any:
    from transformers import AutoProcessor

    from dfa_bench.chat_templates import VICUNA_CHAT_TEMPLATE
    from dfa_bench.contract import local_path_or_hub_id

    local_path_or_hub_id(base, arg="--base", adapter="dfa-gpt")  # a missing local path, not a hub lookup
    processor = AutoProcessor.from_pretrained(base)
    if not getattr(processor, "chat_template", None) and not getattr(processor.tokenizer, "chat_template", None):
        # the template dfa_llava falls back to at inference: train on the prompts it will see
        processor.chat_template = VICUNA_CHAT_TEMPLATE
    return processor


def prepare_projector(model: Any, recipe: Recipe, dataset: TrainingSet, *, max_images: int = 256) -> dict:
    """The projector's start (recipe.projector, then recipe.projector_init); what was done, for the run file."""
    from dfa_gpt.projector import load_projector, projector_inputs, standardize_projector

    done: dict[str, Any] = {"init": recipe.projector_init, "loaded": recipe.projector}
    if recipe.projector:
        load_projector(model, recipe.projector)
    if recipe.projector_init == "standardize":
        images = list(dict.fromkeys(e.image for e in dataset.entries))[:max_images]
        processor = dataset.processor.image_processor

        def decoded():  # a corrupt image is left out here; the training set reports it with its file and index
            for path in images:
                try:
                    yield load_rgb(path)
                except (OSError, ValueError):
                    continue

        def batches():
            chunk = []
            for image in decoded():
                chunk.append(image)
                if len(chunk) == 16:
                    yield processor(images=chunk, return_tensors="pt")["pixel_values"]
                    chunk = []
            if chunk:
                yield processor(images=chunk, return_tensors="pt")["pixel_values"]

        done.update(standardize_projector(model, projector_inputs(model, batches())), images=len(images))
        logger.info(f"dfa-gpt: projector standardised on {len(images)} training images: {done}")
    return done


def keep_best_adapter(output: Path) -> None:
    """The best dev point's adapter becomes the run's (RUN/best -> RUN); the last one moves to RUN/last."""
    import shutil

    best, last = output / BEST_DIR, output / "last"
    last.mkdir(exist_ok=True)
    for path in best.iterdir():
        if (output / path.name).is_file():
            shutil.copy2(output / path.name, last / path.name)
        shutil.copy2(path, output / path.name)


def base_reference(base: str) -> str:
    """A local base as an absolute path (the run is loaded from elsewhere); a hub id as it is."""
    path = Path(base).expanduser()
    return str(path.resolve()) if path.exists() else base


def train(
    base: str,
    data: list[Path],
    images: Path,
    output: Path,
    recipe: Recipe,
    *,
    resume: bool = False,
    eval_bench: Path | None = None,
    callbacks: list[TrainerCallback] | None = None,
    **argument_overrides: Any,
) -> dict:
    """Train one DFA-GPT run into `output`; returns the run summary written to RUN/dfa_gpt_run.json."""
    from transformers import set_seed

    output = Path(output)
    if resume and recipe.stage == "align":
        raise ValueError("--resume continues finetune runs; an align run is short: start it again")
    checkpoints = complete_checkpoints(output) if output.exists() else []
    if not resume and (checkpoints or (output / RUN_FILE).exists()):
        raise RunExistsError(f"{output} already holds a run: pass --resume to continue it, or another --output")
    resume_from = str(checkpoints[-1]) if resume and checkpoints else None
    report_path = output / REPORT_FILE
    if not resume_from and report_path.exists():
        report_path.unlink()
    report = BadSampleReport(report_path)

    entries, counts = load_entries(list(data), Path(images), abilities=recipe.abilities, report=report)
    if recipe.balance_dfd:
        entries, balance = balance_dfd(entries)
        counts["dfd_balance"] = balance
    processor = load_processor(base)
    dataset = TrainingSet(
        entries, processor, max_length=recipe.model_max_length, report=report, mismatch_limit=recipe.mismatch_limit
    )
    dev = None
    if eval_bench is not None:  # read before the base loads: a bad dev bench fails in seconds
        from dfa_gpt.dev_eval import DevEvaluator, bench_dev_items

        # an align run (LM frozen: no LoRA to answer letters with) is scored on held-out captions
        items = bench_dev_items(eval_bench, limit=recipe.eval_limit, captions=recipe.stage == "align")
        items = [i for i in items if (i.task == "caption") == (recipe.stage == "align")]
        dev = DevEvaluator(items, processor, batch_size=recipe.eval_batch_size)
    elif recipe.keep_best:
        raise ValueError("--keep-best needs --eval-bench")
    set_seed(recipe.seed)  # the LoRA's initial weights
    model = load_base(base, recipe)
    projector = prepare_projector(model, recipe, dataset) if not resume_from else None
    model = prepare_model(model, recipe)
    for config in getattr(model, "peft_config", {}).values():
        # PEFT's own record of the base, as the run records it: what a run's identity follows to its base
        config.base_model_name_or_path = base_reference(base)
    summary = trainable_summary(model)
    logger.info(
        f"dfa-gpt: {len(dataset)} samples ({counts}); {summary['trainable_parameters']:,} of "
        f"{summary['total_parameters']:,} parameters trainable; " + (f"resuming {resume_from}" if resume_from else "")
    )
    args = training_arguments(recipe, output, **argument_overrides)
    trainer: DFATrainer
    curve = None
    if dev is not None:
        curve = DevCurve(dev, output, eval_steps=recipe.eval_steps, keep_best=recipe.keep_best,
                         save=lambda path: trainer.save_model(str(path)))  # fmt: skip
    trainer = DFATrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=Collator(
            processor.tokenizer.pad_token_id, pad_to_multiple_of=8 if torch.cuda.is_available() else None
        ),
        processing_class=processor,
        callbacks=[_LossLog(), *([curve] if curve else []), *(callbacks or [])],
        projector_lr=recipe.projector_lr,
        stage=recipe.stage,
        decision_weight=recipe.decision_weight,
    )
    result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model(str(output))  # adapter + projector (modules_to_save) + processor, on the main process
    dev_summary = curve.summary() if curve else None
    if curve and curve.best and curve.best["step"] != trainer.state.global_step and trainer.is_world_process_zero():
        keep_best_adapter(output)
    if dev_summary and dev_summary["at_chance"]:
        logger.warning(
            f"dfa-gpt: the dev {' and '.join(dev_summary['at_chance'])} stayed at chance (95% interval holds it): "
            f"this model may not read the image; see {output / 'dev_curve.png'}"
        )
    run = {
        "base": base_reference(base),
        "recipe": recipe.to_dict(),
        "data": {"files": [str(Path(f).resolve()) for f in data], "images": str(Path(images).resolve())},
        "samples": {
            "trained": len(dataset),
            "by_ability": {k: v for k, v in counts.items() if k not in ("skipped", "filtered")},
            "filtered_by_preset": counts["filtered"],
            "truncated": dataset.truncated,
            "tokenization_mismatch": dataset.mismatched,
            "bad": len(read_report(report_path)),
        },
        "parameters": summary,
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "loss_curve": [
            {"step": row["step"], "loss": row["loss"]} for row in trainer.state.log_history if "loss" in row
        ],
        "resumed_from": resume_from,
        "projector": projector,
        "dev": dev_summary,
    }
    if trainer.is_world_process_zero():
        write_json(output / RUN_FILE, run)
    return run
