"""The OpenAI plumbing every caller of a chat-completions API shares: the annotator and the free-conversation
generator of DFA-Instruct, and the `dfa_openai` adapter.

The client (the key from the environment only; retries with backoff on 429, 5xx and timeouts are the openai
client's own), list prices and cost, image data URLs and OpenAI's image token rule, a bounded thread pool
with per-item errors, and `OpenAIJob`: an answer cache, usage accounting and the Batch API round trip
(one JSONL upload per chunk, one batch each, the batch id saved before polling so a re-run resumes it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from dfa_bench.concurrency import bounded_map_per_item
from dfa_bench.io import atomic_write_text

# USD per million tokens; defaults are GPT-4o list prices, override for other models.
DEFAULT_PRICES = {"input": 2.50, "output": 10.00}
# List prices of models we know, for cost estimates (`prices_for`); dated snapshots match by prefix.
MODEL_PRICES = {
    "gpt-4o": DEFAULT_PRICES,
    "gpt-4o-2024-05-13": {"input": 5.00, "output": 15.00},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4-turbo": {"input": 10.00, "output": 30.00},
    "gpt-4-vision-preview": {"input": 10.00, "output": 30.00},
    "gpt-4-1106-vision-preview": {"input": 10.00, "output": 30.00},
    "gpt-4.1": {"input": 2.00, "output": 8.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
}
BATCH_DISCOUNT = 0.5  # the Batch API bills half the list price
BATCH_ENDPOINT = "/v1/chat/completions"
BATCH_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# The Batch API takes at most 50,000 requests and 200 MB per input file; images make the bytes bind first.
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_BYTES = 180 * 2**20


def image_tokens(path: Path, detail: str) -> int:
    """OpenAI's published image token rule: 85 base + 170 per 512 px tile after scaling (low detail: 85)."""
    if detail == "low":
        return 85
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    return 85 + 170 * math.ceil(width * scale / 512) * math.ceil(height * scale / 512)


def prices_for(model: str) -> dict[str, float] | None:
    """List prices of `model` from MODEL_PRICES (longest matching name prefix), or None when unknown."""
    names = [name for name in MODEL_PRICES if model == name or model.startswith(name + "-")]
    return MODEL_PRICES[max(names, key=len)] if names else None


def cost_usd(input_tokens: int, output_tokens: int, prices: dict[str, float], discount: float = 1.0) -> float:
    """Dollars for the tokens at `prices` (USD per million tokens, keys "input" and "output"), unrounded."""
    return discount * (input_tokens * prices["input"] + output_tokens * prices["output"]) / 1e6


def data_url(raw: bytes, mime: str) -> str:
    """An image's bytes as the base64 data URL that chat requests carry."""
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def openai_client(
    api_key_env: str, base_url: str | None, max_retries: int, timeout: float, *, missing_key: str | None = None
):
    """An openai client with its own backoff retries. The key comes from the environment only; without it
    this raises, unless `missing_key` is given (a placeholder for local servers that ask for no key)."""
    from openai import OpenAI

    api_key = os.environ.get(api_key_env) or missing_key
    if not api_key:
        raise RuntimeError(f"set {api_key_env} in the environment")
    return OpenAI(api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout)


def json_digest(value: object) -> str:
    """sha256 of a JSON-able value: cache keys and batch state names (stable across runs and machines)."""
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()


def _reply_text(body: dict) -> str:
    """The assistant text of a chat-completion body (a dict, as batch output lines carry it)."""
    try:
        return (body["choices"][0]["message"]["content"] or "").strip()
    except (KeyError, IndexError, TypeError):
        return ""


def _line_error(row: dict) -> str:
    """A readable reason for a failed batch output/error line."""
    if row.get("error"):
        error = row["error"]
        return f"batch request failed: {error.get('code')}: {error.get('message')}"
    response = row.get("response") or {}
    error = (response.get("body") or {}).get("error") or {}
    return f"batch request failed: HTTP {response.get('status_code')}: {error.get('message', 'no message')}"


