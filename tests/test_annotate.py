"""The GPT-4o annotator against a local OpenAI-compatible server: injected 429s and timeouts online, and the
Batch API round trip (upload, create, poll, download) with per-line errors, failed batches and crash-resume."""

from __future__ import annotations

import json

import pytest
from fake_openai import FakeOpenAI
from PIL import Image

from dfa_bench.instruct.annotate import PROMPT_PAIRED, PROMPT_SINGLE, AnnotationRequest, OpenAIAnnotator, prompt_for

SECRET = "sk-test-SECRET-123"


@pytest.fixture
def images(tmp_path):
    paths = {}
    for name, colour in (("fake", (200, 80, 80)), ("real", (80, 80, 200)), ("efs", (90, 200, 90))):
        paths[name] = tmp_path / f"{name}.png"
        Image.new("RGB", (224, 224), colour).save(paths[name])
    return paths


def _requests(images):
    return [
        AnnotationRequest("fs1", "face_swapping", images["fake"], images["real"]),
        AnnotationRequest("fe1", "face_editing", images["fake"]),
        AnnotationRequest("efs1", "entire_face_synthesis", images["efs"], images["real"]),
    ]


def test_prompt_types(images):
    paired, single, efs = (prompt_for(r) for r in _requests(images))
    assert paired[0].startswith(PROMPT_PAIRED[:20]) and len(paired[1]) == 2 and "face swapping" in paired[0]
    assert single[0].startswith(PROMPT_SINGLE[:20]) and len(single[1]) == 1
    assert efs[0].startswith(PROMPT_SINGLE[:20]) and len(efs[1]) == 1  # no paired prompt for EFS


