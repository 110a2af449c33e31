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


# ------------------------------------------------------------------------- several processes


def test_a_padded_repeat_of_a_request_is_answered_once(tmp_path):
    adapter = EchoAdapter(batch_size=4, response_cache=str(tmp_path / "r.jsonl"))
    requests = _requests(adapter, _docs(tmp_path, 3))
    requests.append(requests[-1])  # lmms-eval pads a shorter shard with a copy of its last request
    responses = adapter.generate_until(requests)
    assert responses[-1] == responses[-2] == "answer q2 (1 image)"
    assert sorted(q for batch in adapter.batches for q in batch) == ["q0", "q1", "q2"]
    assert len(read_responses(tmp_path / "r.jsonl")) == 3


def test_each_process_writes_its_own_file_and_reads_them_all(tmp_path, monkeypatch):
    import accelerate

    made = []  # no process group in a unit test: record the Accelerator the adapter asks for
    monkeypatch.setattr(accelerate, "Accelerator", lambda cpu: made.append(cpu) or SimpleNamespace(device="cpu"))
    cache = tmp_path / "r.jsonl"
    docs = _docs(tmp_path, 4)
    for rank in (0, 1):  # two processes, each answering its shard (lmms-eval hands them doc i % 2 == rank)
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        adapter = EchoAdapter(response_cache=str(cache), device="cpu")
        assert (adapter.rank, adapter.world_size, adapter.device) == (rank, 2, "cpu")
        shard = [r for r in _requests(adapter, docs) if r.args[3] % 2 == rank]
        adapter.generate_until(shard)
    assert made == [True, True] and not cache.exists()  # CPU processes: a gloo accelerator each
    by_file = {p.name: sorted(r["question_id"] for r in read_responses(p)) for p in tmp_path.glob("r.rank*.jsonl")}
    assert by_file == {"r.rank0.jsonl": ["q0", "q2"], "r.rank1.jsonl": ["q1", "q3"]}

    monkeypatch.setenv("WORLD_SIZE", "1")  # a resumed run with one process asks nothing again
    monkeypatch.setenv("RANK", "0")
    again = EchoAdapter(response_cache=str(cache))
    again.generate_until(_requests(again, docs))
    assert again.batches == []
    assert sorted(row["question_id"] for row in read_responses(cache)) == ["q0", "q1", "q2", "q3"]


def test_merging_the_process_files_keeps_every_line_once_and_in_rank_order(tmp_path):
    from dfa_bench.responses import merge_rank_files, rank_path, rank_paths

    cache = tmp_path / "r.jsonl"
    cache.write_text(json.dumps({"key": "a", "question_id": "q0", "response": "old"}) + '\n{"torn')
    for rank in (10, 2):  # numeric order, not text order
        rank_path(cache, rank).write_text(json.dumps({"key": f"k{rank}", "question_id": f"q{rank}"}) + "\n")
    (tmp_path / "r.rankX.jsonl").write_text("not ours\n")
    assert [p.name for p in rank_paths(cache)] == ["r.rank2.jsonl", "r.rank10.jsonl"]
    assert merge_rank_files(cache) == 2
    assert [row["key"] for row in read_responses(cache)] == ["a", "k2", "k10"]  # the torn tail was cut first
    assert not rank_paths(cache) and (tmp_path / "r.rankX.jsonl").exists()
    assert merge_rank_files(cache) == 0


def test_a_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    import torch

    from dfa_bench.adapters.base import process_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert process_device(None) == process_device("cuda") == "cuda:3"
    assert process_device("cpu") == "cpu" and process_device("cuda:0") == "cuda:0"
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert process_device(None) == "cuda"
