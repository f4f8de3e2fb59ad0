"""The bounded work loop, shared by status lookups, batch submits and batch downloads.

``run_bounded`` uses threads: on a worker the work is ``requests`` and ``ObjectStoragePath``
I/O, and the Task SDK's calls (task state store, connections) are thread-safe but not async.
``arun_bounded`` is its asyncio twin for the triggerer, with the same contract.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from luma_provider.exceptions import LumaNotStartedError

T = TypeVar("T")
R = TypeVar("R")


def _not_started(count: int) -> list[Any]:
    return [LumaNotStartedError("not started: the batch stopped early after an error")] * count


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
    results: list[R | Exception] = _not_started(len(items))
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


async def arun_bounded(
    items: Sequence[T],
    work: Callable[[T], Awaitable[R]],
    *,
    max_workers: int,
    stop_on: Callable[[Exception], bool] = lambda err: True,
) -> list[R | Exception]:
    """The asyncio twin of :func:`run_bounded`: same results, same stop rule.

    A cancellation (the trigger's task cancelled) cancels every worker and propagates.
    """
    results: list[R | Exception] = _not_started(len(items))
    pending = iter(range(len(items)))
    stopped = False

    async def worker() -> None:
        nonlocal stopped
        for index in pending:  # a shared iterator: each index is taken by exactly one worker
            if stopped:
                return
            try:
                results[index] = await work(items[index])
            except Exception as err:
                results[index] = err
                stopped = stopped or stop_on(err)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(int(max_workers), len(items))))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return results
