"""The GPT-4o annotator against a local chat-completions server with injected 429s and timeouts."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from dfa_bench.annotate import PROMPT_PAIRED, PROMPT_SINGLE, AnnotationRequest, OpenAIAnnotator, prompt_for

SECRET = "sk-test-SECRET-123"


class FakeOpenAI:
    """Answers /v1/chat/completions. `faults` are consumed one per incoming call, in order:
    "429", "500", "slow" (answers after the client's timeout) or "ok"."""

    def __init__(self, faults: list[str] | None = None):
        self.faults = list(faults or [])
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.calls.append({"auth": self.headers.get("Authorization"), "body": body})
                    fault = fake.faults.pop(0) if fake.faults else "ok"
                if fault == "429":
                    self._reply(
                        429, {"error": {"message": "rate limited", "type": "rate_limit"}}, {"retry-after-ms": "10"}
                    )
                    return
                if fault == "500":
                    self._reply(500, {"error": {"message": "boom"}}, {"retry-after-ms": "10"})
                    return
                if fault == "slow":
                    time.sleep(1.5)
                n_images = sum(1 for c in body["messages"][0]["content"] if c["type"] == "image_url")
                text = f"1. Eyes: a visible blending seam ({n_images} images)."
                self._reply(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                               "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})  # fmt: skip

            def _reply(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout) before we answered

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


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
