"""The one interface every DFA-Bench adapter implements, and the behaviour they all share.

An adapter is an lmms-eval "simple" model. lmms-eval hands `generate_until` its requests; this base
class turns them into `Query` objects (question item, prompt, image), serves what the response cache
already holds, batches the rest by generation settings and prompt length, calls the adapter's
`answer(queries) -> list[Answer]` once per batch, and appends every answer to the cache before it
moves on, so a killed run loses at most the batch in flight. A query whose image cannot be read, or
whose batch raised, becomes a recorded per-item error (an empty response), never a crashed run.

Adapters only implement `answer` (and set `fingerprint`, what identifies their answers in the cache).

Under `accelerate launch` (or `dfa-bench eval --num-processes N`) lmms-eval hands each process only its
rank's shard of the questions and gathers the results on rank 0. The base class gives every adapter what
that needs: its rank and world size from the launcher's environment, the device of its local rank
(`process_device`), an `accelerator` for lmms-eval's collectives (gloo on CPU), and a response cache
file of its own (`responses.rank<r>.jsonl`), so processes never write into one another's file.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from lmms_eval.api.model import lmms
from loguru import logger

from dfa_bench.adapters.first_token import forgery_probability  # noqa: F401  (adapters import it from here)
from dfa_bench.contract import (  # noqa: F401  (re-exported: an adapter author imports DFAAdapter, Query, Answer here)
    AdapterConfigError,
    Answer,
    Query,
    as_bool,
    local_path_or_hub_id,
)
from dfa_bench.environment import MODEL_ARGS, weights_stamp
from dfa_bench.responses import ResponseCache, cache_key, item_identity

CACHE_DIR_ENV = "DFA_BENCH_RESPONSES_DIR"


def launch_ranks() -> tuple[int, int, int]:
    """(rank, local rank, world size) as torchrun / accelerate launch set them; (0, 0, 1) otherwise."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))


