"""dfa_openai against the local fake OpenAI server only: request shape, bounded concurrency, retries,
per-item failures, the key kept secret, cost, logprob scores, and the response cache via generate_until."""

from __future__ import annotations

import base64
import io
import json
import logging
import math

import numpy as np
import pytest
from fake_openai import FakeOpenAI
from loguru import logger
from PIL import Image

from dfa_bench.adapters.base import AdapterConfigError, Query
from dfa_bench.adapters.openai_chat import DFAOpenAI, p_yes
from dfa_bench.responses import read_responses

SECRET = "sk-test-SECRET-dfa-456"
GEN = {"max_new_tokens": 32, "temperature": 0, "do_sample": False, "until": ["\n\n"]}


@pytest.fixture
def server():
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8))


def _doc(task: str, n: int, polarity: str = "forged") -> dict:
    doc = {"question_id": f"{task}-{n}", "task": task, "question": f"{task} question {n}?"}
    if task == "dfd":
        doc["polarity"] = polarity
    if task == "dfc":
        doc["options"] = [{"letter": "A", "category": "face_swapping"}, {"letter": "B", "category": "face_editing"}]
    return doc


def _query(task: str, n: int = 0, polarity: str = "forged", **gen) -> Query:
    doc = _doc(task, n, polarity)
    return Query(doc["question_id"], task, doc["question"], [_image(n)], doc, GEN | gen)


def _adapter(server: FakeOpenAI, **kwargs) -> DFAOpenAI:
    options = {"base_url": server.url, "max_retries": 0, "timeout": 5.0, "batch_size": 64} | kwargs
    return DFAOpenAI(**options)


def _prompt(body: dict) -> str:
    return body["messages"][-1]["content"][-1]["text"]


def test_answers_dfd_dfc_ad_with_the_image_as_a_data_url(server):
    adapter = _adapter(server, detail="low", system_prompt="You are a forensic analyst.")
    queries = [_query("dfd", 0), _query("dfc", 1), _query("ad", 2, max_new_tokens=256)]
    answers = adapter.answer(queries)
    assert [a.error for a in answers] == [None] * 3
    assert all(a.response.endswith("(1 images).") and a.score is None for a in answers)
    assert all(a.usage == {"input_tokens": 100, "output_tokens": 20} for a in answers)
    bodies = {_prompt(call["body"]): call["body"] for call in server.calls}
    for n, query in enumerate(queries):
        body = bodies[query.prompt]
        assert body["model"] == "gpt-4o" and body["temperature"] == 0 and "logprobs" not in body
        assert body["max_tokens"] == query.gen_kwargs["max_new_tokens"]
        assert body["messages"][0] == {"role": "system", "content": "You are a forensic analyst."}
        image, text = body["messages"][1]["content"]
        assert text == {"type": "text", "text": query.prompt}
        assert image["type"] == "image_url" and image["image_url"]["detail"] == "low"
        prefix, data = image["image_url"]["url"].split(",", 1)
        assert prefix == "data:image/png;base64"
        sent = Image.open(io.BytesIO(base64.b64decode(data)))
        assert np.array_equal(np.asarray(sent), np.asarray(_image(n)))  # PNG: the very pixels
    assert all(call["auth"] == f"Bearer {SECRET}" for call in server.calls)


