"""Artifact-description annotators for DFA-Instruct step 2, and the OpenAI machinery shared with FC generation.

`OpenAIAnnotator` asks GPT-4o (or any OpenAI-compatible server, via `base_url`) with the paper's two
prompt types: the forged image alone, or the forged image with its bona fide source (not for EFS).
Retries with backoff on 429, 5xx and timeouts are the openai client's own; answers go to an on-disk
cache keyed by (model, prompt, image sha256) before anything else happens, so a re-run or a crash
pays for nothing twice. The API key is read from the environment and is never written anywhere.

With `batch=True` the same requests go through the OpenAI Batch API instead (half the price, answers
within 24 h): one JSONL upload per chunk, one batch each, polled until done. The submitted batch id is
saved in the cache directory before polling, so a re-run after a crash or a poll timeout resumes that
batch rather than paying for a new one.
(The offline annotator for known masks is `dfa_bench.instruct.regions.describe_artifacts`.)
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfa_bench.io import atomic_write_text
from dfa_bench.schema import CATEGORY_EXPLANATIONS, CATEGORY_NAMES

_STYLE = (
    "Answer as a numbered list, one line per region, in the form 'N. Region: description'. Use regions such as "
    "forehead, eyes, nose, cheeks and jawline, mouth and lips, hairline and face boundary, and name only regions "
    "that show artifacts."
)
PROMPT_SINGLE = (
    "This face image is a forgery made by {category}: {explanation} Look closely at each facial region and describe "
    "the visual artifacts that reveal the forgery (blending seams, colour mismatch, warping, over-smoothing, blur, "
    "unnatural textures, asymmetry). " + _STYLE
)
PROMPT_PAIRED = (
    "The first image is a forgery made by {category}: {explanation} The second image is the bona fide face it was "
    "made from. Compare the two and describe, region by region, the differences and artifacts that reveal the "
    "forgery in the first image. " + _STYLE
)
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


@dataclass(frozen=True)
class AnnotationRequest:
    key: str  # usually the record_id
    category: str
    image: Path
    source: Path | None = None  # the bona fide source; ignored for entire face synthesis


def prompt_for(request: AnnotationRequest) -> tuple[str, list[Path]]:
    """The prompt text and the images to send, per the paper's two prompt types."""
    fields = {
        "category": CATEGORY_NAMES[request.category].lower(),
        "explanation": CATEGORY_EXPLANATIONS[request.category],
    }
    if request.source is not None and request.category != "entire_face_synthesis":
        return PROMPT_PAIRED.format(**fields), [request.image, request.source]
    return PROMPT_SINGLE.format(**fields), [request.image]


def _image_tokens(path: Path, detail: str) -> int:
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


def map_bounded(
    fn: Callable[[Any], Any], items: Iterable[Any], concurrency: int
) -> Iterator[tuple[Any, Any, str | None]]:
    """(item, fn(item), None) or (item, None, reason) for each item, `concurrency` at a time, in order.
    Exceptions are per item so that one bad answer never stops the run."""

    def call(item):
        try:
            return item, fn(item), None
        except Exception as exc:
            return item, None, f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(concurrency) as pool:
        yield from pool.map(call, items)


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
        return map_bounded(fn, items, self.concurrency)

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


