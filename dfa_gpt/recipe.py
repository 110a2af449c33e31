"""DFA-GPT's training recipe: the paper's settings, and LLaVA-1.5's `finetune_lora.sh` where it says nothing.

One dataclass holds every default, so `dfa-gpt train --help`, the run's `dfa_gpt_run.json` and the
Trainer arguments all read the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

# The paper's ablation (Table II): which abilities' QA pairs a run trains on. An entry's ability is the
# suffix of its id (`<record>:dfd`, as `dfa-bench data build` writes) or its "task" field; entries of
# any other kind (a user's own LLaVA data) are kept only by the full preset.
ANNOTATION_PRESETS: dict[str, tuple[str, ...]] = {
    "D": ("dfd",),
    "D+C": ("dfd", "dfc"),
    "D+C+AD": ("dfd", "dfc", "ad"),
    "D+C+AD+FC": ("dfd", "dfc", "ad", "fc"),
}
FULL_PRESET = "D+C+AD+FC"

# The language model's linear layers that carry LoRA (LLaVA-1.5 LoRA, Llama/Vicuna names).
LM_LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PROJECTOR = "multi_modal_projector"
PROJECTOR_INITS = ("base", "standardize")
STAGES = ("finetune", "align")


@dataclass
class Recipe:
    """Every training setting of a DFA-GPT run (defaults: the paper + LLaVA-1.5 `finetune_lora.sh`)."""

    # peft LoRA on the language model's linear layers only
    lora_rank: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    lora_modules: tuple[str, ...] = LM_LINEAR_LAYERS
    lora_layers: int = 0  # >0: LoRA in the LM's last N decoder layers only (a cheaper backward); 0: all
    # the multimodal projector is trained in full, with its own learning rate
    projector_lr: float = 2e-5
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    epochs: float = 1.0
    max_steps: int = -1  # >0 overrides epochs
    per_device_batch_size: int = 16
    gradient_accumulation: int = 1
    bf16: bool = True
    gradient_checkpointing: bool = True
    model_max_length: int = 2048
    group_by_length: bool = True
    annotations: str = FULL_PRESET
    seed: int = 42
    logging_steps: int = 1
    save_steps: int = 500
    save_total_limit: int | None = None
    dataloader_workers: int = 4
    attn_implementation: str = "sdpa"
    mismatch_limit: float = 0.01  # stop when more than this fraction of samples is masked by a tokenization mismatch
    deepspeed: str | None = None  # a DeepSpeed JSON config (configs/zero2.json, zero3.json)
    # the projector's start: "base" (as the base has it: LLaVA-1.5's stage-1 projector) or "standardize" (folded
    # standardisation of the training images' features, scaled to the LM's embeddings: for a random projector)
    projector_init: str = "base"
    projector: str | None = None  # a stage-1 projector (an align run or mm_projector.safetensors), loaded first
    # the loss weight of the decision tokens (dataset.decision_positions), against 1 for the other answer tokens
    decision_weight: float = 1.0
    balance_dfd: bool = False  # repeat the bona fide DF-D conversations until DF-D is balanced (entries.balance_dfd)
    # "finetune": LoRA + projector (LLaVA's stage 2); "align": the projector alone, LM frozen (stage 1)
    stage: str = "finetune"
    # dev evaluation (`--eval-bench`): every eval_steps steps and at each epoch's end, from logits. At these
    # defaults it costs about 3.4% of a LLaVA-1.5-7B run's time on one H200 (docs/dfa_gpt.md, "Dev curve")
    eval_steps: int = 200
    eval_limit: int | None = 250  # a seeded sample of N DF-D and N DF-C dev items (None: all)
    eval_batch_size: int = 16
    keep_best: str | None = None  # a dev metric (dfc_acc, dfd_auc, ...): its best point's adapter is kept

    def __post_init__(self) -> None:
        if self.annotations not in ANNOTATION_PRESETS:
            raise ValueError(
                f"unknown annotations preset {self.annotations!r}: choose one of {', '.join(ANNOTATION_PRESETS)}"
            )
        unknown = set(self.lora_modules) - set(LM_LINEAR_LAYERS)
        if unknown:
            raise ValueError(f"LoRA goes on the language model's linear layers only ({', '.join(LM_LINEAR_LAYERS)})")
        for name in ("lora_rank", "per_device_batch_size", "gradient_accumulation", "model_max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.projector_init not in PROJECTOR_INITS:
            raise ValueError(f"projector_init must be one of {', '.join(PROJECTOR_INITS)}, got {self.projector_init!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.lora_layers < 0:
            raise ValueError("lora_layers must be 0 (all) or a positive number of layers")
        if self.projector_lr < 0:
            raise ValueError("projector_lr must not be negative")
        if self.decision_weight <= 0:
            raise ValueError("decision_weight must be positive")
        if not 0 <= self.mismatch_limit <= 1:
            raise ValueError("mismatch_limit is a fraction in [0, 1]")
        self.lora_modules = tuple(self.lora_modules)

    @property
    def abilities(self) -> tuple[str, ...]:
        return ANNOTATION_PRESETS[self.annotations]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["lora_modules"] = list(self.lora_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