def test_jpeg_and_model_arg_overrides(server):
    adapter = _adapter(server, model="gpt-4o-mini", image_format="jpg", max_tokens=7, temperature=0.3)
    (answer,) = adapter.answer([_query("ad")])
    body = server.calls[0]["body"]
    assert answer.error is None and body["model"] == "gpt-4o-mini"
    assert body["max_tokens"] == 7 and body["temperature"] == 0.3 and len(body["messages"]) == 1
    assert body["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert body["messages"][0]["content"][0]["image_url"]["detail"] == "auto"


def test_configuration_errors_raise(server, monkeypatch):
    with pytest.raises(ValueError, match="detail"):
        _adapter(server, detail="ultra")
    with pytest.raises(ValueError, match="unknown model_args"):
        _adapter(server, api_key=SECRET)  # the key is never a model_arg
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        DFAOpenAI()
    monkeypatch.setenv("MY_KEY", "sk-other")
    _adapter(server, api_key_env="MY_KEY").answer([_query("ad")])
    # a local server without auth: no key needed once base_url is given
    (answer,) = _adapter(server, api_key_env="UNSET_KEY_VAR").answer([_query("ad")])
    assert answer.error is None
    assert [call["auth"] for call in server.calls] == ["Bearer sk-other", "Bearer EMPTY"]


def test_concurrency_is_bounded(server):
    server.delay, server.gather = 0.1, 3
    answers = _adapter(server, concurrency=3).answer([_query("ad", n) for n in range(9)])
    assert all(a.error is None for a in answers) and len(server.calls) == 9
    assert server.max_active == 3  # side by side, but never more than asked


def test_429_500_and_timeouts_are_retried(server):
    server.faults = ["429", "500", "slow", "429"]
    adapter = _adapter(server, concurrency=1, max_retries=4, timeout=0.5)
    answers = adapter.answer([_query("dfd", 0), _query("dfc", 1), _query("ad", 2)])
    assert [a.error for a in answers] == [None] * 3
    assert len(server.calls) == 3 + 4


def test_a_failing_item_becomes_an_error_and_the_others_succeed(server):
    server.fault_for = lambda body: "500" if _prompt(body) == "dfc question 1?" else None
    answers = _adapter(server, max_retries=2, concurrency=4).answer(
        [_query("dfd", 0), _query("dfc", 1), _query("ad", 2)]
    )
    assert answers[0].error is None and answers[2].error is None
    assert answers[1].response == "" and answers[1].error.startswith("InternalServerError")
    assert sum(_prompt(c["body"]) == "dfc question 1?" for c in server.calls) == 3  # 1 + max_retries


def test_a_wrong_key_stops_the_run_instead_of_failing_every_item(server, tmp_path):
    server.faults = ["ok", "401"]
    adapter = _adapter(server, concurrency=1, batch_size=1, response_cache=str(tmp_path / "r.jsonl"))
    docs = [_doc("dfd", i) for i in range(5)]
    with pytest.raises(AdapterConfigError, match="AuthenticationError"):
        _run(adapter, docs)
    assert len(server.calls) == 2  # the first answer, then the 401: nothing more is asked
    assert [r["question_id"] for r in read_responses(tmp_path / "r.jsonl")] == ["dfd-0"]  # kept for the re-run


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ({"content": None, "refusal": "I can't help with that."}, "refusal: I can't help with that."),
        ({"content": "", "finish_reason": "content_filter"}, "stopped by the content filter"),
        ({"content": "  "}, "empty response (finish_reason stop)"),
    ],
)
def test_refusals_filters_and_empty_answers_are_errors(server, reply, error):
    server.reply = lambda body: reply if _prompt(body).startswith("ad") else "Yes."
    dfd, ad = _adapter(server).answer([_query("dfd"), _query("ad")])
    assert dfd.response == "Yes." and dfd.error is None
    assert ad.response == "" and ad.error == error
    assert ad.usage == {"input_tokens": 100, "output_tokens": 20}  # billed all the same


def test_answers_are_cut_at_the_tasks_stop_strings_as_local_models_answers_are(server):
    server.reply = lambda body: "Yes, it is forged.\n\nThe skin is too smooth.\n\nAnd the eyes."
    dfd, ad = _adapter(server).answer([_query("dfd"), _query("ad", until=[])])
    assert dfd.response == "Yes, it is forged."  # DF-D and DF-C stop at lmms-eval's blank line, like dfa_hf
    assert ad.response == "Yes, it is forged.\n\nThe skin is too smooth.\n\nAnd the eyes."  # AD has no stop


