"""`dfa_openai`: GPT-4V, GPT-4o and any OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp server).

    lmms-eval --model dfa_openai --model_args model=gpt-4o,detail=high,concurrency=8 --batch_size 64 ...
    lmms-eval --model dfa_openai --model_args model=Qwen/Qwen2-VL-7B-Instruct,base_url=http://localhost:8000/v1 ...

Use a large `--batch_size` (64 or so): the base class caches answers and hands us one batch at a time,
and `concurrency` requests of that batch run side by side, so batch_size 1 means one request at a time.

The key is read from the environment variable named by `api_key_env` (default OPENAI_API_KEY) and goes
to the client only: it is not a model_arg, and never enters the fingerprint, the response cache, a log
line or an error message. A local server without auth needs no key when `base_url` is set.

Retries with exponential backoff on 429, 5xx and timeouts are the openai client's own (`max_retries`).
An item that still fails, or whose answer is a refusal, a content-filter stop or empty, becomes an
Answer with `error` (re-asked on the next run); only configuration errors raise.

With `logprobs=True`, DF-D questions also ask for the top-5 log probabilities of each token, and the
yes/no mass of the first word of the answer gives the DF-D score (P(forgery)); servers that return no
logprobs give score None, and one that refuses the parameter is asked again without it.
"""

from __future__ import annotations

import io
import math
import os
import string
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loguru import logger

from dfa_bench.adapters.base import DFAAdapter, forgery_probability, truncate_at_stops
from dfa_bench.concurrency import bounded_map_per_item
from dfa_bench.contract import AdapterConfigError, Answer, Query, as_bool
from dfa_bench.openai_api import cost_usd, data_url, openai_client, prices_for

DETAILS = ("auto", "low", "high")
IMAGE_MIME = {"png": "image/png", "jpeg": "image/jpeg"}
TOP_LOGPROBS = 5
DEFAULT_MAX_TOKENS = 1024  # lmms-eval's own OpenAI model uses this when a task sets no max_new_tokens
PLACEHOLDER_KEY = "EMPTY"  # what vLLM and SGLang document for servers started without --api-key
_NOT_A_WORD = string.whitespace + string.punctuation  # markdown (**Yes**), quotes, full stops


def _optional(value: Any, cast: type) -> Any:
    """A model_arg that may be left out (None) or given empty."""
    return None if value is None or value == "" else cast(value)


def _word(token: str) -> str:
    return token.strip(_NOT_A_WORD).lower()


def p_yes(content: list | None) -> float | None:
    """P("yes") among yes/no at the first word of an answer, from its tokens' top logprobs (OpenAI's
    `choice.logprobs.content`). Leading whitespace and markdown tokens are skipped; None when that first
    word's alternatives hold neither yes nor no, or when there are no logprobs at all."""
    for token in content or []:
        if not _word(token.token):
            continue
        mass = {"yes": 0.0, "no": 0.0}
        # several spellings (" Yes", "yes", "YES") of one word add up
        for alternative in token.top_logprobs or [token]:
            word = _word(alternative.token)
            if word in mass:
                mass[word] += math.exp(alternative.logprob)
        total = mass["yes"] + mass["no"]
        return mass["yes"] / total if total > 0 else None
    return None


