"""The shared adapter behaviour (batching, response cache, resume, per-item errors), with a fake model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from PIL import Image

from dfa_bench.adapters.base import Answer, DFAAdapter, Query, forgery_probability
from dfa_bench.responses import ResponseCache, read_responses, scores_by_answer

GREEDY = {"max_new_tokens": 8, "temperature": 0}


class EchoAdapter(DFAAdapter):
    """Answers with the question id; fails on items whose doc says so; records every batch it gets."""

    name = "echo"

    def __init__(self, fail_batches_with: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.fingerprint = {"adapter": self.name, "version": 1}
        self.batches: list[list[str]] = []
        self.fail_batches_with = fail_batches_with

    def answer(self, queries: list[Query]) -> list[Answer]:
        self.batches.append([q.question_id for q in queries])
        if self.fail_batches_with and any(q.question_id == self.fail_batches_with for q in queries):
            raise RuntimeError("model blew up")
        if any(q.doc.get("interrupt") for q in queries):
            raise KeyboardInterrupt
        return [Answer(f"answer {q.question_id} ({len(q.images)} image)", score=0.25 if q.task == "dfd" else None,
                       usage={"input_tokens": 3, "output_tokens": 2}) for q in queries]  # fmt: skip


def _docs(tmp_path, n: int, bad: set[int] = frozenset()) -> list[dict]:
    docs = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        if i in bad:
            path.write_bytes(b"not a png")
        else:
            Image.new("RGB", (8, 8), (i, 0, 0)).save(path)
        docs.append({"question_id": f"q{i}", "task": "dfd", "polarity": "forged", "image_path": str(path)})
    return docs


def _visual(doc: dict) -> list:
    with Image.open(doc["image_path"]) as image:
        return [image.convert("RGB")]


def _requests(adapter: DFAAdapter, docs: list[dict], gen_kwargs=None) -> list:
    adapter.task_dict = {"dfa_bench_dfd": {"test": docs}}
    return [
        SimpleNamespace(args=("Q" * (i % 4 + 1), dict(gen_kwargs or GREEDY), _visual, i, "dfa_bench_dfd", "test"))
        for i in range(len(docs))
    ]


def test_answers_come_back_in_request_order_in_bounded_batches(tmp_path):
    adapter = EchoAdapter(batch_size=3, response_cache=str(tmp_path / "r.jsonl"))
    docs = _docs(tmp_path, 10)
    out = adapter.generate_until(_requests(adapter, docs))
    assert out == [f"answer q{i} (1 image)" for i in range(10)]
    assert all(len(b) <= 3 for b in adapter.batches) and sum(map(len, adapter.batches)) == 10
    assert len(adapter.batches) == 4
    assert dict(adapter.usage) == {"input_tokens": 30, "output_tokens": 20}


def test_different_generation_settings_never_share_a_batch(tmp_path):
    adapter = EchoAdapter(batch_size=8, response_cache=str(tmp_path / "r.jsonl"))
    docs = _docs(tmp_path, 6)
    requests = _requests(adapter, docs)
    for r in requests[::2]:
        r.args = (r.args[0], {"max_new_tokens": 64}, *r.args[2:])
    adapter.generate_until(requests)
    assert sorted(sorted(b) for b in adapter.batches) == [["q0", "q2", "q4"], ["q1", "q3", "q5"]]


def test_a_rerun_asks_nothing_and_returns_the_same_answers(tmp_path):
    cache = tmp_path / "r.jsonl"
    first = EchoAdapter(batch_size=4, response_cache=str(cache))
    docs = _docs(tmp_path, 7)
    answers = first.generate_until(_requests(first, docs))
    again = EchoAdapter(batch_size=4, response_cache=str(cache))
    assert again.generate_until(_requests(again, docs)) == answers
    assert again.batches == []
    rows = read_responses(cache)
    assert sorted(r["question_id"] for r in rows) == [f"q{i}" for i in range(7)]  # each asked once
    assert all(r["score"] == 0.25 and r["error"] is None for r in rows)


def test_another_model_or_prompt_does_not_reuse_answers(tmp_path):
    cache = tmp_path / "r.jsonl"
    docs = _docs(tmp_path, 3)
    first = EchoAdapter(response_cache=str(cache))
    first.generate_until(_requests(first, docs))
    other = EchoAdapter(response_cache=str(cache))
    other.fingerprint = {"adapter": "echo", "version": 2}
    other.generate_until(_requests(other, docs))
    assert len(other.batches) == 3
    reworded = EchoAdapter(response_cache=str(cache))
    requests = _requests(reworded, docs)
    requests[0].args = ("another prompt", *requests[0].args[1:])
    reworded.generate_until(requests)
    assert reworded.batches == [["q0"]]


def test_a_bad_image_is_a_recorded_item_error_and_is_retried_next_run(tmp_path):
    cache = tmp_path / "r.jsonl"
    docs = _docs(tmp_path, 5, bad={2})
    adapter = EchoAdapter(batch_size=2, response_cache=str(cache))
    out = adapter.generate_until(_requests(adapter, docs))
    assert out[2] == "" and all(out[i].startswith("answer") for i in (0, 1, 3, 4))
    assert [f["question_id"] for f in adapter.failures] == ["q2"]
    (row,) = [r for r in read_responses(cache) if r["error"]]
    assert row["question_id"] == "q2" and "image" in row["error"]
    Image.new("RGB", (8, 8)).save(docs[2]["image_path"])  # the user fixes the file
    again = EchoAdapter(response_cache=str(cache))
    assert again.generate_until(_requests(again, docs))[2] == "answer q2 (1 image)"
    assert again.batches == [["q2"]]


def test_one_failing_item_does_not_sink_its_batch(tmp_path):
    adapter = EchoAdapter(batch_size=4, fail_batches_with="q1", response_cache=str(tmp_path / "r.jsonl"))
    out = adapter.generate_until(_requests(adapter, _docs(tmp_path, 4)))
    assert out[1] == "" and all(out[i] == f"answer q{i} (1 image)" for i in (0, 2, 3))
    assert adapter.failures[0]["error"] == "RuntimeError: model blew up"


def test_a_killed_run_keeps_every_finished_batch(tmp_path):
    cache = tmp_path / "r.jsonl"
    docs = _docs(tmp_path, 9)
    adapter = EchoAdapter(batch_size=2, response_cache=str(cache))
    requests = _requests(adapter, docs)
    docs[8]["interrupt"] = True  # the batch holding q8 dies mid-run
    with pytest.raises(KeyboardInterrupt):
        adapter.generate_until(requests)
    finished = {q for batch in adapter.batches[:-1] for q in batch}
    assert {r["question_id"] for r in read_responses(cache)} == finished and finished
    docs[8]["interrupt"] = False
    resumed = EchoAdapter(batch_size=2, response_cache=str(cache))
    resumed.generate_until(_requests(resumed, docs))
    assert {q for batch in resumed.batches for q in batch} == {f"q{i}" for i in range(9)} - finished


def test_a_torn_last_line_is_cut_and_a_corrupt_middle_line_is_an_error(tmp_path):
    cache = tmp_path / "r.jsonl"
    good = {"key": "k1", "question_id": "q1", "task": "dfd", "response": "Yes", "score": 0.9, "error": None}
    cache.write_text(json.dumps(good) + "\n" + '{"key": "k2", "quest')
    loaded = ResponseCache(cache)
    assert set(loaded.answers) == {"k1"}
    loaded.append([{**good, "key": "k3"}])
    assert [r["key"] for r in read_responses(cache)] == ["k1", "k3"]
    assert scores_by_answer(cache) == {("q1", "Yes"): 0.9}
    cache.write_text("garbage\n" + json.dumps(good) + "\n")
    with pytest.raises(ValueError, match="line 1"):
        ResponseCache(cache)


def test_unknown_model_args_are_refused():
    with pytest.raises(ValueError, match="unknown model_args.*colour"):
        EchoAdapter.create_from_arg_string("colour=blue", {"batch_size": 1})


def test_forgery_probability_follows_the_question_polarity():
    assert forgery_probability(0.8, "forged") == 0.8
    assert forgery_probability(0.8, "authentic") == pytest.approx(0.2)
