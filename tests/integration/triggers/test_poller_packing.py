"""StatusPoller packing against a real sandbox: a tick fills its last batch with waiters due soon.

Waiters due at slightly different moments (other intervals' grids, first looks, estimates) used to
be served each on its own tick, one partial ``POST /luma/tasks`` chunk each. Now, when a tick's
last chunk has room, waiters due within their look-ahead (``min(step / 2, PACK_AHEAD)``, never
before a gateway estimate) ride along early, so a cycle costs ``ceil(ids / batch_size)`` requests.
An early answer is never repeated at the due time: the next look counts from that due time.
Without a batch route (official API, gateways lacking it) nobody is served early.

Requests are counted by the sandbox per route (never mocked) and cross-checked with the poller.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from typing import Any

import pytest
from airflow_helpers import connection_json
from flavours import conn_extra, is_official, status_route

from luma_provider.models import LumaGeneration
from luma_provider.sandbox import LumaSandbox
from luma_provider.triggers.poller import PACK_AHEAD, TICK_SLACK, StatusPoller

pytestmark = pytest.mark.timing

SLACK = 0.3  # event-loop and HTTP latency allowed after a due time
EARLY = 0.05  # timer and clock slack allowed before a due time


@pytest.fixture
async def poller(sandbox: LumaSandbox):
    poller = StatusPoller.for_connection("luma_default").acquire()
    yield poller
    await poller.release()


def grid_due(now: float, step: float) -> float:
    """The poller's grid line after ``now`` (same float arithmetic)."""
    return (math.floor(now / step) + 1) * step


def ahead(step: float) -> float:
    return min(step / 2, PACK_AHEAD)


def interval_due_at(
    now: float, target: float, *, lo: float = 1.0, hi: float = 3.0, tol: float = 0.01
) -> float:
    """An interval (ms steps in ``lo..hi``) whose next grid line after ``now`` is ``target`` ± ``tol``."""
    for ms in range(round(lo * 1000), round(hi * 1000)):
        if abs(grid_due(now, ms / 1000) - target) <= tol:
            return ms / 1000
    raise AssertionError(f"no interval in {lo}..{hi} s has a grid line at {target - now:.3f} s from now")


async def align(offset: float) -> float:
    """Sleep until ``offset`` seconds into the next whole second; return that second's start."""
    now = time.time()
    target = math.floor(now) + offset
    if target <= now + 0.01:
        target += 1.0
    await asyncio.sleep(target - now)
    return math.floor(target)


def status_requests(sb: LumaSandbox) -> int:
    return int(sb.stats()["by_route"].get(status_route(sb), 0))


class Timed:
    """One ``poller.status`` call with its due time and when its answer arrived."""

    def __init__(self, poller: StatusPoller, ids: Iterable[str], interval: float, **kwargs: Any) -> None:
        self.ids = tuple(ids)
        self.interval = interval
        self.due = grid_due(time.time(), interval)
        self.task = asyncio.create_task(self._run(poller, kwargs))
        self.end = math.nan
        self.result: dict[str, Any] = {}

    async def _run(self, poller: StatusPoller, kwargs: dict[str, Any]) -> None:
        self.result = await poller.status(self.ids, self.interval, **kwargs)
        self.end = time.time()


async def settle(waits: list[Timed]) -> None:
    await asyncio.wait_for(asyncio.gather(*(w.task for w in waits)), timeout=10)
    for w in waits:
        assert list(w.result) == list(w.ids)  # each waiter gets its own ids only
        assert all(isinstance(w.result[i], LumaGeneration) for i in w.ids)
        assert w.end < w.due + SLACK, f"answered {w.end - w.due:.3f} s after its due time"


def set_conn(monkeypatch: pytest.MonkeyPatch, sb: LumaSandbox, **extra: Any) -> None:
    conn = connection_json(sb.url, key=sb.api_key, max_retries=2, **conn_extra(sb), **extra)
    monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", conn)


