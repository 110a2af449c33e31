"""A local OpenAI-compatible server for tests: chat completions with injected faults, plus the Files and
Batch endpoints that the openai client's `files.create`, `batches.create`, `batches.retrieve` and
`files.content` speak."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def describe_reply(body: dict) -> str:
    """The default chat answer: an AD-style line naming how many images came with the request."""
    content = body["messages"][-1]["content"]
    n_images = sum(1 for c in content if c["type"] == "image_url") if isinstance(content, list) else 0
    return f"1. Eyes: a visible blending seam ({n_images} images)."


def completion(body: dict, text: str | dict) -> dict:
    """A chat-completion answer. `text` is the assistant text, or a dict with "content" and any of "refusal",
    "finish_reason" and "logprobs" (the choice's `logprobs.content` list) to fake other kinds of answer."""
    reply = text if isinstance(text, dict) else {"content": text}
    message = {"role": "assistant", "content": reply.get("content"), "refusal": reply.get("refusal")}
    choice = {"index": 0, "message": message, "finish_reason": reply.get("finish_reason", "stop")}
    if reply.get("logprobs") is not None:
        choice["logprobs"] = {"content": reply["logprobs"], "refusal": None}
    return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}  # fmt: skip


class FakeOpenAI:
    """Chat: `faults` are consumed one per incoming chat call, in order: "429", "500", "400" (a bad request, not
    retried), "401" (a wrong key), "slow" (answers after the client's timeout) or "ok"; `fault_for(body)`, when set, picks the fault
    for a request by its content instead (None: take the next of `faults`). `reply(body)` writes the answer
    text (or a dict, see `completion`). Every answer waits `delay` seconds; `max_active` is the most chat
    calls the server was serving at once.
    Batch: a batch reports in_progress for its first `polls_before_done` polls, then `batch_status`.
    `line_faults` are consumed one per input line, in file order: "ok", "error" (a line in the error file),
    "missing" (no line at all) or "empty" (an empty answer)."""

    def __init__(
        self,
        faults: list[str] | None = None,
        *,
        reply: Callable[[dict], str | dict] = describe_reply,
        fault_for: Callable[[dict], str | None] | None = None,
        delay: float = 0.0,
        polls_before_done: int = 0,
        batch_status: str = "completed",
        line_faults: list[str] | None = None,
    ):
        self.faults = list(faults or [])
        self.reply = reply
        self.fault_for, self.delay = fault_for, delay
        self.active = self.max_active = 0
        self.gather = 0  # > 0: each chat answer waits until this many are in flight (at most 2 s)
        self.polls_before_done, self.batch_status = polls_before_done, batch_status
        self.line_faults = list(line_faults or [])
        self.calls: list[dict] = []  # chat completions
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, Authorization) of every request
        self.files: dict[str, bytes] = {}
        self.uploads: list[str] = []  # ids of uploaded files, in order
        self.batches: dict[str, dict] = {}
        self.lock = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def do_GET(self):
                with fake.lock:
                    fake.log.append(("GET", self.path, self.headers.get("Authorization")))
                parts = self.path.strip("/").split("/")  # v1/batches/{id} or v1/files/{id}/content
                if parts[1:2] == ["batches"] and parts[2] in fake.batches:
                    self._reply(200, fake._poll(parts[2]))
                elif parts[1:2] == ["files"] and parts[-1] == "content" and parts[2] in fake.files:
                    self._reply(200, fake.files[parts[2]], content_type="application/octet-stream")
                else:
                    self._reply(404, {"error": {"message": f"no such thing: {self.path}"}})

            def do_POST(self):
                raw = self._body()
                with fake.lock:
                    fake.log.append(("POST", self.path, self.headers.get("Authorization")))
                if self.path.endswith("/files"):
                    self._reply(200, fake._upload(self.headers["Content-Type"], raw))
                elif self.path.endswith("/batches"):
                    self._reply(200, fake._create_batch(json.loads(raw)))
                else:
                    self._chat(json.loads(raw))

            def _chat(self, body: dict):
                with fake.lock:
                    fake.calls.append({"auth": self.headers.get("Authorization"), "body": body})
                    fault = fake.fault_for(body) if fake.fault_for else None
                    if fault is None:
                        fault = fake.faults.pop(0) if fake.faults else "ok"
                    fake.active += 1
                    fake.max_active = max(fake.max_active, fake.active)
                    fake.lock.notify_all()
                    if (
                        fake.gather
                    ):  # wait (a while) until that many answers are in flight: overlap, even on a busy machine
                        fake.lock.wait_for(lambda: fake.active >= fake.gather, timeout=2.0)
                try:
                    self._answer_chat(body, fault)
                finally:
                    with fake.lock:
                        fake.active -= 1

            def _answer_chat(self, body: dict, fault: str):
                time.sleep(fake.delay)
                if fault == "400":
                    self._reply(400, {"error": {"message": "bad request", "type": "invalid_request_error"}})
                    return
                if fault == "401":
                    self._reply(401, {"error": {"message": "Incorrect API key", "type": "invalid_request_error"}})
                    return
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
                self._reply(200, completion(body, fake.reply(body)))

            def _reply(self, status, payload, headers=None, content_type="application/json"):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout) before we answered

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        # a short poll interval: close() returns promptly instead of after up to half a second
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    # -- Files and Batch endpoints ------------------------------------------------------------------
    def _upload(self, content_type: str, raw: bytes) -> dict:
        message = BytesParser(policy=email_policy).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        data = fields["file"].get_payload(decode=True)
        purpose = fields["purpose"].get_content().strip()
        with self.lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = data
            self.uploads.append(file_id)
        name = fields["file"].get_filename()
        return {"id": file_id, "object": "file", "bytes": len(data), "created_at": 0,
                "filename": name, "purpose": purpose, "status": "processed"}  # fmt: skip

    def _create_batch(self, params: dict) -> dict:
        with self.lock:
            batch_id = f"batch-{len(self.batches) + 1}"
            self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": params["endpoint"],
                "input_file_id": params["input_file_id"],
                "completion_window": params["completion_window"],
                "created_at": 0,
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "errors": None,
                "polls": 0,  # private: not in the API's answer
            }
            return self._public(batch_id)

    def _public(self, batch_id: str) -> dict:
        return {k: v for k, v in self.batches[batch_id].items() if k != "polls"}

    def _poll(self, batch_id: str) -> dict:
        with self.lock:
            batch = self.batches[batch_id]
            batch["polls"] += 1
            if batch["status"] in ("validating", "in_progress"):
                if batch["polls"] <= self.polls_before_done:
                    batch["status"] = "in_progress"
                else:
                    self._finish(batch)
            return self._public(batch_id)

    def _finish(self, batch: dict) -> None:
        batch["status"] = self.batch_status
        if self.batch_status == "failed":
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": "bad input file"}]}
        if self.batch_status != "completed":
            return  # expired/cancelled/failed: nothing came back (the real API may return partial output)
        output, errors = [], []
        for line in self.files[batch["input_file_id"]].decode().splitlines():
            request = json.loads(line)
            fault = self.line_faults.pop(0) if self.line_faults else "ok"
            row = {"id": f"req-{len(output) + len(errors)}", "custom_id": request["custom_id"], "error": None}
            if fault == "missing":
                continue
            if fault == "error":
                error = {"error": {"message": "invalid image", "type": "invalid_request_error"}}
                errors.append(row | {"response": {"status_code": 400, "request_id": "r", "body": error}})
                continue
            text = "" if fault == "empty" else self.reply(request["body"])
            body = completion(request["body"], text)
            output.append(row | {"response": {"status_code": 200, "request_id": "r", "body": body}})
        for name, rows in (("output_file_id", output), ("error_file_id", errors)):
            if rows:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[name] = file_id

    def requests_to(self, method: str, fragment: str) -> int:
        return sum(1 for m, path, _ in self.log if m == method and fragment in path)

    def close(self):
        self.server.shutdown()
