"""StatusPoller against a real sandbox: WHEN ticks happen and WHICH answer each id gets.

Ticks sit on a clock grid shared by every trigger with the same interval:
``due = (floor(now / step) + 1) * step``; a trigger's first look uses a 1 s grid, and an
``expected_in`` hint that ends before the next regular tick moves the look to the first whole
second after it. The assertions allow a small scheduling slack, never a whole step.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from luma_provider.exceptions import LumaAuthError, LumaError, LumaNotFoundError, LumaServerError
from luma_provider.models import LumaGeneration, LumaState
from luma_provider.sandbox import LumaSandbox
from luma_provider.triggers.poller import PACK_AHEAD, POLL_RETRIES, StatusPoller, active_pollers

pytestmark = [
    pytest.mark.gateway_only(
        "tick timing and batch answers (one /luma/tasks error for every id) are measured on the gateway"
    ),
    pytest.mark.timing,
]

SLACK = 0.3  # event-loop and HTTP latency allowed after a due time
MISSING = "missing-generation-0001"


@pytest.fixture
async def poller(sandbox: LumaSandbox):
    poller = StatusPoller.for_connection("luma_default").acquire()
    yield poller
    await poller.release()


async def timed_status(poller: StatusPoller, ids, interval, **kwargs):
    start = time.time()
    result = await poller.status(tuple(ids), interval, **kwargs)
    return start, time.time(), result


def grid_due(now: float, step: float) -> float:
    return (math.floor(now / step) + 1) * step


async def align(step: float, offset: float) -> None:
    """Sleep until ``offset`` seconds into the current grid slot of ``step`` (next slot if past)."""
    now = time.time()
    target = math.floor(now / step) * step + offset
    if target <= now + 0.01:
        target += step
    await asyncio.sleep(target - now)


class TestWhen:
    async def test_tick_on_the_shared_grid(self, poller: StatusPoller, submit) -> None:
        gen_id = submit()
        await align(0.8, 0.1)  # far from the 0.8 s grid line
        start, end, result = await timed_status(poller, [gen_id], 0.8)
        due = grid_due(start, 0.8)
        assert due <= end + 0.05, "answered before the grid line"
        assert end < due + SLACK, "answered late: not on the 0.8 s grid"
        assert end - start > 0.4  # waited for the grid, not answered at once
        assert isinstance(result[gen_id], LumaGeneration)
        assert poller.cycles == 1

    async def test_same_interval_joins_one_tick(self, poller: StatusPoller, submit, sandbox) -> None:
        a, b = submit("first"), submit("second")
        before = sandbox.stats()["by_route"].get("tasks", 0)
        await align(1.0, 0.1)
        first = asyncio.create_task(poller.status((a,), 1.0))
        await asyncio.sleep(0.3)  # a later trigger, same slot
        second = asyncio.create_task(poller.status((b, a), 1.0))
        results = await asyncio.gather(first, second)
        assert list(results[0]) == [a]  # each trigger gets its own ids only
        assert list(results[1]) == [b, a]
        assert results[0][a] is results[1][a]  # one lookup served both
        assert poller.cycles == 1
        assert sandbox.stats()["by_route"]["tasks"] - before == 1
        assert poller.requests_sent == 1

    async def test_first_look_uses_one_second_grid(self, poller: StatusPoller, submit) -> None:
        gen_id = submit()
        await align(1.0, 0.2)
        start, end, result = await timed_status(poller, [gen_id], 30.0, first=True)
        due = math.floor(start) + 1.0
        assert due <= end + 0.05
        assert end < due + SLACK  # not the 30 s grid
        assert isinstance(result[gen_id], LumaGeneration)

    async def test_first_look_with_short_interval_keeps_it(self, poller: StatusPoller, submit) -> None:
        gen_id = submit()
        await align(0.4, 0.05)
        start, end, _ = await timed_status(poller, [gen_id], 0.4, first=True)
        due = grid_due(start, 0.4)
        assert due <= end + 0.05
        assert end < due + SLACK  # min(interval, 1 s): the 0.4 s grid, not the 1 s one

    async def test_expected_in_looks_early(self, poller: StatusPoller, submit) -> None:
        gen_id = submit()
        await align(1.0, 0.1)
        start, end, _ = await timed_status(poller, [gen_id], 60.0, expected_in=1.2)
        due = math.ceil(start + 1.2)  # first whole second after the estimate
        assert due <= end + 0.05
        assert end < due + SLACK

    async def test_expected_in_zero_is_next_whole_second(self, poller: StatusPoller, submit) -> None:
        gen_id = submit()
        await align(1.0, 0.3)
        start, end, _ = await timed_status(poller, [gen_id], 60.0, expected_in=0.0)
        due = math.floor(start) + 1.0
        assert due <= end + 0.05
        assert end < due + SLACK

    async def test_expected_in_after_the_tick_is_ignored(self, poller: StatusPoller, submit) -> None:
        gen_id = submit()
        await align(0.5, 0.05)
        start, end, _ = await timed_status(poller, [gen_id], 0.5, expected_in=5.0)
        due = grid_due(start, 0.5)
        assert due <= end + 0.05
        assert end < due + SLACK  # the regular tick, not 5 s later

    async def test_negative_expected_in_is_ignored(self, poller: StatusPoller, submit) -> None:
        gen_id = submit()
        await align(2.0, 0.1)
        start, end, _ = await timed_status(poller, [gen_id], 2.0, expected_in=-1.0)
        due = grid_due(start, 2.0)
        assert due <= end + 0.05
        assert end < due + SLACK

    async def test_waiter_due_later_waits_for_its_own_tick(self, poller: StatusPoller, submit) -> None:
        a, b = submit("a"), submit("b")
        await align(1.0, 0.7)
        now = time.time()
        due_a = math.floor(now) + 1.0
        # an interval whose grid line falls 0.1-0.35 s beyond A's tick plus B's packing look-ahead
        # (min(step / 2, PACK_AHEAD), see test_poller_packing.py): too far to join A's tick, even early
        interval = next(
            i / 1000
            for i in range(500, 3000)
            if 0.1 < grid_due(now, i / 1000) - due_a - min(i / 2000, PACK_AHEAD) < 0.35
        )
        first = asyncio.create_task(timed_status(poller, [a], 1.0))
        _, end_b, result_b = await timed_status(poller, [b], interval)
        due_b = grid_due(now, interval)
        _, end_a, _ = await first
        assert due_a <= end_a + 0.05 and end_a < due_a + SLACK
        assert end_b >= due_b - 0.05, "served with an earlier tick"
        assert list(result_b) == [b]
        assert poller.cycles == 2

    async def test_waiter_due_just_after_joins_the_tick(self, poller: StatusPoller, submit) -> None:
        a, b = submit("a"), submit("b")
        await align(1.0, 0.05)
        now = time.time()
        due_a = math.floor(now) + 1.0
        # a grid line 5-40 ms after A's: within the tick slack, so B rides along
        interval = next(i / 1000 for i in range(500, 2000) if 0.005 < grid_due(now, i / 1000) - due_a < 0.04)
        first = asyncio.create_task(timed_status(poller, [a], 1.0))
        _, end_b, result_b = await asyncio.wait_for(timed_status(poller, [b], interval), 3.0)
        await first
        assert end_b < due_a + SLACK
        assert list(result_b) == [b]
        assert poller.cycles == 1

    async def test_earlier_waiter_wakes_the_loop(self, poller: StatusPoller, submit) -> None:
        slow_id, fast_id = submit("slow"), submit("fast")
        await align(1.0, 0.1)
        # a grid line far beyond the fast tick and any look-ahead (packing would pull it in)
        slow_interval = next(i for i in range(30, 60) if grid_due(time.time(), i) - time.time() > 3)
        slow = asyncio.create_task(timed_status(poller, [slow_id], slow_interval))
        await asyncio.sleep(0.05)
        start, end, result = await timed_status(poller, [fast_id], 30.0, first=True)
        assert end < math.floor(start) + 1.0 + SLACK  # not held back by the 30 s waiter
        assert list(result) == [fast_id]
        assert not slow.done()
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        assert poller.waiting_ids == 0


class TestWhichAnswer:
    async def test_unknown_id_gets_not_found(self, poller: StatusPoller, submit) -> None:
        gen_id = submit()
        result = await poller.status((gen_id, MISSING), 0.2)
        assert isinstance(result[gen_id], LumaGeneration)
        assert result[gen_id].id == gen_id
        err = result[MISSING]
        assert type(err) is LumaNotFoundError
        assert (err.status, err.path, err.message) == (404, "/luma/tasks", f"generation {MISSING} not found")

    async def test_batch_error_goes_to_every_id(self, poller: StatusPoller, submit, sandbox) -> None:
        a, b = submit("a"), submit("b")
        sandbox.add_fault("tasks", "status", status=401, times=1)
        result = await poller.status((a, b), 0.2)
        assert type(result[a]) is LumaAuthError
        assert result[a] is result[b]
        assert result[a].status == 401

    async def test_poll_retries_once(self, poller: StatusPoller, submit, sandbox) -> None:
        gen_id = submit()
        assert POLL_RETRIES == 1
        sandbox.add_fault("tasks", "status", status=503, retry_after=0, times=2)
        before = sandbox.stats()["by_route"].get("tasks", 0)
        result = await poller.status((gen_id,), 0.2)
        err = result[gen_id]
        assert type(err) is LumaServerError
        assert (err.status, err.retry_after) == (503, 0.0)
        assert sandbox.stats()["by_route"]["tasks"] - before == 2  # one try + one retry
        # the poller survives a failed cycle
        result = await poller.status((gen_id,), 0.2)
        assert isinstance(result[gen_id], LumaGeneration)

    async def test_one_retry_recovers(self, poller: StatusPoller, submit, sandbox) -> None:
        gen_id = submit()
        sandbox.add_fault("tasks", "status", status=503, retry_after=0, times=1)
        result = await poller.status((gen_id,), 0.2)
        assert isinstance(result[gen_id], LumaGeneration)

    async def test_unexpected_exception_is_contained(self, poller: StatusPoller, submit, caplog) -> None:
        gen_id = submit()
        real = poller.hook.aget_each
        calls = []

        async def broken(ids, **kwargs):
            calls.append(list(ids))
            if len(calls) <= 2:
                raise RuntimeError("boom")
            return await real(ids, **kwargs)

        poller.hook.aget_each = broken  # type: ignore[method-assign]
        with caplog.at_level("WARNING", logger="luma_provider.triggers.poller"):
            first = await poller.status((gen_id, gen_id), 0.2)
            second = await poller.status((gen_id,), 0.2)
            third = await poller.status((gen_id,), 0.2)
        for result in (first, second):
            err = result[gen_id]
            assert type(err) is LumaError
            assert str(err) == "status poll failed: RuntimeError"
        assert isinstance(third[gen_id], LumaGeneration)
        assert calls == [[gen_id], [gen_id], [gen_id]]  # duplicates asked once
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 1  # one traceback per poller, then one line per cycle
        assert "Luma status poll failed unexpectedly again: RuntimeError" in caplog.messages

    async def test_states_are_fresh_per_tick(self, poller: StatusPoller, submit) -> None:
        gen_id = submit()
        states = []
        for _ in range(12):
            result = await poller.status((gen_id,), 0.1)
            states.append(result[gen_id].state)
            if states[-1] is LumaState.COMPLETED:
                break
        assert states[0] in (LumaState.QUEUED, LumaState.RUNNING)
        assert states[-1] is LumaState.COMPLETED


class TestLeases:
    async def test_two_leases(self, sandbox: LumaSandbox, submit) -> None:
        gen_id = submit()
        poller = StatusPoller.for_connection("luma_default")
        assert StatusPoller.for_connection("luma_default") is poller
        poller.acquire().acquire()
        await poller.status((gen_id,), 0.1)
        await poller.release()
        assert list(active_pollers().values()) == [poller]  # one lease left
        assert poller._task is not None and not poller._task.done()
        await poller.release()
        assert active_pollers() == {}
        assert poller._task is None
        assert StatusPoller.for_connection("luma_default") is not poller
        StatusPoller._registry.clear()

    async def test_restarts_after_release(self, sandbox: LumaSandbox, submit) -> None:
        gen_id = submit()
        poller = StatusPoller.for_connection("luma_default").acquire()
        await poller.status((gen_id,), 0.1)
        task = poller._task
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        result = await poller.status((gen_id,), 0.1)  # a dead loop is started again
        assert isinstance(result[gen_id], LumaGeneration)
        assert poller._task is not task
        await poller.release()