def test_cost_summary_is_tokens_times_price(server):
    adapter = _adapter(server, price_in=2.0, price_out=8.0)
    for answer in adapter.answer([_query("ad", n) for n in range(3)]):
        adapter.usage["input_tokens"] += answer.usage["input_tokens"]
        adapter.usage["output_tokens"] += answer.usage["output_tokens"]
    summary = adapter.summary()
    assert summary["input_tokens"] == 300 and summary["output_tokens"] == 60
    assert summary["cost_usd"] == pytest.approx((300 * 2.0 + 60 * 8.0) / 1e6)
    # list prices for known models (dated snapshots too), nothing for unknown ones
    assert _adapter(server).prices == {"input": 2.5, "output": 10.0}
    assert _adapter(server, model="gpt-4o-mini-2024-07-18").prices == {"input": 0.15, "output": 0.6}
    assert _adapter(server, model="llava-hf/llava-1.5-7b-hf").prices == {"input": 0.0, "output": 0.0}
    assert _adapter(server, model="llava", price_out=1).summary() == {
        "failed": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
    }


def _logprobs(first: dict[str, float], lead: str | None = None) -> list[dict]:
    """`choice.logprobs.content`: optionally a leading markdown token, then the answer's first word."""

    def token(text: str, top: dict[str, float]) -> dict:
        alternatives = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top.items()]
        return {"token": text, "logprob": alternatives[0]["logprob"], "bytes": None, "top_logprobs": alternatives}

    return ([token(lead, {lead: 0.99})] if lead else []) + [token(next(iter(first)), first)]


def test_p_yes_reads_the_first_word():
    from openai.types.chat.chat_completion import ChoiceLogprobs

    def content(first, lead=None):
        return ChoiceLogprobs.model_validate({"content": _logprobs(first, lead)}).content

    assert p_yes(content({"Yes": 0.6, " yes": 0.1, "No": 0.2, "Maybe": 0.1})) == pytest.approx(0.7 / 0.9)
    assert p_yes(content({"No": 0.9, "yes": 0.05}, lead="**")) == pytest.approx(0.05 / 0.95)
    assert p_yes(content({"The": 0.9, "This": 0.1})) is None
    assert p_yes(None) is None and p_yes([]) is None


def test_logprobs_give_a_score_that_flips_with_polarity(server):
    def reply(body):
        if not body.get("logprobs"):
            return "1. Eyes: blurry."
        return {"content": "Yes, it is.", "logprobs": _logprobs({"Yes": 0.7, " yes": 0.1, "No": 0.2})}

    server.reply = reply
    adapter = _adapter(server, logprobs=True)
    forged, authentic, ad = adapter.answer([_query("dfd", 0, "forged"), _query("dfd", 1, "authentic"), _query("ad", 2)])
    assert forged.score == pytest.approx(0.8) and authentic.score == pytest.approx(0.2)
    assert 0 <= forged.score <= 1 and ad.score is None and ad.error is None
    asked = {_prompt(c["body"]): c["body"] for c in server.calls}
    assert asked["dfd question 0?"]["logprobs"] is True and asked["dfd question 0?"]["top_logprobs"] == 5
    assert "logprobs" not in asked["ad question 2?"]
    assert adapter.fingerprint["logprobs"] is True


def test_endpoints_without_logprobs_give_no_score(server):
    (answer,) = _adapter(server, logprobs=True).answer([_query("dfd")])  # the server ignores the parameter
    assert answer.error is None and answer.score is None
    # a server that rejects the parameter: asked again without it, and not asked for it any more
    server.fault_for = lambda body: "400" if body.get("logprobs") else None
    adapter = _adapter(server, logprobs=True, concurrency=1)
    answers = adapter.answer([_query("dfd", 1), _query("dfd", 2)])
    assert [(a.error, a.score) for a in answers] == [(None, None), (None, None)]
    assert [bool(c["body"].get("logprobs")) for c in server.calls[1:]] == [True, False, False]


# -- through the base class: generate_until, the response cache, resume ----------------------------------
class _Request:
    def __init__(self, *args):
        self.args = args


def _run(adapter: DFAOpenAI, docs: list[dict]) -> list[str]:
    adapter.task_dict = {"dfa_bench_dfd": {"test": docs}}
    requests = [
        _Request(doc["question"], dict(GEN), lambda d: [_image(int(d["question_id"][-1]))], i, "dfa_bench_dfd", "test")
        for i, doc in enumerate(docs)
    ]
    return adapter.generate_until(requests)