class OpenAIJob:
    """What the GPT annotator and the FC generator share: the client (key from the environment only), the
    answer cache, usage accounting, a bounded thread pool, and the Batch API round trip."""

    def __init__(
        self,
        cache_dir: Path | str,
        *,
        model: str,
        base_url: str | None,
        api_key_env: str,
        concurrency: int,
        max_retries: int,
        timeout: float,
        max_tokens: int,
        prices: dict[str, float] | None,
        poll_interval: float = 30.0,
        batch_timeout: float = 26 * 3600.0,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self.max_tokens = max_tokens
        self.prices = prices or DEFAULT_PRICES
        self.poll_interval, self.batch_timeout = poll_interval, batch_timeout
        self.batch_max_requests, self.batch_max_bytes = BATCH_MAX_REQUESTS, BATCH_MAX_BYTES
        self.usage = {"input_tokens": 0, "output_tokens": 0, "requests": 0}
        self._usage_lock = threading.Lock()

    # -- client, cache, usage -----------------------------------------------------------------------
    def _client(self):
        return openai_client(self.api_key_env, self.base_url, self.max_retries, self.timeout)

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _read_cache(self, key: str) -> str | None:
        path = self._cache_path(key)
        return json.loads(path.read_text())["response"] if path.is_file() else None

    def _write_cache(self, key: str, text: str) -> None:
        atomic_write_text(self._cache_path(key), json.dumps({"model": self.model, "response": text}))

    def _count(self, input_tokens: int, output_tokens: int) -> None:
        with self._usage_lock:
            self.usage["input_tokens"] += input_tokens
            self.usage["output_tokens"] += output_tokens
            self.usage["requests"] += 1

    def _cost(self, input_tokens: int, output_tokens: int, discount: float = 1.0) -> float:
        return round(cost_usd(input_tokens, output_tokens, self.prices, discount), 4)

    def _chat(self, client, body: dict) -> str:
        """One online chat completion of `body` (the same body a batch line carries); non-empty text or raises."""
        response = client.chat.completions.create(**body)
        text = (response.choices[0].message.content or "").strip()
        if not text:
            raise ValueError("empty response")
        usage = response.usage
        self._count(usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)
        return text

    def _map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any, str | None]]:
        return bounded_map_per_item(fn, items, self.concurrency)

    # -- Batch API ----------------------------------------------------------------------------------
    def _accept(self, custom_id: str, text: str) -> str | None:
        """Checks a batch answer and caches it; returns a failure reason instead when it is unusable."""
        self._write_cache(custom_id, text)
        return None

    @property
    def _batch_dir(self) -> Path:
        return self.cache_dir / "batches"

    def _run_batch(
        self, custom_ids: list[str], make_body: Callable[[str], dict]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Sends the uncached requests `custom_ids` (cache keys; `make_body` builds each chat body) through
        the Batch API. Returns ({custom_id: text}, {custom_id: reason}); every accepted text is cached."""
        client = self._client()
        todo = set(custom_ids)
        jobs = []
        # Resume first: a batch submitted by an earlier (crashed or timed-out) run that covers any of these
        # requests is polled again rather than paid for twice.
        for path in sorted(self._batch_dir.glob("*.json")):
            state = json.loads(path.read_text())
            if todo & set(state["custom_ids"]):
                jobs.append((path, state))
                todo -= set(state["custom_ids"])
        # Submit every chunk before polling any, so that they run side by side.
        refused: dict[str, str] = {}
        for lines in self._chunk_lines(sorted(todo), make_body):
            try:
                jobs.append(self._submit(client, lines))
            except Exception as exc:  # e.g. a file over the size limit: that chunk fails, the others go on
                refused.update(dict.fromkeys(lines, f"submitting the batch failed: {type(exc).__name__}: {exc}"))
        answers, failures = self._collect(client, jobs)
        failures.update(refused)
        wanted = set(custom_ids)
        return (
            {k: v for k, v in answers.items() if k in wanted},
            {k: v for k, v in failures.items() if k in wanted},
        )

    def _chunk_lines(self, custom_ids: list[str], make_body: Callable[[str], dict]) -> Iterator[dict[str, str]]:
        """{custom_id: JSONL line} chunks within the API's request and byte limits, built lazily because
        base64 images make the whole set too big to hold at once."""
        chunk: dict[str, str] = {}
        size = 0
        for custom_id in custom_ids:
            request = {"custom_id": custom_id, "method": "POST", "url": BATCH_ENDPOINT, "body": make_body(custom_id)}
            line = json.dumps(request)
            if chunk and (len(chunk) >= self.batch_max_requests or size + len(line) + 1 > self.batch_max_bytes):
                yield chunk
                chunk, size = {}, 0
            chunk[custom_id] = line
            size += len(line) + 1
        if chunk:
            yield chunk

    def _submit(self, client, lines: dict[str, str]) -> tuple[Path, dict]:
        ids = sorted(lines)
        data = "".join(lines[i] + "\n" for i in ids).encode()
        upload = client.files.create(file=("batch.jsonl", data, "application/jsonl"), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint=BATCH_ENDPOINT, completion_window="24h")
        # Saved before any polling: from here on a crash loses nothing that was paid for. (A crash between
        # the two calls above and this write is the one window left.) Ids and cache keys only, no secrets.
        state = {"batch_id": batch.id, "input_file_id": upload.id, "model": self.model, "custom_ids": ids}
        path = self._batch_dir / f"{json_digest(ids)}.json"
        atomic_write_text(path, json.dumps(state))
        return path, state

    def _collect(self, client, jobs: list[tuple[Path, dict]]) -> tuple[dict[str, str], dict[str, str]]:
        """Polls every batch until it ends or `batch_timeout` passes; a batch still running keeps its state
        file, and its requests are reported as failures to resume on the next run."""
        answers: dict[str, str] = {}
        failures: dict[str, str] = {}
        deadline = time.monotonic() + self.batch_timeout
        pending = list(jobs)
        while pending:
            still = []
            for path, state in pending:
                try:
                    batch = client.batches.retrieve(state["batch_id"])
                except Exception as exc:  # the client already retried; keep the state for a later run
                    error = f"{type(exc).__name__}: {exc}"
                    reason = f"polling batch {state['batch_id']} failed ({error}); run again to resume it"
                    failures.update(dict.fromkeys(state["custom_ids"], reason))
                    continue
                if batch.status not in BATCH_TERMINAL:
                    still.append((path, state, batch.status))
                    continue
                try:
                    self._read_batch(client, batch, state["custom_ids"], answers, failures)
                except Exception as exc:  # keep the state: the next run downloads the results again
                    reason = f"reading the results of batch {batch.id} failed ({type(exc).__name__}: {exc}); run again"
                    failures.update({k: reason for k in state["custom_ids"] if k not in answers})
                    continue
                # Done with this batch: a later run must be free to resubmit what failed in it.
                path.unlink(missing_ok=True)
            if not still:
                break
            if time.monotonic() >= deadline:
                for _, state, status in still:
                    waited = f"still {status} after {self.batch_timeout:g} s"
                    reason = f"batch {state['batch_id']} {waited}; run again to resume polling it"
                    failures.update(dict.fromkeys(state["custom_ids"], reason))
                break
            pending = [(path, state) for path, state, _ in still]
            time.sleep(self.poll_interval)
        return answers, failures

    def _read_batch(self, client, batch, custom_ids: list[str], answers: dict, failures: dict) -> None:
        """Maps a finished batch's output and error files back to its requests by custom_id."""

        def rows(file_id: str | None) -> Iterator[dict]:
            if file_id:
                for line in client.files.content(file_id).text.splitlines():
                    if line.strip():
                        yield json.loads(line)

        # An expired or cancelled batch still has an output file for the requests that finished in time.
        for row in rows(batch.output_file_id):
            custom_id, response = row.get("custom_id"), row.get("response") or {}
            if row.get("error") or response.get("status_code") != 200:
                failures[custom_id] = _line_error(row)
                continue
            body = response.get("body") or {}
            usage = body.get("usage") or {}
            self._count(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
            text = _reply_text(body)
            error = self._accept(custom_id, text) if text else "empty response"
            if error is None:
                answers[custom_id] = text
            else:
                failures[custom_id] = error
        for row in rows(batch.error_file_id):
            failures[row.get("custom_id")] = _line_error(row)
        if batch.status == "completed":
            reason = "no line for this request in the batch output"
        else:
            errors = "; ".join(f"{e.code}: {e.message}" for e in (batch.errors.data or [])) if batch.errors else ""
            reason = f"batch {batch.id} {batch.status}" + (f": {errors}" if errors else "")
        for custom_id in custom_ids:
            if custom_id not in answers and custom_id not in failures:
                failures[custom_id] = reason