class OpenAIAnnotator(OpenAIJob):
    def __init__(
        self,
        cache_dir: Path | str,
        *,
        model: str = "gpt-4o",
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        max_retries: int = 5,
        timeout: float = 60.0,
        detail: str = "high",
        max_tokens: int = 400,
        prices: dict[str, float] | None = None,
        batch: bool = False,
        poll_interval: float = 30.0,
        batch_timeout: float = 26 * 3600.0,
    ) -> None:
        super().__init__(
            cache_dir, model=model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency,
            max_retries=max_retries, timeout=timeout, max_tokens=max_tokens, prices=prices,
            poll_interval=poll_interval, batch_timeout=batch_timeout,
        )  # fmt: skip
        self.detail = detail
        self.batch = batch

    # -- cache --------------------------------------------------------------------------------------
    def cache_key(self, request: AnnotationRequest) -> str:
        prompt, images = prompt_for(request)
        digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in images]
        return json_digest([self.model, prompt, digests])

    def cached(self, request: AnnotationRequest) -> str | None:
        return self._read_cache(self.cache_key(request))

    # -- planning -----------------------------------------------------------------------------------
    def dry_run(self, requests: list[AnnotationRequest]) -> dict:
        """How many requests are still to pay for, and an estimate of their tokens and cost."""
        todo = [r for r in requests if self.cached(r) is None]
        input_tokens = 0
        for request in todo:
            prompt, images = prompt_for(request)
            input_tokens += len(prompt) // 4 + sum(_image_tokens(p, self.detail) for p in images)
        output_tokens = len(todo) * self.max_tokens
        cost = self._cost(input_tokens, output_tokens, BATCH_DISCOUNT if self.batch else 1.0)
        return {"requests": len(requests), "cached": len(requests) - len(todo), "to_send": len(todo),
                "input_tokens": input_tokens, "max_output_tokens": output_tokens, "max_cost_usd": cost,
                "batch": self.batch}  # fmt: skip

    # -- calling ------------------------------------------------------------------------------------
    def request_body(self, request: AnnotationRequest) -> dict:
        """The chat-completions body, shared by the online path and the Batch API lines."""
        prompt, images = prompt_for(request)
        content: list[dict] = [{"type": "text", "text": prompt}]
        for path in images:
            mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
            content.append(
                {"type": "image_url", "image_url": {"url": data_url(path.read_bytes(), mime), "detail": self.detail}}
            )
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }

    def _split_cached(self, requests: list[AnnotationRequest]) -> tuple[dict[str, str], list[AnnotationRequest]]:
        results: dict[str, str] = {}
        todo = []
        for request in requests:
            hit = self.cached(request)
            if hit is None:
                todo.append(request)
            else:
                results[request.key] = hit
        return results, todo

    def _ask(self, client, request: AnnotationRequest) -> str:
        text = self._chat(client, self.request_body(request))
        self._write_cache(self.cache_key(request), text)
        return text

    def annotate(self, requests: list[AnnotationRequest]) -> tuple[dict[str, str], dict[str, str]]:
        """({key: description}, {key: failure reason}). Cached answers are not asked again.
        Goes through the Batch API when the annotator was made with `batch=True`."""
        if self.batch:
            return self.annotate_batch(requests)
        results, todo = self._split_cached(requests)
        failures: dict[str, str] = {}
        if not todo:
            return results, failures
        client = self._client()
        for request, text, error in self._map(lambda r: self._ask(client, r), todo):
            if error is None:
                results[request.key] = text
            else:
                failures[request.key] = error
        return results, failures

    def annotate_batch(self, requests: list[AnnotationRequest]) -> tuple[dict[str, str], dict[str, str]]:
        """`annotate` through the Batch API: same return shape, same cache. Blocks while polling (up to
        `batch_timeout`); requests of a batch still running then fail with a reason, and the next call
        resumes that batch."""
        results, todo = self._split_cached(requests)
        if not todo:
            return results, {}
        by_id: dict[str, list[AnnotationRequest]] = {}
        for request in todo:  # identical requests share one cache key, so one line in the batch
            by_id.setdefault(self.cache_key(request), []).append(request)
        answers, failed = self._run_batch(list(by_id), lambda custom_id: self.request_body(by_id[custom_id][0]))
        failures: dict[str, str] = {}
        for custom_id, same in by_id.items():
            for request in same:
                if custom_id in answers:
                    results[request.key] = answers[custom_id]
                else:
                    failures[request.key] = failed.get(custom_id, "no answer")
        return results, failures