def test_retries_faults_caches_and_keeps_the_key_secret(images, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = FakeOpenAI(["429", "500", "slow", "429"])
    try:
        annotator = OpenAIAnnotator(tmp_path / "cache", base_url=server.url, timeout=0.5, max_retries=4, concurrency=2)
        plan = annotator.dry_run(_requests(images))
        assert (
            plan["to_send"] == 3 and plan["cached"] == 0 and plan["input_tokens"] > 3 * 255 and plan["max_cost_usd"] > 0
        )
        results, failures = annotator.annotate(_requests(images))
        assert failures == {}
        assert results["fs1"].endswith("(2 images).") and results["fe1"].endswith("(1 images).")
        assert results["efs1"].endswith("(1 images).")
        assert annotator.usage["requests"] == 3
        assert all(call["auth"] == f"Bearer {SECRET}" for call in server.calls)
        n_calls = len(server.calls)
        assert n_calls >= 3 + 4  # every fault was retried
        # a second run pays for nothing
        again = OpenAIAnnotator(tmp_path / "cache", base_url=server.url)
        assert again.annotate(_requests(images)) == (results, {})
        assert len(server.calls) == n_calls
        assert again.dry_run(_requests(images))["to_send"] == 0
        for path in (tmp_path / "cache").rglob("*"):
            if path.is_file():
                assert SECRET not in path.read_text()
    finally:
        server.close()


def test_exhausted_retries_are_recorded_per_item(images, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = FakeOpenAI(["429"] * 3)
    try:
        annotator = OpenAIAnnotator(tmp_path / "cache", base_url=server.url, max_retries=2, concurrency=1)
        results, failures = annotator.annotate(_requests(images)[:2])
        assert list(failures) == ["fs1"] and "RateLimitError" in failures["fs1"] and SECRET not in failures["fs1"]
        assert list(results) == ["fe1"]
    finally:
        server.close()


def test_missing_key_is_a_clear_error(images, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        OpenAIAnnotator(tmp_path / "cache", base_url="http://127.0.0.1:9").annotate(_requests(images)[:1])


# -- Batch API ------------------------------------------------------------------------------------------
def _batch_annotator(tmp_path, server, **kwargs) -> OpenAIAnnotator:
    options = {"batch": True, "poll_interval": 0.01, "batch_timeout": 5.0} | kwargs
    return OpenAIAnnotator(tmp_path / "cache", base_url=server.url, **options)


def _no_secret_in(tmp_path, server) -> None:
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text()
    for data in server.files.values():
        assert SECRET.encode() not in data


def test_batch_fills_the_cache_and_nothing_is_sent_twice(images, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = FakeOpenAI(polls_before_done=2)
    try:
        annotator = _batch_annotator(tmp_path, server)
        results, failures = annotator.annotate(_requests(images))
        assert failures == {}
        assert results["fs1"].endswith("(2 images).") and results["efs1"].endswith("(1 images).")
        assert annotator.usage["requests"] == 3 and annotator.usage["input_tokens"] == 300
        assert len(server.uploads) == 1 and len(server.batches) == 1 and server.calls == []
        assert server.requests_to("GET", "/batches/") == 3  # two in_progress polls, then completed
        # the uploaded JSONL is the Batch API's request format, with the online path's body
        lines = [json.loads(line) for line in server.files[server.uploads[0]].decode().splitlines()]
        by_id = {line["custom_id"]: line for line in lines}
        request = _requests(images)[0]
        assert by_id[annotator.cache_key(request)]["body"] == annotator.request_body(request)
        assert all(line["method"] == "POST" and line["url"] == "/v1/chat/completions" for line in lines)
        assert all(auth == f"Bearer {SECRET}" for _, _, auth in server.log)
        assert not list((tmp_path / "cache/batches").glob("*.json"))  # finished batches leave no state behind
        _no_secret_in(tmp_path, server)
        # a second run, batch or online, sends nothing
        n_requests = len(server.log)
        assert _batch_annotator(tmp_path, server).annotate(_requests(images)) == (results, {})
        assert OpenAIAnnotator(tmp_path / "cache", base_url=server.url).annotate(_requests(images)) == (results, {})
        assert len(server.log) == n_requests
        assert _batch_annotator(tmp_path, server).dry_run(_requests(images))["to_send"] == 0
    finally:
        server.close()


def test_online_answers_are_reused_by_batch_mode(images, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = FakeOpenAI()
    try:
        OpenAIAnnotator(tmp_path / "cache", base_url=server.url).annotate(_requests(images)[:2])
        results, failures = _batch_annotator(tmp_path, server).annotate(_requests(images))
        assert failures == {} and set(results) == {"fs1", "fe1", "efs1"}
        lines = server.files[server.uploads[0]].decode().splitlines()
        assert len(lines) == 1  # only the request the online run did not answer
    finally:
        server.close()


def test_batch_line_errors_missing_and_empty_lines_fail_per_item(images, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    requests = _requests(images) + [AnnotationRequest("fr1", "face_reenactment", images["real"])]
    server = FakeOpenAI(line_faults=["error", "ok", "missing", "empty"])
    try:
        annotator = _batch_annotator(tmp_path, server)
        results, failures = annotator.annotate(requests)
        # the input file is sorted by custom_id, so map the injected faults through that order
        order = sorted(requests, key=annotator.cache_key)
        assert set(results) == {order[1].key}
        assert "HTTP 400" in failures[order[0].key] and "invalid image" in failures[order[0].key]
        assert "no line" in failures[order[2].key]
        assert failures[order[3].key] == "empty response"
        assert annotator.cached(order[1]) is not None and annotator.cached(order[0]) is None
        # a re-run resubmits only the three that failed
        server.line_faults = []
        results, failures = _batch_annotator(tmp_path, server).annotate(requests)
        assert failures == {} and len(results) == 4
        assert len(server.files[server.uploads[1]].decode().splitlines()) == 3
    finally:
        server.close()


@pytest.mark.parametrize("status", ["failed", "expired", "cancelled"])
def test_a_failed_or_expired_batch_fails_every_item(images, tmp_path, monkeypatch, status):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = FakeOpenAI(batch_status=status)
    try:
        results, failures = _batch_annotator(tmp_path, server).annotate(_requests(images))
        assert results == {} and set(failures) == {"fs1", "fe1", "efs1"}
        assert all(reason.startswith(f"batch batch-1 {status}") for reason in failures.values())
        if status == "failed":
            assert "bad input file" in failures["fs1"]
        assert not list((tmp_path / "cache/batches").glob("*.json"))  # a re-run may submit afresh
    finally:
        server.close()


def test_crash_resume_polls_the_same_batch_without_paying_again(images, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = FakeOpenAI(polls_before_done=1000)
    try:
        results, failures = _batch_annotator(tmp_path, server, batch_timeout=0.05).annotate(_requests(images))
        assert results == {} and set(failures) == {"fs1", "fe1", "efs1"}
        assert all("batch-1 still in_progress" in reason and "run again" in reason for reason in failures.values())
        (state_file,) = (tmp_path / "cache/batches").glob("*.json")
        state = json.loads(state_file.read_text())
        assert state["batch_id"] == "batch-1" and len(state["custom_ids"]) == 3
        assert SECRET not in state_file.read_text()
        # the next run (think: after a crash) finds the state and polls batch-1 instead of submitting again
        server.polls_before_done = 0
        results, failures = _batch_annotator(tmp_path, server).annotate(_requests(images))
        assert failures == {} and len(results) == 3
        assert server.requests_to("POST", "/files") == 1 and server.requests_to("POST", "/batches") == 1
        assert server.requests_to("GET", "/batches/batch-1") >= 2
        assert not state_file.exists()
        _no_secret_in(tmp_path, server)
    finally:
        server.close()


def test_batches_are_split_within_the_request_limit(images, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = FakeOpenAI()
    try:
        annotator = _batch_annotator(tmp_path, server)
        annotator.batch_max_requests = 2
        results, failures = annotator.annotate(_requests(images))
        assert failures == {} and len(results) == 3
        assert len(server.uploads) == 2 and len(server.batches) == 2
    finally:
        server.close()
