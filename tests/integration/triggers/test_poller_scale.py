"""Scale and leak checks of the shared StatusPoller: ~200 LumaTriggers in one event loop.

Correctness only (never timings): every id is delivered exactly once, the poll traffic is
batched far below one request per trigger per cycle, and nothing is left behind (no poller in
the registry, no poller task, no waiting ids) whether triggers finish or are cancelled.
Performance numbers live in ``benchmarks/`` and ``BENCHMARKS.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from airflow_helpers import connection_json

from luma_provider.sandbox import LumaSandbox
from luma_provider.triggers.luma import LumaTrigger
from luma_provider.triggers.poller import StatusPoller, active_pollers

N = 200
KEY = "sk-poller-scale-0001"
POLL = 1.0


@pytest.fixture
def spread_jobs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LumaSandbox, list[str]]]:
    """A sandbox with N generations finishing at spread-out times (0.5 s .. 3 s after submit)."""
    with LumaSandbox(port=0, api_key=KEY, queue_seconds=0.2, process_seconds=0.3) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", connection_json(sb.url, key=KEY, max_retries=2))
        ids: list[str] = []
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {KEY}"
            for i in range(N):
                if i % 20 == 0:  # ten completion times
                    sb.configure(process_seconds=0.3 + 2.5 * i / N)
                resp = http.post(f"{sb.url}/luma/generations", json={"user_prompt": f"scale {i}"}, timeout=10)
                resp.raise_for_status()
                ids.append(resp.json()["id"])
        yield sb, ids


async def _run_to_end(trigger: LumaTrigger) -> list[dict[str, Any]]:
    """Drive ``run()`` to its end, as the triggerer does (so its ``finally`` releases the poller)."""
    return [event.payload async for event in trigger.run()]


def _poller_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("luma-poller-") and not t.done()]


async def test_many_triggers_all_delivered_with_batched_polls(
    spread_jobs: tuple[LumaSandbox, list[str]],
) -> None:
    sb, ids = spread_jobs
    before = sb.stats()["by_route"]
    triggers = [LumaTrigger([gen_id], poll_interval=POLL) for gen_id in ids]

    results = await asyncio.wait_for(asyncio.gather(*(_run_to_end(t) for t in triggers)), timeout=25)

    assert all(len(events) == 1 for events in results), "each trigger yields exactly one event"
    payloads = [events[0] for events in results]
    assert [p["status"] for p in payloads] == ["success"] * N
    assert [p["generation_ids"] for p in payloads] == [[gen_id] for gen_id in ids]
    assert all(p["states"] == {gen_id: "completed"} for p, gen_id in zip(payloads, ids, strict=False))

    after = sb.stats()["by_route"]
    batch_polls = after.get("tasks", 0) - before.get("tasks", 0)
    single_polls = after.get("get", 0) - before.get("get", 0)
    assert single_polls == 0, "with the batch route available, no per-generation GETs"
    # One request per cycle (200 ids < batch_size 100 * 2 -> at most 2); a handful of cycles.
    assert 0 < batch_polls <= N // 10, f"{batch_polls} batch requests for {N} triggers"

    await asyncio.sleep(0)  # let the last poller task finish cancelling
    assert active_pollers() == {}
    assert _poller_tasks() == []


async def test_cancelled_triggers_leave_no_waiters(spread_jobs: tuple[LumaSandbox, list[str]]) -> None:
    _sb, ids = spread_jobs
    tasks = [asyncio.create_task(_run_to_end(LumaTrigger([gen_id], poll_interval=POLL))) for gen_id in ids]
    # Every trigger registers; on a loaded machine the earliest jobs may already be done (their
    # fixture submits took longer than their 0.5 s), so those count as delivered, not waiting.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        pollers = list(active_pollers().values())
        delivered = sum(t.done() for t in tasks)
        if pollers and pollers[0].waiting_ids + delivered == N:
            break
        assert loop.time() < deadline, f"triggers never all registered: {pollers} {delivered}"
        await asyncio.sleep(0.01)
    (poller,) = pollers
    assert isinstance(poller, StatusPoller)
    assert delivered < N // 2, "the test needs triggers still waiting"

    doomed, kept = [t for t in tasks[::2] if not t.done()], tasks[1::2]
    for task in doomed:
        task.cancel()
    await asyncio.gather(*doomed, return_exceptions=True)
    assert all(t.cancelled() for t in doomed)
    assert poller.waiting_ids <= len(kept), "cancelled triggers must take their ids out of the poller"

    results = await asyncio.wait_for(asyncio.gather(*kept), timeout=25)
    assert [events[0]["status"] for events in results] == ["success"] * len(kept)
    assert [events[0]["generation_ids"] for events in results] == [[gen_id] for gen_id in ids[1::2]]

    await asyncio.sleep(0)
    assert poller.waiting_ids == 0
    assert active_pollers() == {}
    assert _poller_tasks() == []


async def test_poller_is_recreated_after_all_triggers_left(
    spread_jobs: tuple[LumaSandbox, list[str]],
) -> None:
    """A second wave after the first fully drained gets a fresh poller and still works."""
    _sb, ids = spread_jobs
    first = await asyncio.wait_for(
        asyncio.gather(*(_run_to_end(LumaTrigger([i], poll_interval=POLL)) for i in ids[:50])), timeout=25
    )
    assert active_pollers() == {}
    second = await asyncio.wait_for(
        asyncio.gather(*(_run_to_end(LumaTrigger([i], poll_interval=POLL)) for i in ids[50:])), timeout=25
    )
    assert {e[0]["status"] for e in first + second} == {"success"}
    assert active_pollers() == {}
    assert _poller_tasks() == []
