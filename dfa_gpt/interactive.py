"""The interactive deepfake analysis engine behind `dfa-gpt chat` and `dfa-gpt serve`.

One model, loaded once through the `dfa_llava` adapter (a DFA-GPT run directory through `dfa_gpt`), with the
same model arguments, serves two things about one face image:

- `analyse`: the bench's three questions (DF-D, DF-C, AD), rendered by the bench's templates, asked through
  the adapter's own `answer` with the task YAMLs' generation settings, and read by the bench's parsers, with
  the DF-D forgery probability. The demo and the benchmark therefore cannot disagree on what an answer means.
- `stream`: free multi-turn chat about the image, tokens streamed as they come (TextIteratorStreamer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from threading import Thread
from typing import Any

from dfa_bench.imaging import load_rgb
from dfa_bench.parsing import parse
from dfa_bench.schema import CATEGORY_NAMES
from dfa_bench.templates import ad_question, dfc_question, dfd_question

TASKS = ("dfd", "dfc", "ad")
TASK_TITLES = {"dfd": "DF-D (detection)", "dfc": "DF-C (classification)", "ad": "AD (artifact description)"}
QUESTIONS = {"dfd": dfd_question, "dfc": dfc_question, "ad": ad_question}
MAX_PIXELS = 40_000_000  # a bigger upload is refused from its header, before it is decoded
MAX_BYTES = 50 * 1024 * 1024
ANALYSIS_SEED = 0  # with the image's digest, picks the bench template each question is asked with


def load_image(source: str | Path) -> Any:
    """An uploaded or named image file, fully decoded as RGB; ValueError naming it when it is not usable."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise ValueError(f"{path}: no such image file")
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size:,} bytes, more than the {MAX_BYTES:,} allowed")
    return load_rgb(path, what="image", max_pixels=MAX_PIXELS)


def load_adapter(model: str, **model_args: Any) -> Any:
    """`dfa_gpt` for a DFA-GPT run directory, `dfa_llava` for any other LLaVA-layout checkpoint."""
    from dfa_bench.adapters.dfa_gpt import DFAGPT
    from dfa_bench.adapters.llava import DFALlava

    adapter = DFAGPT if (Path(model).expanduser() / "dfa_gpt_run.json").is_file() else DFALlava
    return adapter(pretrained=model, **model_args)


@dataclass
class Conversation:
    """One image and the turns about it; a new image starts a new conversation."""

    image: Any
    name: str = "image"
    turns: list[dict] = field(default_factory=list)  # {"role": "user" | "assistant", "text": ...}

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.image.tobytes()).hexdigest()[:16]


@dataclass
class Finding:
    """One ability's answer about the image, as the bench reads it."""

    task: str
    question: str
    response: str
    verdict: str | None  # DF-D: forgery | bona_fide | unparseable; DF-C: a category or unparseable; AD: None
    probability: float | None  # DF-D: P(forgery) from the first answer token, where the model gives it
    error: str | None = None

    @property
    def verdict_text(self) -> str:
        if self.verdict is None:
            return ""
        return CATEGORY_NAMES.get(self.verdict, self.verdict.replace("_", " "))


class Analyst:
    """A loaded model that analyses and chats about face images."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter

    def analyse(self, conversation: Conversation) -> list[Finding]:
        from dfa_bench.contract import Query

        record_id = f"analyse-{conversation.digest}"
        findings = []
        for task in TASKS:
            item = {"task": task, "question_id": f"{record_id}:{task}", **QUESTIONS[task](record_id, ANALYSIS_SEED)}
            query = Query.for_item(item, [conversation.image])
            try:
                answer = self.adapter.answer([query])[0]
            except Exception as exc:  # one ability failing must not lose the others
                findings.append(Finding(task, item["question"], "", None, None, error=f"{type(exc).__name__}: {exc}"))
                continue
            verdict = parse(item, answer.response) if task in ("dfd", "dfc") else None
            findings.append(Finding(task, item["question"], answer.response, verdict, answer.score, answer.error))
        return findings

    def messages(self, conversation: Conversation, text: str) -> list[dict]:
        """Chat-template messages for the conversation so far plus `text`: the image goes with the first turn."""
        turns = [*conversation.turns, {"role": "user", "text": text}]
        messages = []
        for i, turn in enumerate(turns):
            content = [{"type": "image"}] if i == 0 else []
            messages.append({"role": turn["role"], "content": [*content, {"type": "text", "text": turn["text"]}]})
        return messages

    def stream(
        self,
        conversation: Conversation,
        text: str,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 512,
    ) -> Iterator[str]:
        """Yields the reply to `text` piece by piece; the turn pair joins the conversation when it ends."""
        from transformers import TextIteratorStreamer

        adapter = self.adapter
        renderer = adapter.processor if getattr(adapter.processor, "chat_template", None) else adapter.tokenizer
        prompt = renderer.apply_chat_template(
            self.messages(conversation, text), add_generation_prompt=True, tokenize=False
        )
        batch = adapter.encode([prompt], [[conversation.image]])
        gen_kwargs = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
        streamer = TextIteratorStreamer(adapter.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        failure: list[BaseException] = []

        def generate() -> None:  # the adapter's own generate: the bench's decoding settings and padding
            try:
                adapter.generate(batch, gen_kwargs, streamer=streamer)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        thread = Thread(target=generate, daemon=True)
        thread.start()
        reply = []
        for piece in streamer:
            reply.append(piece)
            yield piece
        thread.join()
        if failure:
            raise failure[0]
        conversation.turns += [{"role": "user", "text": text}, {"role": "assistant", "text": "".join(reply).strip()}]