def process_device(requested: str | None) -> str:
    """Where this process runs its model: `requested`, with a bare "cuda" (or nothing, on a GPU machine)
    meaning this process's own GPU, `cuda:<local rank>`, when several processes share the machine."""
    import torch

    _, local_rank, world_size = launch_ranks()
    if requested in (None, "", "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and world_size > 1:
        return f"cuda:{local_rank}"
    return requested


def truncate_at_stops(text: str, until: list[str]) -> str:
    """Cut `text` at the earliest stop string (lmms-eval's `until`)."""
    cut = len(text)
    for stop in until:
        if stop:
            index = text.find(stop)
            if index != -1:
                cut = min(cut, index)
    return text[:cut]


class DFAAdapter(lmms):
    """Base of every `dfa_*` model. Subclasses implement `answer` and set `self.fingerprint`."""

    is_simple = True
    name = "dfa_adapter"
    dfa_bench_adapter = True  # contract.is_dfa_adapter

    def __init__(
        self,
        batch_size: int | str = 1,
        response_cache: str | None = None,
        max_batch_size: int | None = None,
        device: str | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise ValueError(f"{self.name}: unknown model_args {sorted(unknown)}")
        self.batch_size = max(1, int(batch_size)) if str(batch_size).isdigit() else 1
        self._rank, self.local_rank, self._world_size = launch_ranks()
        self.device_name = process_device(device)
        if self._world_size > 1:
            from accelerate import Accelerator

            # lmms-eval's collectives run through `lm.accelerator`; the one it would make for us is not
            # distributed on a machine without GPUs, so CPU processes get gloo here
            self.accelerator = Accelerator(cpu=not self.device_name.startswith("cuda"))
        self.fingerprint: dict = {"adapter": self.name}
        self._cache_path = response_cache
        self._cache: ResponseCache | None = None
        self._cache_fingerprint: dict | None = None
        self.failures: list[dict] = []
        self.usage: dict[str, int] = defaultdict(int)

    # -------------------------------------------------------------------------------- to implement

    def answer(self, queries: list[Query]) -> list[Answer]:
        """One answer per query, in order. Raise only for faults of the whole batch."""
        raise NotImplementedError

    def summary(self) -> dict:
        """Figures for the end-of-run log (subclasses add cost and the like)."""
        return {"failed": len(self.failures), **self.usage}

    # -------------------------------------------------------------------------------- shared

    @property
    def device(self) -> Any:
        """The torch device lmms-eval places its collective tensors on (this process's device)."""
        import torch

        accelerator = getattr(self, "accelerator", None)
        return accelerator.device if accelerator is not None else torch.device(self.device_name)

    @property
    def cache_fingerprint(self) -> dict:
        """`fingerprint` plus a stamp of the local weights it names (environment.weights_stamp), taken once: an
        answer cached for weights since replaced at the same path is not served for the new ones."""
        if self._cache_fingerprint is None:
            stamps = {
                key: stamp
                for key, value in self.fingerprint.items()
                if key in MODEL_ARGS and isinstance(value, str) and (stamp := weights_stamp(value)) is not None
            }
            self._cache_fingerprint = {**self.fingerprint, **({"weights": stamps} if stamps else {})}
        return self._cache_fingerprint

    @property
    def cache(self) -> ResponseCache:
        if self._cache is None:
            path = self._cache_path
            if not path:
                digest = cache_key(self.cache_fingerprint, "", "", {})[:12]
                path = Path(os.environ.get(CACHE_DIR_ENV, "dfa_bench_responses")) / f"{self.name}-{digest}.jsonl"
            self._cache = ResponseCache(path, rank=self.rank if self.world_size > 1 else None)
            logger.info(f"{self.name}: response cache {self._cache.write_path} ({len(self._cache.answers)} answers)")
        return self._cache

    def _query(self, request) -> tuple[Query, str | None]:
        prompt, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
        doc = self.task_dict[task][split][doc_id]
        question_id = str(doc.get("question_id", f"{task}/{split}/{doc_id}"))
        short_task = doc.get("task", task)
        query = Query(question_id, short_task, prompt, [], doc, dict(gen_kwargs or {}))
        try:
            visuals = doc_to_visual(doc) if doc_to_visual is not None else []
            query.images = [v for v in (visuals or []) if v is not None]
        except Exception as exc:  # a corrupt or missing image: this item fails, the run goes on
            return query, f"image: {exc}"
        return query, None

    def _row(self, key: str, query: Query, answer: Answer) -> dict:
        return {"key": key, "question_id": query.question_id, "task": query.task, "bench": query.doc.get("bench_sha256"),
                "response": answer.response, "score": answer.score, "error": answer.error,
                "usage": answer.usage or None}  # fmt: skip

    def generate_until(self, requests) -> list[str]:
        from tqdm import tqdm

        responses: list[str | None] = [None] * len(requests)
        pending: dict[str, list[tuple[int, str, Query]]] = defaultdict(list)  # by generation settings
        new_rows: list[dict] = []
        first_asked: dict[str, int] = {}  # a question asked twice in one call is answered once
        repeats: list[tuple[int, int]] = []  # (index, index of its first asking)
        stale = 0
        for i, request in enumerate(requests):
            query, error = self._query(request)
            key = cache_key(
                self.cache_fingerprint, query.question_id, query.prompt, query.gen_kwargs, item_identity(query.doc)
            )
            if key in first_asked:  # lmms-eval pads a shorter rank's shard with copies of its last request
                repeats.append((i, first_asked[key]))
                continue
            first_asked[key] = i
            cached = self.cache.get(key)
            if cached is not None:
                responses[i] = cached["response"]
                continue
            stale += self.cache.stale(query.question_id, key)
            if error:
                responses[i] = ""
                new_rows.append(self._row(key, query, Answer("", error=error)))
            else:
                pending[json.dumps(query.gen_kwargs, sort_keys=True, default=str)].append((i, key, query))
        self._record(new_rows)
        todo = sum(len(v) for v in pending.values())
        served = len(requests) - todo - len(new_rows) - len(repeats)
        logger.info(f"{self.name}: {served} of {len(requests)} answers from the cache {self.cache.path}")
        if stale:
            logger.warning(
                f"{self.name}: {stale} cached answers not used: they were given for another image, bench, prompt "
                "or generation settings of the same question id"
            )
        with tqdm(total=todo, desc=f"{self.name} answering", disable=todo == 0) as bar:
            for group in pending.values():
                group.sort(key=lambda entry: -len(entry[2].prompt))  # similar lengths share a batch
                for start in range(0, len(group), self.batch_size):
                    batch = group[start : start + self.batch_size]
                    answers = self._answer_batch([q for _, _, q in batch])
                    rows = [self._row(key, q, a) for (_, key, q), a in zip(batch, answers)]
                    self._record(rows)
                    for (i, _, _), a in zip(batch, answers):
                        responses[i] = a.response
                    bar.update(len(batch))
        for i, first in repeats:
            responses[i] = responses[first]
        self._log_summary()
        return [r or "" for r in responses]

    def _answer_batch(self, queries: list[Query]) -> list[Answer]:
        try:
            answers = self.answer(queries)
            if len(answers) != len(queries):
                raise RuntimeError(f"{len(answers)} answers for {len(queries)} queries")
            return answers
        except AdapterConfigError:
            raise
        except Exception as exc:
            if len(queries) == 1:
                return [Answer("", error=f"{type(exc).__name__}: {exc}")]
            # one bad item must not sink its batch: ask each alone
            return [a for q in queries for a in self._answer_batch([q])]

    def _record(self, rows: list[dict]) -> None:
        self.cache.append(rows)
        for row in rows:
            for name, count in (row.get("usage") or {}).items():
                self.usage[name] += count
            if row["error"]:
                self.failures.append(row)
                logger.warning(f"{self.name}: {row['question_id']} failed: {row['error']}")

    def _log_summary(self) -> None:
        logger.info(f"{self.name}: " + ", ".join(f"{k} {v}" for k, v in self.summary().items()))

    def loglikelihood(self, requests) -> list:
        raise NotImplementedError(f"{self.name} answers generate_until tasks only (DFA-Bench)")

    def generate_until_multi_round(self, requests) -> list:
        raise NotImplementedError(f"{self.name} answers single-round questions only")