async def test_spread_waiters_fill_whole_chunks(poller: StatusPoller, submit, sandbox: LumaSandbox) -> None:
    """150 waiters due over half a second, 30 per moment: 2 batch requests instead of 5.

    Gateway: the first tick serves the 30 due plus 70 due within the next 0.4 s (one full
    chunk of 100); the second serves the last 50. Official API: one GET per id, each waiter on
    its own tick, nobody early.
    """
    ids = [submit(f"packed {n}") for n in range(150)]
    assert (await poller.hook.aget_settings()).batch_size == 100
    second = await align(0.5)
    now = time.time()
    offsets = (0.0, 0.12, 0.24, 0.36, 0.48)  # spread over half a second after a whole second
    intervals = [interval_due_at(now, second + 1.0 + off) for off in offsets]
    assert len(set(intervals)) == len(intervals)
    before = status_requests(sandbox)
    sent_before = poller.requests_sent

    waits = [Timed(poller, [gen_id], intervals[n // 30]) for n, gen_id in enumerate(ids)]
    await settle(waits)

    sent = status_requests(sandbox) - before
    assert sent == poller.requests_sent - sent_before
    if is_official(sandbox):
        assert sent == 150  # each id once: no batch route, nothing to pack
        for w in waits:
            assert w.end >= w.due - EARLY, "served early without a batch route"
        return
    assert sent == 2 == math.ceil(150 / 100)  # was 5: one partial chunk per moment
    assert sandbox.stats()["by_route"].get("get", 0) == 0
    assert poller.cycles == 2
    for w in waits:
        assert w.end >= w.due - ahead(w.interval) - TICK_SLACK - EARLY, "served before its look-ahead"
    # 0.24 s and more early: the 30 + 10 due last that filled the first chunk (+ HTTP latency slack)
    assert len([w for w in waits if w.end < w.due - 0.15]) >= 40


@pytest.mark.gateway_only("packing applies to batch requests, which only gateways have")
async def test_early_answer_is_not_repeated_at_its_due_time(
    poller: StatusPoller, submit, sandbox: LumaSandbox
) -> None:
    """B rides along with A's tick 0.3 s early; its next look is one interval after its due time."""
    a, b = submit("a"), submit("b")
    second = await align(0.4)
    now = time.time()
    interval_b = interval_due_at(now, second + 1.3)
    before = status_requests(sandbox)

    first_a = Timed(poller, [a], 1.0)
    first_b = Timed(poller, [b], interval_b)
    await settle([first_a, first_b])
    again_b = Timed(poller, [b], interval_b)  # the trigger's next look, right after its answer
    again_b.due = first_b.due + interval_b  # scheduled from the due time it was served for
    await settle([again_b])

    assert status_requests(sandbox) - before == poller.requests_sent == 2  # was 3
    assert poller.cycles == 2  # A+B early, then B's next cycle: no tick at B's first due time
    assert first_a.due == second + 1.0
    assert first_b.end < first_b.due - 0.2, "not served early with A's tick"
    assert abs(first_b.end - first_a.end) < 0.05  # one tick served both
    assert again_b.end >= again_b.due - ahead(interval_b) - TICK_SLACK - EARLY
    assert again_b.end > first_b.due + 0.3, "looked at twice in one cycle"


@pytest.mark.gateway_only("packing applies to batch requests, which only gateways have")
async def test_early_answer_then_estimate_looks_after_its_due_time(
    poller: StatusPoller, submit, sandbox: LumaSandbox
) -> None:
    """B, due 0.3 s after the next whole second, is answered early with A's tick before it. An
    estimate that ends at once then means the first whole second after B's due time, not the one
    right after the early answer (that would be a second look in B's cycle)."""
    a, b = submit("a"), submit("b")
    second = await align(0.3)
    now = time.time()
    first = [
        Timed(poller, [a], interval_due_at(now, second + 0.9)),
        Timed(poller, [b], interval_due_at(now, second + 1.2)),
    ]
    await settle(first)
    assert first[1].end < first[1].due - 0.2, "not served early with A's tick"
    assert first[1].end < second + 1.0

    again = Timed(poller, [b], first[1].interval, expected_in=0.0)
    again.due = second + 2.0  # not second + 1: B's look for second + 1.2 was already served
    await settle([again])
    assert again.end >= again.due - EARLY, "looked at twice in one cycle"
    assert poller.cycles == 2


@pytest.mark.gateway_only("packing applies to batch requests, which only gateways have")
async def test_never_earlier_than_the_estimate(poller: StatusPoller, submit, sandbox: LumaSandbox) -> None:
    """X's tick 0.4 s before a whole second pulls the 1 s-grid waiter D, but not C, whose estimate
    ends after that tick (looking before the gateway expects the video would be wasted)."""
    x, c, d = submit("x"), submit("c"), submit("d")
    second = await align(0.2)
    now = time.time()
    interval_x = interval_due_at(now, second + 0.6)
    estimated_end = second + 0.75
    far = next(i for i in range(60, 120) if grid_due(now, i) - now > 10)  # regular tick far away

    tick = Timed(poller, [x], interval_x)
    pulled = Timed(poller, [d], 1.0)  # due second + 1, look-ahead 0.5 s
    held = Timed(poller, [c], far, expected_in=estimated_end - time.time())
    held.due = second + 1.0  # first whole second after the estimate
    await settle([tick, pulled, held])

    assert pulled.due == second + 1.0
    assert abs(pulled.end - tick.end) < 0.05 and pulled.end < pulled.due - 0.2  # rode along early
    assert held.end >= estimated_end, "looked before the gateway's estimate"
    assert held.end >= held.due - EARLY
    assert poller.cycles == 2


@pytest.mark.gateway_only("packing applies to batch requests, which only gateways have")
async def test_only_waiters_that_fit_ride_along(
    poller: StatusPoller, submit, sandbox: LumaSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """batch_size 4: A's 3 ids leave room for 1. B (2 new ids) waits for its own tick; C (1 id)
    fills the room; E (only ids already asked for) costs nothing and rides along too."""
    set_conn(monkeypatch, sandbox, batch_size=4)
    a_ids = [submit(f"a{n}") for n in range(3)]
    b_ids = [submit("b0"), submit("b1")]
    c_id = submit("c")
    second = await align(0.4)
    now = time.time()
    before = status_requests(sandbox)

    a = Timed(poller, a_ids, 1.0)
    b = Timed(poller, b_ids, interval_due_at(now, second + 1.1))
    c = Timed(poller, [c_id], interval_due_at(now, second + 1.2))
    e = Timed(poller, [a_ids[0]], interval_due_at(now, second + 1.3))
    await settle([a, b, c, e])

    assert (await poller.hook.aget_settings()).batch_size == 4
    assert status_requests(sandbox) - before == poller.requests_sent == 2  # was 4
    assert poller.cycles == 2
    for rider in (c, e):
        assert abs(rider.end - a.end) < 0.05 and rider.end < rider.due - 0.1
    assert b.end >= b.due - EARLY, "pulled although its ids did not fit"
    assert e.result[a_ids[0]] is a.result[a_ids[0]]  # one lookup answered both


@pytest.mark.gateway_only("a gateway without POST /luma/tasks; the official API is covered above")
async def test_batch_route_absent_nobody_early(poller: StatusPoller, submit, sandbox: LumaSandbox) -> None:
    """One GET per id anyway: packing would save nothing, so each waiter keeps its own tick."""
    sandbox.configure(batch_route=False)
    a, b = submit("a"), submit("b")
    await poller.status((a,), 0.2)  # learns that the route is absent
    second = await align(0.4)
    now = time.time()
    waits = [Timed(poller, [a], 1.0), Timed(poller, [b], interval_due_at(now, second + 1.3))]
    await settle(waits)
    assert waits[1].end >= waits[1].due - EARLY, "served early without a batch route"
    assert poller.cycles == 3
    assert sandbox.stats()["by_route"]["tasks"] == 1  # tried once, remembered as absent