class DFAOpenAI(DFAAdapter):
    """Chat completions with the image(s) as base64 data URLs; see the module docstring."""

    name = "dfa_openai"

    def __init__(
        self,
        model: str = "gpt-4o",
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        detail: str = "auto",
        max_tokens: int | None = None,
        temperature: float | None = None,
        concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 60.0,
        system_prompt: str | None = None,
        logprobs: bool | str = False,
        price_in: float | None = None,
        price_out: float | None = None,
        image_format: str = "png",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = str(model)
        self.detail = str(detail).lower()
        if self.detail not in DETAILS:
            raise ValueError(f"{self.name}: detail must be one of {DETAILS}, not {detail!r}")
        # PNG by default: re-encoding as JPEG adds compression artifacts of its own to a deepfake question
        self.image_format = {"jpg": "jpeg"}.get(str(image_format).lower(), str(image_format).lower())
        if self.image_format not in IMAGE_MIME:
            raise ValueError(f"{self.name}: image_format must be png or jpeg, not {image_format!r}")
        self.max_tokens = _optional(max_tokens, int)
        self.temperature = _optional(temperature, float)
        self.concurrency = int(concurrency)
        if self.concurrency < 1:
            raise ValueError(f"{self.name}: concurrency must be at least 1")
        self.system_prompt = _optional(system_prompt, str)
        self.logprobs = as_bool(logprobs)
        base_url = _optional(base_url, str)

        if not os.environ.get(str(api_key_env)):
            if base_url is None:
                raise RuntimeError(f"{self.name}: set {api_key_env} in the environment (or pass base_url=...)")
            logger.info(f"{self.name}: {api_key_env} is not set; sending a placeholder key to {base_url}")
        self.client = openai_client(
            str(api_key_env), base_url, int(max_retries), float(timeout),
            missing_key=PLACEHOLDER_KEY if base_url else None,
        )  # fmt: skip
        self._logprobs_refused = threading.Event()  # the endpoint said no to logprobs: stop asking
        self._fatal: str | None = None  # an error no other item can escape (wrong key, unknown model)

        known = prices_for(self.model) or {}
        self.prices = {
            "input": float(price_in) if price_in not in (None, "") else known.get("input", 0.0),
            "output": float(price_out) if price_out not in (None, "") else known.get("output", 0.0),
        }
        if not known and (price_in in (None, "") or price_out in (None, "")):
            logger.info(f"{self.name}: no list price known for {self.model}; pass price_in/price_out for a cost")

        # the client's base_url also reflects OPENAI_BASE_URL; host and port only (no path, no user:password@)
        url = urlsplit(str(self.client.base_url))
        host = url.hostname or ""
        self.fingerprint = {
            "adapter": self.name,
            "model": self.model,
            "host": f"{host}:{url.port}" if url.port else host,
            "detail": self.detail,
            "image_format": self.image_format,
            "system_prompt": self.system_prompt,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "logprobs": self.logprobs,
            "cut_at_until": True,  # answers are cut at lmms-eval's stop strings (earlier ones were not)
        }
        if self.batch_size < self.concurrency:
            logger.warning(
                f"{self.name}: batch_size {self.batch_size} caps concurrency {self.concurrency}: requests run "
                "only within a batch, so pass a large --batch_size (e.g. 64)"
            )

    # -------------------------------------------------------------------------------- requests

    def _image_url(self, image: Any) -> str:
        from PIL import Image

        if isinstance(image, (str, Path)):
            with Image.open(image) as opened:
                image = opened.convert("RGB")
        if image.mode not in ("RGB", "L"):  # RGBA, P, CMYK, 16-bit: neither format takes them all
            image = image.convert("RGB")
        buffer = io.BytesIO()
        options = {"quality": 95} if self.image_format == "jpeg" else {}
        image.save(buffer, format=self.image_format.upper(), **options)
        return data_url(buffer.getvalue(), IMAGE_MIME[self.image_format])

    def request_body(self, query: Query) -> dict:
        """The chat-completions parameters for one query. gen_kwargs' `until` is not sent as `stop` (some
        models refuse the parameter): answers are cut at it when read, as the transformers adapters do."""
        # images first, then the question, as DFA-Bench's local models see them
        content: list[dict] = [
            {"type": "image_url", "image_url": {"url": self._image_url(image), "detail": self.detail}}
            for image in query.images
        ]
        content.append({"type": "text", "text": query.prompt})
        messages = [{"role": "user", "content": content}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        gen = query.gen_kwargs
        max_tokens = self.max_tokens or gen.get("max_new_tokens") or DEFAULT_MAX_TOKENS
        temperature = self.temperature if self.temperature is not None else gen.get("temperature", 0)
        body = {"model": self.model, "messages": messages, "max_tokens": int(max_tokens),
                "temperature": float(temperature or 0)}  # fmt: skip
        if self._wants_logprobs(query):
            body.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        return body

    def _wants_logprobs(self, query: Query) -> bool:
        return self.logprobs and query.task == "dfd" and not self._logprobs_refused.is_set()

    # -------------------------------------------------------------------------------- answering

    def answer(self, queries: list[Query]) -> list[Answer]:
        answers = []
        for _, answer, error in bounded_map_per_item(self._ask, queries, min(self.concurrency, len(queries))):
            answers.append(answer if error is None else Answer("", error=self._scrub(error)))
        if self._fatal:  # every further item would fail the same way: stop the run (answers so far are cached)
            raise AdapterConfigError(f"{self.name}: {self._fatal}")
        return answers

    def _ask(self, query: Query) -> Answer:
        from openai import AuthenticationError, BadRequestError, NotFoundError, PermissionDeniedError

        body = self.request_body(query)
        try:
            response = self.client.chat.completions.create(**body)
        except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
            self._fatal = self._scrub(f"{type(exc).__name__}: {exc}")
            raise
        except BadRequestError:
            if not body.get("logprobs"):
                raise
            # Some endpoints (gpt-4-vision-preview, older servers) reject logprobs. Ask once more without;
            # only if that works was logprobs the trouble, and the rest of the run stops asking for them.
            body = {k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")}
            response = self.client.chat.completions.create(**body)
            if not self._logprobs_refused.is_set():
                self._logprobs_refused.set()
                logger.warning(f"{self.name}: {self.model} refused logprobs; DF-D scores will be None")
        return self._read(query, response, logprobs=bool(body.get("logprobs")))

    def _read(self, query: Query, response: Any, logprobs: bool) -> Answer:
        usage = response.usage
        tokens = (
            {"input_tokens": usage.prompt_tokens or 0, "output_tokens": usage.completion_tokens or 0} if usage else {}
        )
        if not response.choices:
            return Answer("", usage=tokens, error="no choices in the response")
        choice = response.choices[0]
        message = choice.message
        content = message.content or ""
        until = query.gen_kwargs.get("until") or []
        # cut where a local model's answer is cut (lmms-eval's `until`: DF-D and DF-C stop at a blank line)
        text = truncate_at_stops(content, [until] if isinstance(until, str) else list(until)).strip()
        # a billed answer that is no answer: recorded as an error (usage kept), asked again next run
        if getattr(message, "refusal", None):
            return Answer("", usage=tokens, error=f"refusal: {self._scrub(message.refusal)[:300]}")
        if choice.finish_reason == "content_filter":
            return Answer("", usage=tokens, error="stopped by the content filter")
        if not content.strip():
            return Answer("", usage=tokens, error=f"empty response (finish_reason {choice.finish_reason})")
        score = None
        if logprobs and query.doc.get("polarity") in ("forged", "authentic"):
            yes = p_yes(getattr(choice.logprobs, "content", None) if choice.logprobs else None)
            score = None if yes is None else forgery_probability(yes, query.doc["polarity"])
        return Answer(text, score=score, usage=tokens)

    def _scrub(self, text: str) -> str:
        """Error text with the key masked, for servers that echo the Authorization header back."""
        key = self.client.api_key
        return text.replace(key, "***") if key and key != PLACEHOLDER_KEY else text

    # -------------------------------------------------------------------------------- reporting

    def summary(self) -> dict:
        figures = super().summary()
        input_tokens, output_tokens = figures.get("input_tokens", 0), figures.get("output_tokens", 0)
        figures.update(input_tokens=input_tokens, output_tokens=output_tokens)
        figures["cost_usd"] = round(cost_usd(input_tokens, output_tokens, self.prices), 6)
        return figures
