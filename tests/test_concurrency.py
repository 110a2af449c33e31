from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from dfa_bench.concurrency import bounded_map, bounded_map_per_item


def test_bounded_map_keeps_input_order_and_at_most_window_tasks_in_flight():
    lock, state = threading.Lock(), {"now": 0, "most": 0}
    drawn = []

    def items():
        for i in range(40):
            drawn.append(i)
            yield i

    def work(i):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.001 * (i % 3))
        with lock:
            state["now"] -= 1
        return i * i

    with ThreadPoolExecutor(8) as pool:
        stream = bounded_map(work, items(), pool, window=3)
        assert next(stream) == 0 and len(drawn) == 3  # the input is drawn lazily, `window` ahead
        assert [0, *stream] == [i * i for i in range(40)]
    assert state["most"] <= 3


def test_bounded_map_per_item_reports_a_failing_item_and_goes_on():
    def fn(i):
        if i == 2:
            raise ValueError("bad item")
        return -i

    assert list(bounded_map_per_item(fn, range(4), concurrency=2)) == [
        (0, 0, None), (1, -1, None), (2, None, "ValueError: bad item"), (3, -3, None)
    ]  # fmt: skip
