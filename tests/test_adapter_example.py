"""The complete adapter example in docs/examples works as written, through the shared base class."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from dfa_bench.responses import read_responses
from dfa_bench.tiny_models import build_tiny_llava

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "pipeline_adapter.py"


def test_the_documented_example_adapter_answers_and_caches(tmp_path):
    assert len(EXAMPLE.read_text().splitlines()) < 60  # the docs promise a complete adapter under 60 lines
    spec = importlib.util.spec_from_file_location("pipeline_adapter", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = build_tiny_llava(tmp_path / "tiny")
    adapter = module.PipelineAdapter.create_from_arg_string(
        f"pretrained={model},response_cache={tmp_path / 'r.jsonl'}", {"batch_size": 2, "device": "cpu"}
    )
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(3)]
    docs = [{"question_id": f"q{i}", "task": "dfd", "polarity": "forged"} for i in range(3)]
    adapter.task_dict = {"dfa_bench_dfd": {"test": docs}}
    requests = [
        SimpleNamespace(
            args=(
                "Is this face forged?",
                {"max_new_tokens": 5},
                lambda d: [images[int(d["question_id"][1])]],
                i,
                "dfa_bench_dfd",
                "test",
            )
        )  # fmt: skip
        for i in range(3)
    ]
    answers = adapter.generate_until(requests)
    assert len(answers) == 3 and adapter.failures == []
    assert [r["question_id"] for r in read_responses(tmp_path / "r.jsonl")] == ["q0", "q1", "q2"]


def test_the_vllm_llava_template_renders_dfa_llavas_prompt_after_bos(tmp_path):
    from transformers import AutoProcessor

    from dfa_bench.adapters.base import Query
    from dfa_bench.adapters.llava import DFALlava

    template = (EXAMPLE.parent / "llava-1.5-vllm.jinja").read_text()
    model = build_tiny_llava(tmp_path / "tiny")  # its chat template writes llava-hf's prompt
    tokenizer = AutoProcessor.from_pretrained(model).tokenizer
    question = "Is this face forged? Answer yes or no."
    # as vLLM hands chat messages to a template that loops over the content ("openai" content format)
    for image_part in ({"type": "image"}, {"type": "image_url", "image_url": {"url": "data:"}}):
        messages = [{"role": "user", "content": [image_part, {"type": "text", "text": question}]}]
        rendered = tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                                 tokenize=False)  # fmt: skip
        # transformers' own llava-1.5 processor test asserts this rendering of the checkpoint's template
        assert rendered == f"{tokenizer.bos_token}USER: <image>\n{question} ASSISTANT:"
    adapter = DFALlava(pretrained=str(model), device="cpu", dtype="float32")
    query = Query("q", "dfd", question, [Image.new("RGB", (8, 8))], {}, {})
    assert rendered == tokenizer.bos_token + adapter.render_prompt(query)
    system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]
    assert tokenizer.apply_chat_template(
        system, chat_template=template, add_generation_prompt=True, tokenize=False
    ) == (f"{tokenizer.bos_token}Be brief. USER: {question} ASSISTANT:")
