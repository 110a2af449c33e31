"""The adapter contract: what a model is asked (`Query`) and what it answers (`Answer`), the error that stops
a whole run, and the helpers every adapter's model_args share.

It imports neither torch nor lmms-eval: the trainer, the CLIs and the leaderboard use it without loading
either. The lmms-eval glue that serves an adapter (`DFAAdapter`: batching, the response cache, retries)
lives in `dfa_bench.adapters.base`, which re-exports these names for adapter authors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfa_bench.lmms_task import doc_to_text, task_generation_kwargs


@dataclass
class Query:
    question_id: str
    task: str  # "dfd", "dfc" or "ad" (or the lmms-eval task name for foreign tasks)
    prompt: str  # the text lmms-eval built with doc_to_text (no <image> token: adapters place the image)
    images: list  # PIL images
    doc: dict  # the question item: polarity (dfd), options (dfc), ...
    gen_kwargs: dict

    @classmethod
    def for_item(cls, item: dict, images: list) -> Query:
        """A bench question item asked outside lmms-eval (audits, the interactive demo) as lmms-eval asks it:
        the same prompt and the task YAML's generation settings."""
        return cls(item["question_id"], item["task"], doc_to_text(item), images, item,
                   task_generation_kwargs(item["task"]))  # fmt: skip


@dataclass
class Answer:
    response: str
    score: float | None = None  # DF-D only: probability that the face is forged
    usage: dict[str, int] = field(default_factory=dict)  # {"input_tokens", "output_tokens"} where known
    error: str | None = None


class AdapterConfigError(RuntimeError):
    """A fault of the whole run (wrong key, unknown model): stops it instead of failing every item."""


def is_dfa_adapter(model_class: Any) -> bool:
    """Whether an lmms-eval model class is served by DFA-Bench's adapter base (ours or a third party's):
    decided by the class (`DFAAdapter` sets the marker), not by its registered name."""
    return isinstance(model_class, type) and getattr(model_class, "dfa_bench_adapter", False) is True


def local_path_or_hub_id(value: str, *, arg: str, adapter: str) -> str:
    """`value` unchanged; AdapterConfigError when it is meant as a local path (absolute, ./, ../, ~, or
    more than one /) and nothing is there. transformers would report it as a malformed hub repo id."""
    path = Path(value).expanduser()
    meant_local = value.startswith(("/", "~", ".")) or value.count("/") > 1
    if meant_local and not path.exists():
        raise AdapterConfigError(f"{adapter}: {arg}={value}: no such file or directory (a hub id looks like org/name)")
    return value


def as_bool(value: Any) -> bool:
    """A model_args flag: lmms-eval passes True/False for `True`/`False`, strings otherwise."""
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
