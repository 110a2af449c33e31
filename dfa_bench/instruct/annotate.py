"""The GPT-4o artifact-description annotator of DFA-Instruct step 2 (its OpenAI plumbing: dfa_bench.openai_api).

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

import hashlib
from dataclasses import dataclass
from pathlib import Path

from dfa_bench.openai_api import BATCH_DISCOUNT, OpenAIJob, data_url, image_tokens, json_digest
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
            input_tokens += len(prompt) // 4 + sum(image_tokens(p, self.detail) for p in images)
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
