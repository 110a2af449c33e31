"""`dfa_gpt`: a DFA-GPT run directory, as `dfa-gpt train` writes it, evaluated with its own base.

    dfa-bench eval --model dfa_gpt --model-args pretrained=runs/dfa-gpt ...

The base checkpoint is read from the run (`dfa_gpt_run.json`), the LoRA and the trained projector from
its peft adapter, and the processor (chat template included) from the run, so the prompts are those it
was trained on. A merged model (`dfa-gpt merge`) is a plain LLaVA checkpoint: evaluate it with `dfa_llava`.

model_args: those of `dfa_llava` (dfd_decision defaults to reference_answer: P(forgery) is read where the
bench's two reference answers part, the token training taught), with pretrained=RUN (the base comes from the run; `base=` overrides
it, e.g. when the run was trained on another machine's copy of the base).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfa_bench.adapters.llava import DFALlava
from dfa_bench.contract import AdapterConfigError


def run_base(run: Path) -> str:
    """The base checkpoint recorded in a DFA-GPT run directory."""
    import json

    info_path = run / "dfa_gpt_run.json"
    if not info_path.is_file():
        raise AdapterConfigError(f"dfa_gpt: {run} is not a DFA-GPT run directory (no dfa_gpt_run.json)")
    return str(json.loads(info_path.read_text(encoding="utf-8"))["base"])


class DFAGPT(DFALlava):
    """DFA-GPT from its run directory: base + LoRA + projector."""

    name = "dfa_gpt"
    default_dfd_decision = "reference_answer"  # trained on DFA-Instruct: its DF-D answers lead with the verdict

    def __init__(self, pretrained: str | None = None, base: str | None = None, **kwargs: Any) -> None:
        if not pretrained:
            raise AdapterConfigError("dfa_gpt: model_args must name pretrained=<DFA-GPT run directory>")
        self.run_dir = Path(str(pretrained)).expanduser().resolve()
        if not self.run_dir.is_dir():
            raise AdapterConfigError(f"dfa_gpt: no such run directory: {pretrained}")
        super().__init__(pretrained=str(base) if base else run_base(self.run_dir), lora=str(self.run_dir), **kwargs)

    def load_processor(self, auto_class: Any, **kwargs: Any) -> Any:
        # the run's processor: the chat template and tokenizer it was trained with
        return auto_class.from_pretrained(str(self.run_dir), **kwargs)
