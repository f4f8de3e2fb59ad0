"""One status poller per (event loop, connection), shared by every ``LumaTrigger`` on it.

Hundreds of deferred sensors in one triggerer would otherwise send one request each per poll.
Here a trigger asks ``await poller.status(ids, interval)``; the answer arrives at the next tick
of a clock grid shared by all triggers with that interval, and each tick sends one
``POST /luma/tasks`` per chunk of ids (single GETs when the gateway lacks the route) over one
keep-alive session. So the request count per cycle grows with ``ids / batch_size``, not with
the number of triggers.

Packing: when the last chunk of a tick has room, it is filled with the ids of waiters due
within a short look-ahead (``min(step / 2, PACK_AHEAD)``, never before a gateway's completion
estimate), instead of sending a partial chunk now and another one a moment later. Such a waiter
is answered early, never late, and counts as served at its due time: the same trigger's next
look is scheduled from that due time, so it is not looked at twice in one cycle. Without the
batch route (official API, gateways lacking it) every id costs one GET anyway: nothing is pulled.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from luma_provider.exceptions import LumaError

if TYPE_CHECKING:
    from luma_provider.hooks.luma import LumaHook
    from luma_provider.models import LumaGeneration

log = logging.getLogger(__name__)

#: Waiters due within this many seconds join the current tick (timer wake-ups are never exact).
TICK_SLACK = 0.05
#: Longest look-ahead for packing a tick's last chunk (a waiter's own is ``min(step / 2, this)``).
PACK_AHEAD = 1.0
#: Retries inside one poll; the next poll is itself the retry, so keep this small.
POLL_RETRIES = 1


@dataclass(eq=False)  # identity: list membership checks must not compare fields (O(n²) at scale)
class _Waiter:
    ids: tuple[str, ...]
    due: float
    #: The earliest moment a tick may serve it to fill its last chunk (packing).
    earliest: float
    #: ``(ids, interval)``: names the trigger's next look, scheduled from ``due`` if served early.
    key: tuple[tuple[str, ...], float]
    future: asyncio.Future[dict[str, LumaGeneration | LumaError]] = field(repr=False)


class StatusPoller:
    """Coalesces status lookups of many triggers into few batch requests.

    Use ``StatusPoller.for_connection(conn_id)`` inside a running event loop; each trigger
    holds a lease (``acquire``/``release``) so the poller and its HTTP session close when the
    last trigger leaves.
    """

    _registry: ClassVar[dict[tuple[int, str], StatusPoller]] = {}

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.hook = _make_hook(conn_id)
        self._waiters: list[_Waiter] = []
        #: Waiters answered before their due time (packing): key -> the due time they were served for.
        self._served_early: dict[tuple[tuple[str, ...], float], float] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._leases = 0
        self.requests_sent = 0  # batch/GET rounds, for benchmarks and tests
        self._traceback_logged = False
        self.cycles = 0

    @classmethod
    def for_connection(cls, conn_id: str) -> StatusPoller:
        key = (id(asyncio.get_running_loop()), conn_id)
        poller = cls._registry.get(key)
        if poller is None:
            poller = cls._registry[key] = cls(conn_id)
        return poller

    def acquire(self) -> StatusPoller:
        self._leases += 1
        return self

    async def release(self) -> None:
        self._leases -= 1
        if self._leases > 0:
            return
        key = (id(asyncio.get_running_loop()), self.conn_id)
        if self._registry.get(key) is self:
            del self._registry[key]
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._served_early.clear()
        await self.hook.aclose()

    async def status(
        self, ids: tuple[str, ...], interval: float, *, first: bool = False, expected_in: float | None = None
    ) -> dict[str, LumaGeneration | LumaError]:
        """Fresh status of ``ids`` at the next tick: a generation or the error for each id.

        :param interval: poll interval; ticks sit on a grid of this step, shared by all triggers.
        :param first: a trigger's first look; served on a fine 1 s grid for fast feedback.
        :param expected_in: the gateway's ``estimate_wait_seconds``: when it ends before the next
            regular tick, look on the 1 s grid just after it instead (still shared by triggers).

        A tick may answer up to ``min(step / 2, PACK_AHEAD)`` before the due time to fill its
        last batch (never before ``expected_in`` ends); the next look of the same ``ids`` and
        ``interval`` is then scheduled as if this one had been answered at its due time.
        """
        ids = tuple(ids)
        key = (ids, interval)
        now = time.time()
        # Answered early last time: count from the due time it was served for (once per cycle).
        # Kept until that time passes: triggers with the same ids and interval share the tick.
        served_for = None if first else self._served_early.get(key)
        base = max(now, served_for + 1e-3) if served_for is not None else now
        step = min(interval, 1.0) if first else interval
        due = (math.floor(base / step) + 1) * step
        earliest = due - min(step / 2, PACK_AHEAD)
        if expected_in is not None and expected_in >= 0 and now + expected_in < due:
            step = 1.0  # the 1 s grid just after the estimate; never looked at before it ends
            due = max(math.ceil(now + expected_in), math.floor(base) + 1.0)
            earliest = max(due - min(step / 2, PACK_AHEAD), now + expected_in)
        waiter = _Waiter(ids, due, earliest, key, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._ensure_running()
        self._wakeup.set()
        try:
            return await waiter.future
        finally:
            # Cancellation (timeout, task cleared) must not leave the ids behind.
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"luma-poller-{self.conn_id}"
            )

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            if not self._waiters:
                await self._wakeup.wait()
                continue
            delay = min(w.due for w in self._waiters) - time.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
                    continue  # an earlier waiter may have arrived
                except TimeoutError:
                    pass
            size = await self._pack_size()
            now = time.time()
            batch = [w for w in self._waiters if w.due <= now + TICK_SLACK and not w.future.done()]
            self._waiters = [w for w in self._waiters if w.due > now + TICK_SLACK and not w.future.done()]
            if self._served_early:  # forget early answers whose due time has passed
                self._served_early = {k: d for k, d in self._served_early.items() if d > now}
            if batch and size:
                batch += self._pull_early(batch, size, now)
            if batch:
                await self._serve(batch)

    async def _pack_size(self) -> int | None:
        """Ids per batch request, or None when each id costs its own GET (nothing to pack)."""
        try:
            settings = await self.hook.aget_settings()
        except Exception:  # _serve reports it to every waiter
            return None
        if self.hook._per_id_gets(settings):
            return None
        return settings.batch_size

    def _pull_early(self, batch: list[_Waiter], size: int, now: float) -> list[_Waiter]:
        """Waiters due soon whose ids fit in the room left in the tick's last chunk of ``size``.

        Earliest due first; a waiter whose new ids do not fit waits for its own tick. The pulled
        waiters leave the queue, and their due times are remembered (see ``status``).
        """
        wanted = {i for w in batch for i in w.ids}
        room = -len(wanted) % size
        candidates = sorted(
            (w for w in self._waiters if w.earliest <= now + TICK_SLACK and not w.future.done()),
            key=lambda w: w.due,
        )
        pulled: list[_Waiter] = []
        for w in candidates:
            new = {i for i in w.ids if i not in wanted}
            if len(new) > room:
                continue
            room -= len(new)
            wanted |= new
            pulled.append(w)
            self._served_early[w.key] = max(w.due, self._served_early.get(w.key, w.due))
        if pulled:
            chosen = set(map(id, pulled))
            self._waiters = [w for w in self._waiters if id(w) not in chosen]
        return pulled

    async def _serve(self, batch: list[_Waiter]) -> None:
        wanted = list(dict.fromkeys(i for w in batch for i in w.ids))
        self.cycles += 1
        results: dict[str, LumaGeneration | LumaError] = {}
        try:
            before = self.hook.requests_sent
            # Per id: without a batch route one failed GET must not fail every other waiter.
            results = await self.hook.aget_each(wanted)
            self.requests_sent += self.hook.requests_sent - before
        except LumaError as err:
            results = dict.fromkeys(wanted, err)
        except Exception as err:  # never let one bad cycle kill the poller for everyone
            # One traceback per poller, not one per cycle: a broken gateway repeats itself.
            if not self._traceback_logged:
                log.exception("Luma status poll failed unexpectedly")
                self._traceback_logged = True
            else:
                log.warning("Luma status poll failed unexpectedly again: %s", type(err).__name__)
            results = dict.fromkeys(wanted, LumaError(f"status poll failed: {type(err).__name__}"))
        for w in batch:
            if not w.future.done():
                w.future.set_result({i: results[i] for i in w.ids})

    @property
    def waiting_ids(self) -> int:
        """Ids currently waiting for a tick (0 once every trigger has left: no leak)."""
        return sum(len(w.ids) for w in self._waiters)


def _make_hook(conn_id: str) -> LumaHook:
    from luma_provider.hooks.luma import LumaHook

    return LumaHook(conn_id, max_retries=POLL_RETRIES)


def active_pollers() -> dict[tuple[int, str], StatusPoller]:
    """The live pollers of this process (for tests and diagnostics)."""
    return dict(StatusPoller._registry)
