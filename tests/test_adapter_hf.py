"""`dfa_hf` on a tiny random LLaVA loaded through AutoModelForImageTextToText (offline, CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dfa_bench.adapters.base import AdapterConfigError, Query
from dfa_bench.adapters.hf import DFAHF, answer_token_ids, truncate_at_stops
from dfa_bench.tiny_models import build_tiny_llava

GREEDY = {"max_new_tokens": 12, "temperature": 0, "do_sample": False, "num_beams": 1}
PROMPTS = [
    "Is this face forged? Answer yes or no.",
    "Is this face authentic?",
    "Describe the artifacts in this face image region by region.",
    "Which forgery? A. Face swapping (FS). B. Face reenactment (FR). C. Face editing (FE). D. Entire face synthesis.",
    "Yes",
    "Look carefully at the eyes, the mouth and the jawline. Is this face real or fake? Answer yes or no.",
    "Hi",
    "Face swapping or face editing?",
    "No. This face image is a bona fide, unmanipulated face. Is it?",
]


def make_queries(task: str = "dfd", prompts: list[str] = PROMPTS, seed: int = 0, **gen) -> list[Query]:
    """One query per prompt, each with its own random image of a different size."""
    rng = np.random.default_rng(seed)
    queries = []
    for i, prompt in enumerate(prompts):
        image = Image.fromarray(rng.integers(0, 256, (24 + 9 * i, 70 - 5 * i, 3), dtype=np.uint8))
        doc = {"question_id": f"q{i}:{task}", "task": task, "polarity": ("forged", "authentic")[i % 2]}
        queries.append(Query(doc["question_id"], task, prompt, [image], doc, {**GREEDY, **gen}))
    return queries


def answer_in_batches(adapter, queries: list[Query], batch_size: int) -> list:
    return [a for s in range(0, len(queries), batch_size) for a in adapter.answer(queries[s : s + batch_size])]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava-hf"))


@pytest.fixture(scope="module")
def adapter(checkpoint):
    return DFAHF.create_from_arg_string(f"pretrained={checkpoint},dtype=float32,device=cpu", {"batch_size": 3})


def test_loads_through_auto_class_and_answers(adapter):
    from transformers import LlavaForConditionalGeneration

    assert isinstance(adapter.model, LlavaForConditionalGeneration)
    assert adapter.batch_size == 3 and adapter.model.dtype == torch.float32 and adapter.tokenizer.padding_side == "left"
    assert adapter.fingerprint == {"adapter": "dfa_hf", "pretrained": adapter.pretrained, "dtype": "float32",
                                   "max_new_tokens": None, "system_prompt": None, "dfd_probability": True,
                                   "dfd_decision": "yes_no"}  # fmt: skip
    answers = adapter.answer(make_queries("dfc")[:3])
    assert len(answers) == 3
    for answer in answers:
        assert isinstance(answer.response, str) and answer.response == answer.response.strip()
        assert answer.score is None and answer.error is None  # DF-C: no probability
        assert 0 < answer.usage["output_tokens"] <= GREEDY["max_new_tokens"]
    # the image expands to (30/6)^2 + 1 = 26 tokens in the prompt, so input counts exceed the text alone
    assert all(a.usage["input_tokens"] > 26 for a in answers)


def test_batched_greedy_answers_equal_batch_size_one(adapter):
    queries = make_queries()
    by_size = {size: answer_in_batches(adapter, queries, size) for size in (1, 3, 8)}
    reference = [a.response for a in by_size[1]]
    assert len(set(reference)) > 1, "the tiny model should not answer everything alike"
    for size in (3, 8):
        assert [a.response for a in by_size[size]] == reference, size
        assert [a.usage for a in by_size[size]] == [a.usage for a in by_size[1]], size
        assert [a.score for a in by_size[size]] == pytest.approx([a.score for a in by_size[1]], abs=1e-5)


def test_dfd_score_is_the_yes_share_of_the_first_token(adapter):
    """P(yes) / (P(yes) + P(no)) over the first-token distribution of a plain forward pass."""
    (query,) = make_queries(prompts=[PROMPTS[0]])
    query.doc["polarity"] = "forged"
    (answer,) = adapter.answer([query])
    batch = adapter.prepare_batch([query])
    with torch.inference_mode():
        probs = adapter.model(**batch).logits[0, -1].softmax(-1)
    p_yes, p_no = probs[adapter.yes_ids].sum(), probs[adapter.no_ids].sum()
    assert answer.score == pytest.approx(float(p_yes / (p_yes + p_no)), abs=1e-5)


def test_reference_answer_reading_is_the_decision_token_where_the_reference_answers_part(checkpoint):
    """dfd_decision=reference_answer (DFA-GPT's): P(forgery) is read after the reference answers' shared words
    ("This face image is"), from a forward of that prefix alone; batching changes nothing."""
    from dfa_bench.adapters.first_token import parting_point
    from dfa_bench.templates import dfd_answer

    adapter = DFAHF.create_from_arg_string(
        f"pretrained={checkpoint},dtype=float32,device=cpu,dfd_decision=reference_answer", {"batch_size": 3}
    )
    assert adapter.fingerprint["dfd_decision"] == "reference_answer"
    queries = make_queries(prompts=PROMPTS[:3])
    for query, polarity in zip(queries, ("forged", "authentic", "forged")):
        query.doc["polarity"] = polarity
    batched = [a.score for a in adapter.answer(queries)]
    assert all(0 < s < 1 for s in batched) and len(set(batched)) > 1
    for query, score in zip(queries, batched):
        messages = adapter.build_messages(query)
        texts = [adapter.processor.apply_chat_template(
            [*messages, {"role": "assistant", "content": [{"type": "text", "text": dfd_answer(query.doc["polarity"], label)}]}],
            tokenize=False) for label in ("forgery", "bona_fide")]  # fmt: skip
        encoded = [adapter.processor(text=[t], images=[list(query.images)], return_tensors="pt") for t in texts]
        common, (forged, bona) = parting_point([e["input_ids"][0].tolist() for e in encoded])
        assert adapter.tokenizer.decode(encoded[0]["input_ids"][0][:common]).endswith("This face image is")
        with torch.inference_mode():
            logits = adapter.model(input_ids=encoded[0]["input_ids"][:, :common],
                                   pixel_values=encoded[0]["pixel_values"]).logits[0, -1]  # fmt: skip
        assert score == pytest.approx(float(torch.sigmoid(logits[forged] - logits[bona])), abs=1e-5)
    with pytest.raises(AdapterConfigError, match="dfd_decision"):
        DFAHF.create_from_arg_string(f"pretrained={checkpoint},dtype=float32,device=cpu,dfd_decision=first", {})


def test_yes_no_ids_drop_a_shared_space_piece(adapter):
    yes, no = answer_token_ids(adapter.tokenizer)
    assert yes and no and not set(yes) & set(no)
    # the BPE splits " Yes" into ["Ġ", "Yes"]: the bare space piece is no evidence either way
    space = adapter.tokenizer.convert_tokens_to_ids("Ġ")
    assert adapter.tokenizer.encode(" Yes", add_special_tokens=False)[0] == space and space not in yes + no
    assert adapter.tokenizer.convert_tokens_to_ids("Yes") in yes and adapter.tokenizer.convert_tokens_to_ids("no") in no


def test_until_truncates_the_answer(adapter):
    queries = make_queries(prompts=PROMPTS[:2])
    full = [a.response for a in adapter.answer(queries)]
    stop = full[0][3:5]
    assert stop and len(full[0]) > 5
    cut = adapter.answer(make_queries(prompts=PROMPTS[:2], until=[stop, "never-in-output"]))
    assert cut[0].response == full[0][: full[0].index(stop)].strip()
    assert cut[1].response == truncate_at_stops(full[1], [stop]).strip()
    assert truncate_at_stops("abc</s>def", ["</s>", "c"]) == "ab"


def test_max_new_tokens_override_and_system_prompt(checkpoint):
    adapter = DFAHF.create_from_arg_string(
        f"pretrained={checkpoint},dtype=float32,device_map=cpu,device=cpu,max_new_tokens=3,"
        "system_prompt=You are a forensic expert.,dfd_probability=false"
    )
    (query,) = make_queries(prompts=["Is this face forged?"])
    # the Vicuna template knows no system turn, so the system prompt leads the user text
    assert adapter.render_prompt(query) == "USER: <image>\nYou are a forensic expert.\nIs this face forged? ASSISTANT:"
    (answer,) = adapter.answer([query])
    assert answer.score is None and answer.usage["output_tokens"] <= 3
    assert adapter.fingerprint["max_new_tokens"] == 3 and adapter.fingerprint["system_prompt"]


def test_bad_model_args_are_rejected(checkpoint):
    with pytest.raises(ValueError, match="unknown model_args"):
        DFAHF.create_from_arg_string(f"pretrained={checkpoint},device=cpu,temperature=0.5")
    with pytest.raises(ValueError, match="dtype"):
        DFAHF.create_from_arg_string(f"pretrained={checkpoint},device=cpu,dtype=fp8")
    with pytest.raises(ValueError, match="pretrained"):
        DFAHF.create_from_arg_string("device=cpu")


def test_device_map_is_refused_when_several_processes_share_the_gpus(checkpoint, monkeypatch):
    import accelerate

    monkeypatch.setattr(accelerate, "Accelerator", lambda cpu: None)  # no process group in a unit test
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(AdapterConfigError, match=r"device_map=auto .* 2 processes, each .* drop device_map"):
        DFAHF.create_from_arg_string(f"pretrained={checkpoint},device_map=auto")


def test_a_missing_local_path_is_named(tmp_path):
    with pytest.raises(AdapterConfigError, match=r"pretrained=/missing/path: no such file or directory"):
        DFAHF.create_from_arg_string("pretrained=/missing/path,device=cpu", {})
    with pytest.raises(AdapterConfigError, match="no such file or directory"):
        DFAHF.create_from_arg_string(f"pretrained={tmp_path / 'nope'},device=cpu", {})


def test_a_checkpoint_without_a_chat_template_stops_the_run_at_start(checkpoint, tmp_path):
    """PaliGemma-style checkpoints ship no chat template: every item would fail, one by one."""
    bare = tmp_path / "bare"
    shutil.copytree(checkpoint, bare)
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(AdapterConfigError, match=r"ships no chat template.*pass chat_template=PATH"):
        DFAHF.create_from_arg_string(f"pretrained={bare},device=cpu,dtype=float32", {})
    template = tmp_path / "template.jinja"
    template.write_text((Path(checkpoint) / "chat_template.jinja").read_text())
    adapter = DFAHF.create_from_arg_string(f"pretrained={bare},device=cpu,dtype=float32,chat_template={template}", {})
    assert adapter.fingerprint["chat_template"] == template.read_text()
    assert len(adapter.answer(make_queries("dfd")[:1])) == 1


def test_a_text_only_checkpoint_is_refused_before_its_weights_load(checkpoint, tmp_path):
    from transformers import LlamaConfig

    text_only = tmp_path / "text-only"
    text_only.mkdir()
    LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        text_only
    )
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(Path(checkpoint) / name, text_only / name)
    with pytest.raises(AdapterConfigError, match=r"has no image processor .*image-text-to-text checkpoint"):
        DFAHF.create_from_arg_string(f"pretrained={text_only},device=cpu", {})  # no weights: never reached
    # a tokenizer that does not name a multimodal processor class: AutoProcessor gives the bare tokenizer
    config = json.loads((text_only / "tokenizer_config.json").read_text())
    config.pop("processor_class", None)
    (text_only / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterConfigError, match=r"has no image processor \(.*Tokenizer"):
        DFAHF.create_from_arg_string(f"pretrained={text_only},device=cpu", {})
