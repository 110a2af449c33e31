"""`dfa_llava` on a tiny random LLaVA (offline, CPU): batching, DF-D scores, LoRA, lmms-eval end to end."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_adapter_hf import answer_in_batches, make_queries

from dfa_bench.adapters.base import Query
from dfa_bench.adapters.llava import DFALlava
from dfa_bench.chat_templates import VICUNA_CHAT_TEMPLATE
from dfa_bench.tiny_models import build_tiny_llava

ARGS = "dtype=float32,device=cpu"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="module")
def adapter(checkpoint):
    return DFALlava.create_from_arg_string(f"pretrained={checkpoint},{ARGS}", {"batch_size": 3})


@pytest.fixture(scope="module")
def lora_dir(checkpoint, tmp_path_factory):
    """A LoRA on q/v projections, randomly initialised so it changes answers, plus a retrained projector
    saved through modules_to_save, as DFA-GPT's checkpoints carry it."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(1)
    base = LlavaForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                        modules_to_save=["multi_modal_projector"])  # fmt: skip
    model = get_peft_model(base, config)
    projector = model.base_model.model.model.multi_modal_projector.modules_to_save["default"]
    with torch.no_grad():
        for parameter in projector.parameters():
            parameter.add_(torch.randn_like(parameter))
    out = tmp_path_factory.mktemp("lora")
    model.save_pretrained(out)
    return out


def _responses(answers: list) -> list[str]:
    return [a.response for a in answers]


def test_batched_greedy_answers_equal_batch_size_one(adapter):
    queries = make_queries()
    by_size = {size: answer_in_batches(adapter, queries, size) for size in (1, 3, 8)}
    reference = _responses(by_size[1])
    assert len(set(reference)) == len(reference), "distinct answers make the comparison meaningful"
    for size in (3, 8):
        assert _responses(by_size[size]) == reference, size
        assert [a.usage for a in by_size[size]] == [a.usage for a in by_size[1]], size


def test_dfd_score_flips_with_polarity(adapter):
    forged, authentic = make_queries(prompts=[make_queries()[0].prompt] * 2)
    authentic.images = forged.images  # same image and prompt; only the question's polarity differs
    forged.doc["polarity"], authentic.doc["polarity"] = "forged", "authentic"
    together = adapter.answer([forged, authentic])
    alone = adapter.answer([forged]) + adapter.answer([authentic])
    for a, b in (together, alone):
        assert 0.0 <= a.score <= 1.0 and 0.0 <= b.score <= 1.0
        assert a.score == pytest.approx(1.0 - b.score, abs=1e-6)
        assert a.response == b.response
    assert together[0].score == pytest.approx(alone[0].score, abs=1e-6)
    # only DF-D items get a probability
    (dfc,) = adapter.answer(make_queries("dfc", prompts=[forged.prompt]))
    assert dfc.score is None


