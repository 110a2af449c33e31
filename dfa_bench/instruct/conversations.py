"""Free conversations (FC), DFA-Instruct's fourth QA type: follow-up questions and answers about one face.

As in the paper, the LLM is given the annotations, not the image: the D verdict, the C category with its
explanation, and the AD artifact description. It writes `turns` question/answer pairs as JSON, which become a
LLaVA-format training entry. FC is training-only; DFA-Bench never scores it. Client, cache, usage accounting
and the thread pool are `dfa_bench.instruct.annotate.OpenAIJob`'s, so the same guarantees hold: a cached answer is
never paid for twice, failures are per record, and the API key stays in the environment.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dfa_bench.openai_api import OpenAIJob, json_digest
from dfa_bench.schema import CATEGORY_EXPLANATIONS, CATEGORY_NAMES

PROMPT_FC = (
    "You are writing training data for an assistant that analyses face images for deepfakes. The assistant has "
    "already told the user its verdict on one face image. You cannot see the image; these annotations are all that "
    "is known about it:\n"
    "- Verdict: {verdict}\n"
    "- Category: {category}. {explanation}\n"
    "- Artifacts: {artifacts}\n\n"
    "Write {turns} follow-up questions the user might ask next (for example why the verdict was reached, which "
    "region is most telling, how such a forgery is made, what else to check) and the assistant's answers. The "
    "answers must agree with the annotations and add no facts about the image beyond them. Reply with JSON only, "
    'in the form {{"turns": [{{"question": "...", "answer": "..."}}]}}, with exactly {turns} items.'
)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)


def prompt_for_record(record: dict, turns: int) -> str:
    """The FC prompt for one record: text only, built from its D, C and AD annotations."""
    forged = record["label"] != "bona_fide"
    artifacts = (record.get("artifact_description") or "").strip()
    if not artifacts:
        artifacts = "none described" if forged else "none; the face shows no signs of manipulation"
    return PROMPT_FC.format(
        verdict="forged" if forged else "bona fide (a real, unmanipulated face)",
        category=CATEGORY_NAMES[record["category"]],
        explanation=CATEGORY_EXPLANATIONS[record["category"]],
        artifacts=artifacts,
        turns=turns,
    )


def parse_turns(text: str, turns: int) -> list[tuple[str, str]]:
    """[(question, answer)] from the LLM's reply; raises ValueError saying what is wrong with it."""
    fenced = _FENCE.search(text)  # models often wrap JSON in a ```json block despite being asked not to
    try:
        payload = json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"reply is not valid JSON: {exc.msg}") from None
    items = payload.get("turns") if isinstance(payload, dict) else None
    if not isinstance(items, list) or len(items) != turns:
        raise ValueError(f'reply has no "turns" list of {turns} items')
    pairs = []
    for item in items:
        question, answer = (item.get("question"), item.get("answer")) if isinstance(item, dict) else (None, None)
        if not (isinstance(question, str) and question.strip() and isinstance(answer, str) and answer.strip()):
            raise ValueError("every turn needs a non-empty question and answer string")
        pairs.append((question.strip(), answer.strip()))
    return pairs


def llava_conversation(record: dict, pairs: list[tuple[str, str]]) -> dict:
    """The LLaVA training entry; `<image>` goes in the first human turn only, as LLaVA expects."""
    conversations = []
    for i, (question, answer) in enumerate(pairs):
        conversations.append({"from": "human", "value": ("<image>\n" if i == 0 else "") + question})
        conversations.append({"from": "gpt", "value": answer})
    return {"id": f"{record['record_id']}:fc", "image": record["image"], "conversations": conversations}


class ConversationGenerator(OpenAIJob):
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
        turns: int = 4,
        max_tokens: int = 1000,
        temperature: float = 0.7,
        prices: dict[str, float] | None = None,
    ) -> None:
        super().__init__(
            cache_dir, model=model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency,
            max_retries=max_retries, timeout=timeout, max_tokens=max_tokens, prices=prices,
        )  # fmt: skip
        self.turns = turns
        self.temperature = temperature  # some variety across records; the cache keeps re-runs identical

    def cache_key(self, record: dict) -> str:
        return json_digest([self.model, prompt_for_record(record, self.turns)])

    def request_body(self, record: dict) -> dict:
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt_for_record(record, self.turns)}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "response_format": {"type": "json_object"},
        }

    def _cached_pairs(self, record: dict) -> list[tuple[str, str]] | None:
        text = self._read_cache(self.cache_key(record))
        return None if text is None else parse_turns(text, self.turns)

    def _ask(self, client, record: dict) -> list[tuple[str, str]]:
        pairs = parse_turns(self._chat(client, self.request_body(record)), self.turns)
        # Only a reply that parsed is cached, so a malformed one is asked again on the next run.
        turns = [{"question": q, "answer": a} for q, a in pairs]
        self._write_cache(self.cache_key(record), json.dumps({"turns": turns}, ensure_ascii=False))
        return pairs

    def dry_run(self, records: list[dict]) -> dict:
        """How many requests are still to pay for, and an estimate of their tokens and cost."""
        todo = [r for r in records if self._read_cache(self.cache_key(r)) is None]
        input_tokens = sum(len(prompt_for_record(r, self.turns)) // 4 for r in todo)
        output_tokens = len(todo) * self.max_tokens
        return {"requests": len(records), "cached": len(records) - len(todo), "to_send": len(todo),
                "input_tokens": input_tokens, "max_output_tokens": output_tokens,
                "max_cost_usd": self._cost(input_tokens, output_tokens)}  # fmt: skip

    def generate(self, records: list[dict]) -> tuple[list[dict], dict[str, str]]:
        """(LLaVA entries in record order, {record_id: failure reason}). Cached conversations are not asked again."""
        pairs_by_id: dict[str, list[tuple[str, str]]] = {}
        failures: dict[str, str] = {}
        todo = []
        for record in records:
            try:
                pairs = self._cached_pairs(record)
            except (KeyError, ValueError) as exc:  # e.g. an unknown category: this record only
                failures[record["record_id"]] = f"{type(exc).__name__}: {exc}"
                continue
            if pairs is None:
                todo.append(record)
            else:
                pairs_by_id[record["record_id"]] = pairs
        if todo:
            client = self._client()
            for record, pairs, error in self._map(lambda r: self._ask(client, r), todo):
                if error is None:
                    pairs_by_id[record["record_id"]] = pairs
                else:
                    failures[record["record_id"]] = error
        entries = [llava_conversation(r, pairs_by_id[r["record_id"]]) for r in records if r["record_id"] in pairs_by_id]
        return entries, failures
