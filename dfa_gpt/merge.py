"""`dfa-gpt merge`: fold a run's LoRA into its base and save a plain model of the base's class
(`LlavaForConditionalGeneration` for a llava-hf base).

The result loads with `from_pretrained`, lmms-eval's `llava_hf` and `dfa_llava`, with no peft at run time;
`merge_and_unload` also swaps the projector for its trained copy.
"""

from __future__ import annotations

import json
from pathlib import Path

from dfa_gpt.train import RUN_FILE


def read_run(run: Path | str) -> dict:
    path = Path(run) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run} is not a DFA-GPT run directory (no {RUN_FILE})")
    return json.loads(path.read_text(encoding="utf-8"))


def merge(run: Path | str, output: Path | str, *, base: str | None = None, dtype: str = "auto") -> Path:
    """Write the merged model and the run's processor to `output`; returns `output`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from dfa_bench.adapters.pooled_vlm import register as register_pooled_vlm

    run, output = Path(run), Path(output)
    info = read_run(run)
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    register_pooled_vlm()  # DFA-GPT-mini's pooled-token model type, if this is one
    model = AutoModelForImageTextToText.from_pretrained(base or info["base"], dtype=torch_dtype)
    model = PeftModel.from_pretrained(model, str(run)).merge_and_unload()
    model.config.use_cache = True
    model.save_pretrained(output)
    AutoProcessor.from_pretrained(str(run)).save_pretrained(output)
    (output / "dfa_gpt_merged_from.json").write_text(
        json.dumps({"run": str(run.resolve()), "base": base or info["base"]}, indent=2) + "\n", encoding="utf-8"
    )
    return output
