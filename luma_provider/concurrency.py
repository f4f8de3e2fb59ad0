"""One bounded thread loop, shared by status lookups, batch submits and batch downloads.

Threads, not asyncio: the work is ``requests`` and ``ObjectStoragePath`` I/O on a worker, and
the Task SDK's calls (task state store, connections) are thread-safe but not async.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from luma_provider.exceptions import LumaNotStartedError

T = TypeVar("T")
R = TypeVar("R")


def run_bounded(
    items: Sequence[T],
    work: Callable[[T], R],
    *,
    max_workers: int,
    stop_on: Callable[[Exception], bool] = lambda err: True,
    name: str = "luma",
) -> list[R | Exception]:
    """``work(item)`` for every item, at most ``max_workers`` at a time; results in input order.

    An item's exception becomes its result. When ``stop_on(exception)`` is true, items not yet
    started are left out (their result is ``LumaNotStartedError``); the ones running finish.
    ``BaseException`` (a kill, SystemExit) stops everything and propagates.
    """
    results: list[R | Exception] = [
        LumaNotStartedError("not started: the batch stopped early after an error")
    ] * len(items)
    pending = iter(range(len(items)))
    lock = threading.Lock()
    stopped = threading.Event()

    def worker() -> None:
        while not stopped.is_set():
            with lock:  # a shared iterator: each index is taken by exactly one worker
                index = next(pending, None)
            if index is None:
                return
            try:
                results[index] = work(items[index])
            except Exception as err:
                results[index] = err
                if stop_on(err):
                    stopped.set()
            except BaseException:
                stopped.set()
                raise

    count = max(1, min(int(max_workers), len(items)))
    if count == 1 or len(items) <= 1:
        worker()
        return results
    with concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix=name) as pool:
        futures = [pool.submit(worker) for _ in range(count)]
        try:
            for future in concurrent.futures.as_completed(futures):
                future.result()
        finally:
            stopped.set()  # on an error or a kill, the others stop after their current item
    return results