def test_generate_until_caches_and_reasks_only_failures(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    try:
        docs = [_doc("dfd", n, "forged" if n % 2 else "authentic") for n in range(5)]
        cache = tmp_path / "responses.jsonl"
        server.fault_for = lambda body: "500" if _prompt(body) == "dfd question 3?" else None
        first = _adapter(server, response_cache=str(cache), batch_size=4, concurrency=2)
        responses = _run(first, docs)
        assert responses[3] == "" and all(r.startswith("1. Eyes") for i, r in enumerate(responses) if i != 3)
        rows = [json.loads(line) for line in cache.read_text().splitlines()]
        assert len(rows) == 5 and [r["question_id"] for r in rows if r["error"]] == ["dfd-3"]
        assert first.summary()["failed"] == 1 and first.summary()["input_tokens"] == 400
        assert len(server.calls) == 5

        # a second instance on the same cache asks only the item that failed
        server.fault_for = None
        second = _adapter(server, response_cache=str(cache), batch_size=4, concurrency=2)
        assert second.fingerprint == first.fingerprint
        assert _run(second, docs)[3].startswith("1. Eyes") and len(server.calls) == 6
        assert _prompt(server.calls[-1]["body"]) == "dfd question 3?"
        # and a third asks nothing at all
        third = _adapter(server, response_cache=str(cache), batch_size=4)
        assert _run(third, docs) == _run(second, docs) and len(server.calls) == 6
        assert third.summary()["cost_usd"] == 0.0

        # the key is nowhere: not in the cache, the fingerprint, the summary, nor any log line
        assert SECRET not in cache.read_text()
        assert SECRET not in json.dumps(first.fingerprint) and SECRET not in json.dumps(first.summary())
        assert any("cost_usd" in line for line in lines) and SECRET not in "".join(lines)
        assert caplog.records and SECRET not in caplog.text
        assert first._scrub(f"echoed {SECRET}") == "echoed ***"
    finally:
        logger.remove(sink)


def test_credentials_in_a_url_never_reach_a_file_and_other_args_are_recorded(server, bench_dir, tmp_path):
    """Through the CLI: eval, then submit. A password in base_url is redacted in run.json, lmms-eval's results,
    the recorded command and the published entry; max_tokens (a name with "token" in it) is kept as given."""
    from typer.testing import CliRunner

    from dfa_bench.cli import app

    url = server.url.replace("://", "://alice:PASSWORD-in-url@")
    args = f"model=gpt-test,base_url={url},max_tokens=64,max_retries=0"
    out, board = tmp_path / "run", tmp_path / "board"
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--model", "dfa_openai", "--model-args", args, "--bench", str(bench_dir),
                                 "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        runner.invoke(app, ["leaderboard", "init", "--bench", str(bench_dir), "--leaderboard", str(board)]).exit_code
        == 0
    )
    result = runner.invoke(app, ["submit", str(out), "--leaderboard", str(board), "--model-name", "m"])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert "max_tokens=64" in run["model_args"] and "max_tokens=64" in run["lmms_eval_command"]
    assert "alice:***@" not in run["model_args"] and "://***@127.0.0.1" in run["model_args"]
    files = [p for root in (out, board) for p in root.rglob("*") if p.is_file()]
    assert any(p.name.endswith("results.json") for p in files) and any("entries" in str(p) for p in files)
    for path in files:
        assert b"PASSWORD-in-url" not in path.read_bytes(), path
        assert SECRET.encode() not in path.read_bytes(), path


def test_a_model_argument_given_twice_is_refused(bench_dir, tmp_path):
    from typer.testing import CliRunner

    from dfa_bench.cli import app

    result = CliRunner().invoke(app, ["eval", "--model", "dfa_openai", "--model-args", "model=a,max_tokens=8,model=b",
                                      "--bench", str(bench_dir), "--output", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 2 and "model argument 'model' is given twice" in result.output
    assert not (tmp_path / "run").exists()
