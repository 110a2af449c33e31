"""A complete DFA-Bench adapter: any checkpoint that transformers' image-text-to-text pipeline can run.

Register it from your own package's pyproject.toml (lmms-eval finds models through this entry point):

    [project.entry-points."lmms_eval.models"]
    my_models = "my_package.adapters:manifests"

    # my_package/adapters.py
    def manifests():
        from lmms_eval.models.registry_v2 import ModelManifest
        return [ModelManifest(model_id="my_pipeline", simple_class_path="my_package.pipeline_adapter.PipelineAdapter")]

then run `dfa-bench eval --model my_pipeline --model-args pretrained=PATH --bench BENCH --output OUT`.
"""

from __future__ import annotations

from dfa_bench.adapters.base import Answer, DFAAdapter, Query


class PipelineAdapter(DFAAdapter):
    name = "my_pipeline"

    def __init__(self, pretrained: str, device: str | None = None, **kwargs) -> None:
        # batch_size, response_cache and unknown-argument checks are the base class's job
        super().__init__(device=device, **kwargs)
        from transformers import pipeline

        # device_name: `device`, or this process's own GPU (cuda:<local rank>) under accelerate launch
        self.pipe = pipeline("image-text-to-text", model=pretrained, device=self.device_name)
        # what identifies this model's answers in the response cache (never put secrets here)
        self.fingerprint = {"adapter": self.name, "pretrained": pretrained}

    def answer(self, queries: list[Query]) -> list[Answer]:
        # one batch; the base class caches each answer, and turns an exception into per-item errors
        messages = [
            [{"role": "user", "content": [{"type": "image", "image": q.images[0]}, {"type": "text", "text": q.prompt}]}]
            for q in queries
        ]
        max_new_tokens = max(q.gen_kwargs.get("max_new_tokens", 64) for q in queries)
        outputs = self.pipe(
            text=messages,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            return_full_text=False,
            batch_size=len(queries),
        )
        return [Answer(out[0]["generated_text"].strip()) for out in outputs]
