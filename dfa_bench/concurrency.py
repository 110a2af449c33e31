"""Mapping a function over a stream with a bounded number of calls in flight, results in input order: the
alignment workers of a DFA-Instruct build (processes) and OpenAI requests (threads) both go through it."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any


def bounded_map(fn: Callable, items: Iterable, executor: Executor, window: int) -> Iterator:
    """executor.map with at most `window` tasks in flight (a huge input is never queued whole), in input
    order, so whatever is built from the results comes out the same with any number of workers."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def bounded_map_per_item(
    fn: Callable[[Any], Any], items: Iterable[Any], concurrency: int
) -> Iterator[tuple[Any, Any, str | None]]:
    """(item, fn(item), None) or (item, None, reason) for each item, on `concurrency` threads, in order.
    Exceptions are per item so that one bad answer never stops the run."""

    def call(item):
        try:
            return item, fn(item), None
        except Exception as exc:
            return item, None, f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        yield from bounded_map(call, items, pool, window=2 * max(1, concurrency))
