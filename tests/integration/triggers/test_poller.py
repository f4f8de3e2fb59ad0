"""StatusPoller: many LumaTriggers in one loop share few requests, and nothing leaks.

Runs in both API flavours: a gateway is polled in batches (``POST /luma/tasks``), the official
API with one ``GET /generations/{id}`` per id and cycle.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from airflow_helpers import connection_json
from flavours import conn_extra, is_official, status_route

from luma_provider.hooks.luma import LumaHook
from luma_provider.sandbox import LumaSandbox
from luma_provider.triggers.luma import LumaTrigger
from luma_provider.triggers.poller import StatusPoller, active_pollers


async def first_event(trigger: LumaTrigger) -> dict[str, Any]:
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1
    return events[0]


def set_conn(monkeypatch, conn_id: str, sb: LumaSandbox, **extra: Any) -> None:
    conn = connection_json(sb.url, key=sb.api_key, max_retries=2, **conn_extra(sb), **extra)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn)


class TestCoalescing:
    async def test_fifty_triggers_share_batch_requests(self, sandbox: LumaSandbox, monkeypatch) -> None:
        batch_size = 20
        set_conn(monkeypatch, "luma_default", sandbox, batch_size=batch_size)
        hook = LumaHook()
        ids = [hook.submit_generation(f"scene number {n}").id for n in range(50)]
        route = status_route(sandbox)
        before = sandbox.stats()["by_route"].get(route, 0)

        poller = StatusPoller.for_connection("luma_default")  # the instance every trigger will share
        events = await asyncio.gather(*(first_event(LumaTrigger([i], poll_interval=0.5)) for i in ids))

        # Every trigger got its own generation back, completed.
        assert [e["generation_ids"] for e in events] == [[i] for i in ids]
        assert all(
            e["status"] == "success" and e["states"] == {e["generation_ids"][0]: "completed"} for e in events
        )
        status_requests = sandbox.stats()["by_route"][route] - before
        # Gateway: one batch per chunk of ids; official (no batch route): one GET per id per cycle.
        per_cycle = 50 if is_official(sandbox) else math.ceil(50 / batch_size)
        assert poller.cycles >= 1
        assert status_requests <= poller.cycles * per_cycle, (status_requests, poller.cycles)
        assert status_requests == poller.requests_sent
        if is_official(sandbox):
            # Shared, not one loop per trigger: every id looked at, and at most once per cycle (above).
            assert status_requests >= 50
            assert sandbox.stats()["by_route"].get("tasks", 0) == 0
        else:
            assert status_requests < 50  # fewer than ONE request per trigger over the whole wait
            assert sandbox.stats()["by_route"].get("get", 0) == 0
        assert active_pollers() == {}

    async def test_different_intervals_share_one_poller(self, sandbox: LumaSandbox, submit) -> None:
        fast_ids = [submit(f"fast {n}") for n in range(3)]
        slow_ids = [submit(f"slow {n}") for n in range(3)]
        triggers = [LumaTrigger([i], poll_interval=0.2) for i in fast_ids] + [
            LumaTrigger([i], poll_interval=0.7) for i in slow_ids
        ]
        tasks = [asyncio.create_task(first_event(t)) for t in triggers]
        await asyncio.sleep(0.05)
        assert [key[1] for key in active_pollers()] == ["luma_default"]
        events = await asyncio.gather(*tasks)

        assert [e["generation_ids"][0] for e in events] == fast_ids + slow_ids
        assert {e["status"] for e in events} == {"success"}

    async def test_two_connections_two_gateways(self, flavour, luma_sandbox_factory, monkeypatch) -> None:
        sb_a = luma_sandbox_factory(
            api_key="sk-gateway-a-0001", api_flavour=flavour, queue_seconds=0.1, process_seconds=0.2
        )
        sb_b = luma_sandbox_factory(
            api_key="sk-gateway-b-0002", api_flavour=flavour, queue_seconds=0.1, process_seconds=0.4
        )
        set_conn(monkeypatch, "luma_a", sb_a)
        set_conn(monkeypatch, "luma_b", sb_b)
        a_ids = [LumaHook("luma_a").submit_generation(f"a {n}").id for n in range(2)]
        b_ids = [LumaHook("luma_b").submit_generation(f"b {n}").id for n in range(2)]

        tasks = [
            asyncio.create_task(first_event(LumaTrigger([i], luma_conn_id="luma_a", poll_interval=0.3)))
            for i in a_ids
        ]
        tasks += [
            asyncio.create_task(first_event(LumaTrigger([i], luma_conn_id="luma_b", poll_interval=0.3)))
            for i in b_ids
        ]
        await asyncio.sleep(0.05)
        assert sorted(key[1] for key in active_pollers()) == ["luma_a", "luma_b"]
        events = await asyncio.gather(*tasks)

        assert [e["generation_ids"][0] for e in events] == a_ids + b_ids
        assert {e["status"] for e in events} == {"success"}
        # Each gateway was asked only about its own jobs, and authenticated with its own key.
        for sb in (sb_a, sb_b):
            stats = sb.stats()
            assert stats["by_status"].get("404", 0) == 0 and stats["by_status"].get("401", 0) == 0
            assert stats["by_route"][status_route(sb)] >= 1

    @pytest.mark.gateway_only("the POST /luma/tasks batch route exists only on gateways")
    async def test_batch_route_absent_falls_back_to_gets(self, sandbox: LumaSandbox, submit) -> None:
        sandbox.configure(batch_route=False)
        ids = [submit(f"clip {n}") for n in range(3)]
        events = await asyncio.gather(*(first_event(LumaTrigger([i], poll_interval=0.3)) for i in ids))

        assert [e["generation_ids"][0] for e in events] == ids
        assert {e["status"] for e in events} == {"success"}
        by_route = sandbox.stats()["by_route"]
        assert by_route["tasks"] == 1  # tried once, remembered as absent
        assert by_route["get"] >= 3


class TestCancellation:
    async def test_cancelled_triggers_leave_no_waiters_and_no_poller(
        self, sandbox: LumaSandbox, submit
    ) -> None:
        ids = [submit(f"slow scene {n} #slow") for n in range(6)]  # 2.5 s each
        poller = StatusPoller.for_connection("luma_default")
        tasks = [asyncio.create_task(first_event(LumaTrigger([i], poll_interval=0.3))) for i in ids]
        await asyncio.sleep(0.4)
        for _ in range(50):  # not mid-tick: a tick being served holds the ids outside the queue
            if poller.waiting_ids == 6:
                break
            await asyncio.sleep(0.01)
        assert poller.waiting_ids == 6  # all six parked until the next tick

        for task in tasks[:4]:
            task.cancel()
        results = await asyncio.gather(*tasks[:4], return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert poller.waiting_ids <= 2  # the cancelled triggers' ids are gone at once
        assert [key[1] for key in active_pollers()] == ["luma_default"]  # two triggers still lease it

        events = await asyncio.gather(*tasks[4:])
        assert [e["generation_ids"][0] for e in events] == ids[4:]
        assert {e["status"] for e in events} == {"success"}
        assert poller.waiting_ids == 0
        assert active_pollers() == {}
        assert poller._task is None  # background loop stopped with the last lease

    async def test_cancel_all_mid_wait(self, sandbox: LumaSandbox, submit) -> None:
        ids = [submit(f"slow {n} #slow") for n in range(3)]
        poller = StatusPoller.for_connection("luma_default")
        tasks = [asyncio.create_task(first_event(LumaTrigger([i], poll_interval=0.3))) for i in ids]
        await asyncio.sleep(0.4)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

        assert poller.waiting_ids == 0
        assert active_pollers() == {}
        requests_after_cancel = sandbox.stats()["requests"]
        await asyncio.sleep(0.7)  # two more ticks: nobody must poll for the cancelled triggers
        assert sandbox.stats()["requests"] == requests_after_cancel
