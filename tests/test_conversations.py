"""FC generation against the local fake OpenAI server: entry shape, reply validation, retries, cache, secrecy."""

from __future__ import annotations

import json

import pytest
from fake_openai import FakeOpenAI

from dfa_bench.instruct.conversations import ConversationGenerator, parse_turns, prompt_for_record

SECRET = "sk-test-SECRET-123"


def _records() -> list[dict]:
    return [
        {"record_id": "r1", "image": "images/train/r1.png", "label": "forgery", "category": "face_swapping",
         "technique": "simswap", "artifact_description": "1. Jawline: a blending seam."},
        {"record_id": "r2", "image": "images/train/r2.png", "label": "bona_fide", "category": "bona_fide",
         "technique": "", "artifact_description": ""},
        {"record_id": "r3", "image": "images/train/r3.png", "label": "forgery", "category": "face_editing",
         "technique": "stargan", "artifact_description": "1. Hairline: smeared strands. BROKEN"},
    ]  # fmt: skip


def fc_reply(body: dict) -> str:
    """Answers with as many turns as the prompt asks for, fenced the way chat models often do; a prompt
    containing BROKEN gets malformed JSON."""
    prompt = body["messages"][0]["content"]
    if "BROKEN" in prompt:
        return '{"turns": [{"question": "Why?", "answer": '
    n = int(prompt.split("with exactly ")[1].split()[0])
    turns = [{"question": f"Question {i}?", "answer": f"Answer {i}."} for i in range(1, n + 1)]
    return "```json\n" + json.dumps({"turns": turns}) + "\n```"


def test_parse_turns_validates_the_reply():
    good = {"turns": [{"question": "Q?", "answer": "A."}] * 2}
    assert parse_turns(json.dumps(good), 2) == [("Q?", "A.")] * 2
    assert parse_turns("Sure:\n```json\n" + json.dumps(good) + "\n```", 2) == [("Q?", "A.")] * 2
    for bad, reason in (
        ("not json", "not valid JSON"),
        (json.dumps(good), "list of 3"),
        (json.dumps({"turns": [{"question": "Q?", "answer": " "}] * 3}), "non-empty"),
        (json.dumps([1, 2, 3]), 'no "turns"'),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_turns(bad, 3)


def test_prompt_is_text_only_from_the_annotations():
    prompt = prompt_for_record(_records()[0], 4)
    assert "Face swapping (FS)" in prompt and "identity of the face was replaced" in prompt
    assert "1. Jawline: a blending seam." in prompt and "forged" in prompt and "simswap" not in prompt
    assert "bona fide" in prompt_for_record(_records()[1], 4)


def test_generate_entries_failures_retries_cache_and_secrecy(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = FakeOpenAI(["429", "slow", "500"], reply=fc_reply)
    try:
        generator = ConversationGenerator(
            tmp_path / "cache", base_url=server.url, timeout=0.5, max_retries=4, concurrency=2, turns=3
        )
        plan = generator.dry_run(_records())
        assert plan["to_send"] == 3 and plan["cached"] == 0 and plan["max_cost_usd"] > 0
        entries, failures = generator.generate(_records())
        # the malformed reply fails its record only
        assert list(failures) == ["r3"] and "not valid JSON" in failures["r3"]
        assert [e["id"] for e in entries] == ["r1:fc", "r2:fc"]
        entry = entries[0]
        assert entry["image"] == "images/train/r1.png"
        assert [turn["from"] for turn in entry["conversations"]] == ["human", "gpt"] * 3
        assert entry["conversations"][0]["value"] == "<image>\nQuestion 1?"
        assert entry["conversations"][1]["value"] == "Answer 1."
        assert sum("<image>" in turn["value"] for e in entries for turn in e["conversations"]) == 2
        assert len(server.calls) >= 3 + 3  # every injected fault was retried
        assert generator.usage["requests"] == 3
        assert all(call["auth"] == f"Bearer {SECRET}" for call in server.calls)
        assert all(call["body"]["response_format"] == {"type": "json_object"} for call in server.calls)
        # cached conversations are not asked again; the malformed one is (it was never cached)
        n_calls = len(server.calls)
        again = ConversationGenerator(tmp_path / "cache", base_url=server.url, turns=3)
        assert again.dry_run(_records())["to_send"] == 1
        assert again.generate(_records()) == (entries, failures)
        assert len(server.calls) == n_calls + 1
        assert again.generate(_records()[:2]) == (entries, {}) and len(server.calls) == n_calls + 1
        for path in (tmp_path / "cache").rglob("*"):
            if path.is_file():
                assert SECRET not in path.read_text()
    finally:
        server.close()


def test_exhausted_retries_and_unknown_categories_fail_per_record(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = FakeOpenAI(["429"] * 3, reply=fc_reply)
    records = _records()[:2] + [_records()[0] | {"record_id": "r4", "category": "morphing"}]
    try:
        generator = ConversationGenerator(tmp_path / "cache", base_url=server.url, max_retries=2, concurrency=1)
        entries, failures = generator.generate(records)
        assert [e["id"] for e in entries] == ["r2:fc"] and len(entries[0]["conversations"]) == 8  # 4 turns
        assert "RateLimitError" in failures["r1"] and SECRET not in failures["r1"]
        assert "KeyError" in failures["r4"]
    finally:
        server.close()


def test_missing_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        ConversationGenerator(tmp_path / "cache", base_url="http://127.0.0.1:9").generate(_records()[:1])
