"""Artifact-description annotators for DFA-Instruct step 2.

`OpenAIAnnotator` asks GPT-4o (or any OpenAI-compatible server, via `base_url`) with the paper's two
prompt types: the forged image alone, or the forged image with its bona fide source (not for EFS).
Retries with backoff on 429, 5xx and timeouts are the openai client's own; answers go to an on-disk
cache keyed by (model, prompt, image sha256) before anything else happens, so a re-run or a crash
pays for nothing twice. The API key is read from the environment and is never written anywhere.
(The offline annotator for known masks is `dfa_bench.regions.describe_artifacts`.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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


class OpenAIAnnotator:
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
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self.detail, self.max_tokens = detail, max_tokens
        self.prices = prices or DEFAULT_PRICES
        self.usage = {"input_tokens": 0, "output_tokens": 0, "requests": 0}
        self._usage_lock = threading.Lock()

    # -- cache --------------------------------------------------------------------------------------
    def cache_key(self, request: AnnotationRequest) -> str:
        prompt, images = prompt_for(request)
        digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in images]
        return hashlib.sha256(json.dumps([self.model, prompt, digests]).encode()).hexdigest()

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def cached(self, request: AnnotationRequest) -> str | None:
        path = self._cache_path(self.cache_key(request))
        return json.loads(path.read_text())["response"] if path.is_file() else None

    # -- planning -----------------------------------------------------------------------------------
    def dry_run(self, requests: list[AnnotationRequest]) -> dict:
        """How many requests are still to pay for, and an estimate of their tokens and cost."""
        todo = [r for r in requests if self.cached(r) is None]
        input_tokens = 0
        for request in todo:
            prompt, images = prompt_for(request)
            input_tokens += len(prompt) // 4 + sum(_image_tokens(p, self.detail) for p in images)
        output_tokens = len(todo) * self.max_tokens
        cost = (input_tokens * self.prices["input"] + output_tokens * self.prices["output"]) / 1e6
        return {"requests": len(requests), "cached": len(requests) - len(todo), "to_send": len(todo),
                "input_tokens": input_tokens, "max_output_tokens": output_tokens, "max_cost_usd": round(cost, 4)}  # fmt: skip

    # -- calling ------------------------------------------------------------------------------------
    def _client(self):
        from openai import OpenAI

        api_key = os.environ.get(self.api_key_env)
        if not api_key:
            raise RuntimeError(f"set {self.api_key_env} in the environment")
        return OpenAI(api_key=api_key, base_url=self.base_url, max_retries=self.max_retries, timeout=self.timeout)

    def _ask(self, client, request: AnnotationRequest) -> str:
        prompt, images = prompt_for(request)
        content = [{"type": "text", "text": prompt}]
        for path in images:
            data = base64.b64encode(path.read_bytes()).decode()
            mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
            content.append(
                {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}", "detail": self.detail}}
            )
        response = client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": content}], max_tokens=self.max_tokens, temperature=0
        )
        text = (response.choices[0].message.content or "").strip()
        if not text:
            raise ValueError("empty response")
        with self._usage_lock:
            if response.usage:
                self.usage["input_tokens"] += response.usage.prompt_tokens
                self.usage["output_tokens"] += response.usage.completion_tokens
            self.usage["requests"] += 1
        atomic_write_text(
            self._cache_path(self.cache_key(request)), json.dumps({"model": self.model, "response": text})
        )
        return text

    def annotate(self, requests: list[AnnotationRequest]) -> tuple[dict[str, str], dict[str, str]]:
        """({key: description}, {key: failure reason}). Cached answers are not asked again."""
        results: dict[str, str] = {}
        todo = []
        for request in requests:
            hit = self.cached(request)
            if hit is None:
                todo.append(request)
            else:
                results[request.key] = hit
        failures: dict[str, str] = {}
        if not todo:
            return results, failures
        client = self._client()

        def ask(request: AnnotationRequest) -> tuple[str, str | None, str | None]:
            try:
                return request.key, self._ask(client, request), None
            except Exception as exc:  # recorded per item; the run goes on
                return request.key, None, f"{type(exc).__name__}: {exc}"

        with ThreadPoolExecutor(self.concurrency) as pool:
            for key, text, error in pool.map(ask, todo):
                if error is None:
                    results[key] = text
                else:
                    failures[key] = error
        return results, failures
