"""`dfa-gpt chat` and the analysis engine on a tiny random LLaVA (saved, reloaded, offline)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dfa_bench.adapters.base import Query
from dfa_bench.lmms_task import task_generation_kwargs
from dfa_bench.parsing import parse
from dfa_bench.templates import dfc_question, dfd_question
from dfa_bench.tiny_models import build_tiny_llava
from dfa_gpt.chat import ChatSession
from dfa_gpt.cli import app
from dfa_gpt.interactive import (
    ANALYSIS_SEED,
    Analyst,
    Conversation,
    load_adapter,
    load_image,
)

ARGS = "device=cpu,dtype=float32"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("chat") / "tiny-llava")


@pytest.fixture(scope="module")
def analyst(model):
    return Analyst(load_adapter(str(model), device="cpu", dtype="float32"))


def face(path, seed: int = 0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_generation_settings_are_the_task_yamls():
    assert task_generation_kwargs("dfd")["max_new_tokens"] == 32
    assert task_generation_kwargs("dfc")["max_new_tokens"] == 64
    assert task_generation_kwargs("ad")["max_new_tokens"] == 512
    assert all(task_generation_kwargs(t)["do_sample"] is False for t in ("dfd", "dfc", "ad"))


def test_analyse_asks_the_bench_questions_and_reads_them_with_the_bench_parsers(analyst, tmp_path):
    conversation = Conversation(load_image(face(tmp_path / "a.png")))
    findings = analyst.analyse(conversation)
    assert [f.task for f in findings] == ["dfd", "dfc", "ad"]
    record_id = f"analyse-{conversation.digest}"
    dfd, dfc = dfd_question(record_id, ANALYSIS_SEED), dfc_question(record_id, ANALYSIS_SEED)
    assert findings[0].question == dfd["question"] and findings[1].question == dfc["question"]
    assert findings[0].verdict == parse({"task": "dfd", **dfd}, findings[0].response)
    assert findings[1].verdict == parse({"task": "dfc", **dfc}, findings[1].response)
    assert 0.0 <= findings[0].probability <= 1.0 and findings[1].probability is None
    assert findings[2].verdict is None and all(f.error is None for f in findings)
    # the same question through the bench's path (the adapter's answer) gives the same answer
    query = Query("x:dfd", "dfd", dfd["question"], [conversation.image], {"task": "dfd", **dfd}, {"max_new_tokens": 32})
    assert analyst.adapter.answer([query])[0].response == findings[0].response


def test_a_streamed_reply_is_the_greedy_answer_and_joins_the_conversation(analyst, tmp_path):
    conversation = Conversation(load_image(face(tmp_path / "a.png", seed=1)))
    pieces = list(analyst.stream(conversation, "Is this face real or fake?", max_new_tokens=12))
    query = Query("x", "chat", "Is this face real or fake?", [conversation.image], {}, {"max_new_tokens": 12})
    assert "".join(pieces).strip() == analyst.adapter.answer([query])[0].response
    assert len(pieces) > 1  # streamed, not returned at once
    list(analyst.stream(conversation, "Where are the artifacts?", max_new_tokens=4))
    assert [t["role"] for t in conversation.turns] == ["user", "assistant", "user", "assistant"]
    messages = analyst.messages(conversation, "And the mouth?")
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    images = [i for m in messages for i in m["content"] if i["type"] == "image"]
    assert len(images) == 1 and messages[0]["content"][0]["type"] == "image"  # one image, with the first turn
    assert messages[1]["content"][0]["text"] == "".join(pieces).strip()


def test_chat_session_commands(analyst, tmp_path):
    first, second = face(tmp_path / "first.png"), face(tmp_path / "second.png", seed=2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(first.read_bytes()[:60])
    script = f"/help\nhello\n/analyse\n/image {broken}\n/image {second}\nagain\n/reset\n/bogus\n/quit\nnever read\n"
    out = io.StringIO()
    session = ChatSession(analyst, Conversation(load_image(first), "first.png"), stdin=io.StringIO(script),
                          stdout=out, max_new_tokens=4)  # fmt: skip
    assert session.run() == 0
    text = out.getvalue()
    assert "/analyse" in text and text.count("dfa-gpt> ") == 2
    for title in ("[DF-D (detection)]", "[DF-C (classification)]", "[AD (artifact description)]"):
        assert title in text
    assert "verdict: " in text and "P(forgery): " in text
    assert f"error: {broken}: unreadable image" in text  # named; the session goes on
    assert "image: " + str(second) in text and "new conversation" in text
    assert "unknown command /bogus" in text
    assert session.conversation.name == str(second) and session.conversation.turns == []  # /reset after "again"


def test_chat_through_the_cli_with_piped_stdin(model, tmp_path):
    image = face(tmp_path / "a.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "dfa_gpt", "chat", "--model", str(model), "--model-args", ARGS,
         "--max-new-tokens", "4", str(image)],
        input="Is it forged?\n/analyse\n", capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dfa-gpt> " in result.stdout and "[DF-C (classification)]" in result.stdout


def test_chat_refuses_a_bad_image_or_model_with_one_line(model, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    runner = CliRunner()
    result = runner.invoke(app, ["chat", "--model", str(model), "--model-args", ARGS, str(bad)])
    assert result.exit_code == 1 and f"{bad}: unreadable image" in result.output
    result = runner.invoke(app, ["chat", "--model", str(tmp_path / "nothing"), str(face(tmp_path / "a.png"))])
    assert result.exit_code == 1 and "no such file or directory" in result.output
    big = tmp_path / "big.png"
    Image.new("RGB", (8000, 6000)).save(big)
    with pytest.raises(ValueError, match="more than the 40,000,000 allowed"):
        load_image(big)