def _peft_direct(checkpoint, lora_dir, adapter, queries: list[Query]) -> list[str]:
    """The reference: peft's own PeftModel over the base model, generating greedily one query at a time."""
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    base = LlavaForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, lora_dir).eval()
    out = []
    for query in queries:
        batch = adapter.prepare_batch([query])
        with torch.inference_mode():
            ids = model.generate(**batch, max_new_tokens=12, do_sample=False)
        out.append(adapter.tokenizer.decode(ids[0, batch["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    return out


def test_lora_matches_peft_and_changes_the_base(checkpoint, lora_dir, adapter):
    queries = make_queries()[:5]
    merged = DFALlava.create_from_arg_string(f"pretrained={checkpoint},{ARGS},lora={lora_dir}", {"batch_size": 5})
    unmerged = DFALlava.create_from_arg_string(f"pretrained={checkpoint},{ARGS},lora={lora_dir},merge_lora=false")
    reference = _peft_direct(checkpoint, lora_dir, adapter, queries)
    assert _responses(merged.answer(queries)) == reference
    assert _responses(answer_in_batches(unmerged, queries, 1)) == reference
    assert merged.fingerprint["lora"] == str(lora_dir) and merged.fingerprint != adapter.fingerprint

    # the LoRA (and its projector) changed the model: different answers, and different first-token logits
    assert _responses(adapter.answer(queries)) != reference
    batch = adapter.prepare_batch(queries[:1])
    with torch.inference_mode():
        base_logits = adapter.model(**batch).logits[0, -1]
        lora_logits = merged.model(**batch).logits[0, -1]
    assert not torch.allclose(base_logits, lora_logits, atol=1e-4)

    # the projector came from the LoRA directory (modules_to_save), not from the base checkpoint
    from safetensors.torch import load_file

    saved = load_file(str(lora_dir / "adapter_model.safetensors"))
    (key,) = [k for k in saved if "multi_modal_projector" in k and k.endswith("linear_1.weight")]
    assert torch.equal(merged.model.model.multi_modal_projector.linear_1.weight, saved[key])
    assert not torch.equal(adapter.model.model.multi_modal_projector.linear_1.weight, saved[key])


def test_lora_with_foreign_module_names_is_refused(checkpoint, lora_dir, tmp_path):
    """An adapter whose keys name no module of this model must not silently evaluate the base model."""
    from safetensors.torch import load_file, save_file

    foreign = tmp_path / "foreign-lora"
    shutil.copytree(lora_dir, foreign)
    weights = load_file(str(foreign / "adapter_model.safetensors"))
    renamed = {k.replace("language_model.layers", "layers"): v for k, v in weights.items()}  # original-LLaVA style
    save_file(renamed, str(foreign / "adapter_model.safetensors"))
    with pytest.raises(ValueError, match="does not fit this model"):
        DFALlava.create_from_arg_string(f"pretrained={checkpoint},{ARGS},lora={foreign}")


def test_checkpoint_without_chat_template_gets_the_vicuna_template(checkpoint, adapter, tmp_path):
    bare = tmp_path / "no-template"
    shutil.copytree(checkpoint, bare)
    (bare / "chat_template.jinja").unlink()
    from transformers import AutoProcessor

    assert AutoProcessor.from_pretrained(bare).chat_template is None  # really no template left
    plain = DFALlava.create_from_arg_string(f"pretrained={bare},{ARGS}")
    assert plain.processor.chat_template == VICUNA_CHAT_TEMPLATE
    queries = make_queries()[:3]
    assert [plain.render_prompt(q) for q in queries] == [adapter.render_prompt(q) for q in queries]
    assert plain.render_prompt(queries[0]) == f"USER: <image>\n{queries[0].prompt} ASSISTANT:"


@pytest.mark.slow
def test_run_eval_end_to_end(checkpoint, tmp_path, monkeypatch):
    from dfa_bench.bench import build_bench
    from dfa_bench.evaluate import run_eval
    from dfa_bench.instruct.synthetic import make_source
    from dfa_bench.lmms_task import BENCH_ENV

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv(BENCH_ENV, "")  # run_eval sets it; monkeypatch puts the old value back after
    make_source(tmp_path / "src", 10, seed=2)
    build_bench(tmp_path / "src" / "records.jsonl", tmp_path / "src", tmp_path / "bench", seed=0)
    output = tmp_path / "out"
    weights = tmp_path / "checkpoint"  # a copy: its weights are replaced below
    shutil.copytree(checkpoint, weights)

    # max_new_tokens caps AD's 512: a random model never stops on its own
    def run():
        return run_eval(model="dfa_llava", bench_dir=tmp_path / "bench", output=output,
                        model_args=f"pretrained={weights},device=cpu,dtype=float32,max_new_tokens=16", limit=4, batch_size=3)  # fmt: skip

    outputs = run()
    first_sha = json.loads((output / "run.json").read_text())["model_identity"]["pretrained"]["weights_sha256"]
    for task in ("dfd", "dfc", "ad"):
        assert outputs.metrics[task]["n"] == 4, task
    assert 0.0 <= outputs.metrics["dfd"]["acc"] <= 1.0 and 0.0 <= outputs.metrics["ad"]["rouge_l"] <= 1.0
    assert "--model dfa_llava" in outputs.command

    responses = [json.loads(line) for line in (output / "responses.jsonl").read_text().splitlines()]
    assert len(responses) == 12 and not any(r["error"] for r in responses)
    assert all(r["usage"]["input_tokens"] > 0 for r in responses)
    dfd = [r for r in responses if r["task"] == "dfd"]
    assert len(dfd) == 4 and all(0.0 <= r["score"] <= 1.0 for r in dfd)
    predictions = [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]
    assert {p["question_id"]: p["score"] for p in predictions if p["question_id"].endswith(":dfd")} == {
        r["question_id"]: r["score"] for r in dfd
    }

    # a re-run is answered from the response cache: same predictions, nothing new appended
    again = run()
    assert again.metrics == outputs.metrics
    assert len((output / "responses.jsonl").read_text().splitlines()) == 12

    # new weights at the same path are asked again, not served from the cache
    from safetensors.torch import load_file, save_file

    state = load_file(str(checkpoint / "model.safetensors"))
    torch.manual_seed(1)
    save_file({k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()},
              str(weights / "model.safetensors"), metadata={"format": "pt"})  # fmt: skip
    run()
    assert len((output / "responses.jsonl").read_text().splitlines()) == 24  # all 12 asked of the new weights
    sha = json.loads((output / "run.json").read_text())["model_identity"]["pretrained"]["weights_sha256"]
    assert sha != first_sha
