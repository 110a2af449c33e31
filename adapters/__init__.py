"""Model adapters for lmms-eval, installed as dfa_bench.adapters.

lmms-eval finds them through the `lmms_eval.models` entry point, which names `manifests` below; each
adapter is one module here, imported only when lmms-eval resolves its name.
"""

from __future__ import annotations

ADAPTERS = {  # lmms-eval model name -> class path
    "dfa_llava": "dfa_bench.adapters.llava.DFALlava",
    "dfa_internvl": "dfa_bench.adapters.internvl.DFAInternVL",
    "dfa_openai": "dfa_bench.adapters.openai_chat.DFAOpenAI",
    "dfa_hf": "dfa_bench.adapters.hf.DFAHF",
    "dfa_probe": "dfa_bench.adapters.probe.DFAProbe",
    "dfa_gpt": "dfa_bench.adapters.dfa_gpt.DFAGPT",
}


def manifests() -> list:
    """The entry point's payload: one lmms-eval ModelManifest per adapter."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=name, simple_class_path=path) for name, path in ADAPTERS.items()]
