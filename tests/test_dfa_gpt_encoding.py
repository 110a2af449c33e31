"""Label masking and tokenization-mismatch checks, token by token, on the tiny LLaVA's processor."""

from __future__ import annotations

import json

import pytest
from dfa_gpt_fixtures import make_training_data
from transformers import AutoProcessor

from dfa_bench.chat_templates import VICUNA_CHAT_TEMPLATE
from dfa_bench.tiny_models import build_tiny_llava
from dfa_gpt.dataset import Collator, MismatchLimitExceeded, TrainingSet
from dfa_gpt.encoding import IGNORE_INDEX, TokenizationMismatch, encode, image_token_count
from dfa_gpt.entries import BadSampleReport, load_entries


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    return AutoProcessor.from_pretrained(build_tiny_llava(tmp_path_factory.mktemp("tiny-llava")))


def fc_messages() -> list[dict]:
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is this face real or fake?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes. This face image is forged."}]},
        {"role": "user", "content": [{"type": "text", "text": "Where are the artifacts?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Cheeks and jawline: warping."}]},
    ]
    return messages


def runs(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) index runs of labelled positions."""
    out, start = [], None
    for i, label in enumerate([*labels, IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            out.append((start, i))
            start = None
    return out


def test_loss_falls_on_the_assistant_tokens_only_in_a_multi_turn_conversation(processor):
    tokenizer = processor.tokenizer
    n_image = image_token_count(processor)
    assert n_image == 25  # (30 / 6)^2 patches; the CLS feature is dropped ("default" strategy)
    encoded = encode(processor, fc_messages(), image_tokens=n_image, max_length=2048)
    ids, labels = encoded.input_ids, encoded.labels
    assert len(ids) == len(labels) and not encoded.truncated
    # every labelled position carries its own token id; every other one is -100
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(ids, labels, strict=True))
    spans = runs(labels)
    assert [tokenizer.decode(ids[a:b]) for a, b in spans] == [
        " Yes. This face image is forged.</s>",
        " Cheeks and jawline: warping.</s>",
    ]
    image_id = processor.image_token_id
    assert sum(t == image_id for t in ids) == n_image
    assert all(labels[i] == IGNORE_INDEX for i, t in enumerate(ids) if t == image_id)
    # what comes before each answer (user turns, role markers) is masked and decodes to the prompt
    assert tokenizer.decode(ids[: spans[0][0]]).endswith("Is this face real or fake? ASSISTANT:")
    assert tokenizer.decode(ids[spans[0][1] : spans[1][0]]) == "USER: Where are the artifacts? ASSISTANT:"
    assert spans[1][1] == len(ids)


def test_collator_pads_dynamically_and_masks_padding(processor, tmp_path):
    data, images = make_training_data(tmp_path, 2)
    report = BadSampleReport(tmp_path / "bad.jsonl")
    entries, _ = load_entries([data], images, abilities=None, report=report)
    dataset = TrainingSet(entries, processor, max_length=2048, report=report)
    samples = [dataset[i] for i in range(len(dataset))]
    batch = Collator(processor.tokenizer.pad_token_id)(samples)
    lengths = [len(s["input_ids"]) for s in samples]
    assert batch["input_ids"].shape == (len(samples), max(lengths)) and max(lengths) < 2048
    assert min(lengths) < max(lengths)
    for row, sample in enumerate(samples):
        n = len(sample["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == sample["input_ids"].tolist()
        assert batch["labels"][row, :n].tolist() == sample["labels"].tolist()
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (max(lengths) - n)
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][row, n:] == processor.tokenizer.pad_token_id).all()
    assert batch["pixel_values"].shape == (len(samples), 3, 30, 30)
    assert Collator(0, pad_to_multiple_of=8)(samples)["input_ids"].shape[1] % 8 == 0
    assert dataset.lengths == lengths


def test_truncation_keeps_the_image_and_a_labelled_token(processor):
    n_image = image_token_count(processor)
    full = encode(processor, fc_messages(), image_tokens=n_image, max_length=2048)
    cut = encode(processor, fc_messages(), image_tokens=n_image, max_length=len(full) - 3)
    assert cut.truncated and cut.input_ids == full.input_ids[: len(full) - 3]
    with pytest.raises(ValueError, match="before the image ends"):
        encode(processor, fc_messages(), image_tokens=n_image, max_length=10)


# A template whose generation prompt ("ASSISTANT:") is not what it renders before an answer ("GPT:"):
# LLaVA's classic mismatch, which would put the labels in the wrong place.
BROKEN_TEMPLATE = VICUNA_CHAT_TEMPLATE.replace("{% else %}ASSISTANT: {% if", "{% else %}GPT: {% if")


def test_a_template_mismatch_is_detected(processor):
    broken = AutoProcessor.from_pretrained(processor.tokenizer.name_or_path)
    broken.chat_template = BROKEN_TEMPLATE
    with pytest.raises(TokenizationMismatch, match="prefix"):
        encode(broken, fc_messages(), image_tokens=image_token_count(broken), max_length=2048)


def test_mismatches_over_the_limit_stop_training_and_are_named(processor, tmp_path):
    data, images = make_training_data(tmp_path, 4)
    broken = AutoProcessor.from_pretrained(processor.tokenizer.name_or_path)
    # only the multi-turn FC conversations render the broken second turn
    broken.chat_template = VICUNA_CHAT_TEMPLATE.replace(
        "{% else %}ASSISTANT: {% if", "{% else %}{% if loop.index > 2 %}GPT: {% else %}ASSISTANT: {% endif %}{% if"
    )
    report = BadSampleReport(tmp_path / "bad.jsonl")
    entries, _ = load_entries([data], images, abilities=None, report=report)
    with pytest.raises(MismatchLimitExceeded, match=r"4 of 16 samples \(25.0%\).*rec0:fc"):
        TrainingSet(entries, broken, max_length=2048, report=report)
    # under the limit: skipped, counted, reported with their ids
    dataset = TrainingSet(entries, broken, max_length=2048, report=report, mismatch_limit=0.3)
    assert len(dataset) == 12 and sorted(dataset.mismatched) == [f"rec{i}:fc" for i in range(4)]
    assert "tokenization mismatch" in (tmp_path / "bad.jsonl").read_text()


def test_decision_tokens_are_where_a_reference_answer_parts_from_the_others(processor, tmp_path):
    from dfa_bench.templates import dfc_answer, dfd_answer

    _, images = make_training_data(tmp_path, 1)
    answers = [("dfd", dfd_answer(p, label)) for p in ("forged", "authentic") for label in ("forgery", "bona_fide")]
    answers += [("dfc", dfc_answer(c)) for c in ("face_swapping", "face_editing", "entire_face_synthesis")] + [
        ("ad", "Blurred jawline."),
        ("ad", "None."),
    ]
    rows = [{"id": f"r{i}:{ability}", "image": "face_0.png", "conversations": [
        {"from": "human", "value": "<image>\\nWhat about this face?"}, {"from": "gpt", "value": answer}]}
        for i, (ability, answer) in enumerate(answers)]  # fmt: skip
    data = tmp_path / "decisions.json"
    data.write_text(json.dumps(rows))
    report = BadSampleReport(None)
    entries, _ = load_entries([data], images, abilities=None, report=report)
    dataset = TrainingSet(entries, processor, max_length=2048, report=report)
    decode = processor.tokenizer.decode

    def decided(i: int) -> list[str]:
        return [decode([dataset.encoded[i].input_ids[p]]).strip() for p in dataset.decisions[i]]

    # DF-D: the verdict ("forged" / "a" of "a bona fide") and the yes/no the question's polarity makes of it
    # (the tiny tokenizer splits words: "forged" is "for" + "ged")
    assert len(decided(0)) == 2 and "forged".startswith(decided(0)[0]) and decided(0)[1] == "yes"
    assert decided(1)[0] == "a" and decided(1)[-1] == "no"
    assert decided(2) == [decided(0)[0], "no"]
    # DF-C: the name's tokens that tell it from the other names ("Face" parts from "Entire", then the kind)
    assert len(decided(4)) == 2 and "Face".startswith(decided(4)[0]) and "Entire".startswith(decided(6)[0])
    assert dataset.decisions[7] == dataset.decisions[8] == ()  # AD: free text, no decision tokens
    # the decision tokens are labelled answer tokens, and the collator carries them, padded with False
    for i, positions in enumerate(dataset.decisions):
        assert all(dataset.encoded[i].labels[p] != IGNORE_INDEX for p in positions)
    batch = Collator(processor.tokenizer.pad_token_id)([dataset[0], dataset[7]])
    assert batch["decision_mask"][0].nonzero().flatten().tolist() == list(dataset.decisions[0])
    assert not batch["decision_mask"][1].any()
