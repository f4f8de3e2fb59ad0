"""LumaTrigger: waits in the triggerer for generations to finish, without a worker slot."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from luma_provider import api
from luma_provider.connection_fields import DEFAULT_CONN_ID
from luma_provider.exceptions import (
    LumaAuthError,
    LumaError,
    LumaGenerationFailed,
    LumaNotFoundError,
    LumaTimeoutError,
    LumaValidationError,
)
from luma_provider.models import LumaGeneration, LumaState, is_generation_id
from luma_provider.triggers.poller import StatusPoller

if TYPE_CHECKING:
    from luma_provider.hooks.luma import LumaHook

#: Event statuses a trigger can emit; ``execute_complete`` methods accept only these.
EVENT_STATUSES = ("success", "failed", "timeout", "error")
DEFAULT_ERROR_BUDGET = 10
AUTH_ERROR_BUDGET = 3
#: Extra time a deferral's timeout allows beyond the trigger's own deadline, so the trigger
#: normally reports the timeout itself (with the states it saw).
DEFER_TIMEOUT_GRACE = 60
#: Polls to wait for a video URL after "completed" (gateways sometimes lag).
NO_URL_GRACE_POLLS = 3


class LumaTrigger(BaseTrigger):
    """Poll Luma generations until all complete, one fails, the deadline passes, or errors persist.

    Status checks go through the process-wide ``StatusPoller`` so many triggers share batch
    requests. Only ids, the connection id, numbers and an absolute deadline are serialized:
    no secret, no payload, and the deadline survives a triggerer restart.

    :param generation_ids: ids to wait for.
    :param luma_conn_id: Airflow connection id of type ``luma``.
    :param poll_interval: seconds between status checks (at least 0.1).
    :param deadline: absolute epoch seconds after which a ``timeout`` event is sent (None: never).
    :param error_budget: consecutive failed polls tolerated before an ``error`` event
        (auth errors: at most ``AUTH_ERROR_BUDGET``).
    :param cancel_on_kill: when a user acts on the deferred task (mark failed/success, clear),
        cancel the generations that are still queued or dreaming (official flavour).
    :param fail_fast: send ``failed`` as soon as one generation fails (default). False: wait
        until every generation has finished, failed or not, and send ``success`` (a batch sorts
        its completed and failed prompts itself).
    """

    def __init__(
        self,
        generation_ids: Sequence[str],
        luma_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        deadline: float | None = None,
        error_budget: int = DEFAULT_ERROR_BUDGET,
        cancel_on_kill: bool = False,
        fail_fast: bool = True,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger is untyped

        self.generation_ids = [api.validate_generation_id(i, "generation_ids") for i in generation_ids]
        self.luma_conn_id = luma_conn_id
        self.poll_interval = api.validate_seconds(poll_interval, "poll_interval")
        if deadline is not None and (
            isinstance(deadline, bool)
            or not isinstance(deadline, (int, float))
            or not math.isfinite(deadline)
        ):
            raise LumaValidationError("deadline", f"must be epoch seconds or None, got {deadline!r}")
        self.deadline = deadline
        self.error_budget = int(error_budget)
        self.cancel_on_kill = bool(cancel_on_kill)
        self.fail_fast = bool(fail_fast)
        #: When this wait first saw each generation finished (gives batches their render time).
        self._finished_at: dict[str, float] = {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "generation_ids": self.generation_ids,
                "luma_conn_id": self.luma_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "error_budget": self.error_budget,
                "cancel_on_kill": self.cancel_on_kill,
                "fail_fast": self.fail_fast,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        poller = StatusPoller.for_connection(self.luma_conn_id).acquire()
        try:
            event = await self._wait(poller)
        finally:  # also on cancellation; released before yielding, not when the generator is closed
            await poller.release()
        yield TriggerEvent(event)  # type: ignore[no-untyped-call]  # untyped in Airflow

    async def on_kill(self) -> None:
        """A user marked the deferred task failed/success or cleared it: stop paying for renders.

        Only with ``cancel_on_kill`` and the official API (gateways have no cancel). Airflow calls
        this on user actions only, never on a triggerer restart or a timeout.
        """
        if not self.cancel_on_kill:
            return
        from luma_provider.hooks.luma import LumaHook

        hook = LumaHook(self.luma_conn_id, max_retries=1)
        try:
            await hook.acancel_unfinished(self.generation_ids, log=self.log)
        finally:
            await hook.aclose()

    async def _wait(self, poller: StatusPoller) -> dict[str, Any]:
        ids = tuple(self.generation_ids)
        started = time.monotonic()
        last_states: dict[str, str] = {}
        errors: list[str] = []
        auth_errors = 0
        no_url_polls = 0
        first = True
        expected_in: float | None = None
        while True:
            if self.deadline is not None and time.time() >= self.deadline:
                return self._event(
                    "timeout", last_states, f"Timed out waiting for {self._describe(last_states)}"
                )
            results = await poller.status(ids, self.poll_interval, first=first, expected_in=expected_in)
            first, expected_in = False, None
            failures = {i: r for i, r in results.items() if isinstance(r, LumaError)}
            if failures:
                err = next(iter(failures.values()))
                auth_errors = auth_errors + 1 if isinstance(err, LumaAuthError) else 0
                errors.append(f"{type(err).__name__}: {err}")
                self._log_error(err, len(errors))
                if (
                    auth_errors >= min(AUTH_ERROR_BUDGET, self.error_budget)
                    or len(errors) >= self.error_budget
                ):
                    kind = "authentication" if auth_errors else "status"
                    return self._event(
                        "error",
                        last_states,
                        f"Gave up after {len(errors)} consecutive {kind} errors; last: {errors[-1]}",
                    )
                continue
            errors.clear()
            auth_errors = 0
            generations: list[LumaGeneration] = [results[i] for i in ids]  # type: ignore[misc]
            self._log_transitions(generations, last_states, started)
            failed = [g for g in generations if g.state == LumaState.FAILED]
            if failed and self.fail_fast:
                reasons = "; ".join(
                    f"{g.id}: {g.failure_reason or 'no failure_reason given'}" for g in failed
                )
                return self._event("failed", last_states, f"Luma generation failed: {reasons}")
            # The gateway's estimate picks the next look when it is sooner than the next tick.
            estimates = [g.estimate_wait_seconds for g in generations if not g.is_terminal]
            known = [e for e in estimates if e is not None]
            expected_in = max(known) if known and len(known) == len(estimates) else None
            if all(g.is_terminal for g in generations):
                completed = [g for g in generations if g.state == LumaState.COMPLETED]
                # An image generation is complete without a video URL.
                if any(not g.result_url for g in completed) and no_url_polls < NO_URL_GRACE_POLLS:
                    no_url_polls += 1
                    self.log.info(
                        "Completed but no video URL yet; checking again (%d/%d)",
                        no_url_polls,
                        NO_URL_GRACE_POLLS,
                    )
                    continue
                summary = f"{len(completed)} generation(s) completed" + (
                    f", {len(failed)} failed" if failed else ""
                )
                return self._event("success", last_states, summary)

    def _event(self, status: str, states: dict[str, str], message: str) -> dict[str, Any]:
        # No URLs or payloads: the triggerer logs events at INFO; the worker refetches.
        return {
            "status": status,
            "generation_ids": self.generation_ids,
            "states": dict(states),
            "finished_at": dict(self._finished_at),
            "message": message,
        }

    def _log_transitions(
        self, generations: list[LumaGeneration], last: dict[str, str], started: float
    ) -> None:
        elapsed = time.monotonic() - started
        for gen in generations:
            if gen.is_terminal:
                self._finished_at.setdefault(gen.id, round(time.time(), 1))
            state = gen.state.value
            if last.get(gen.id) != state:
                estimate = (
                    f", estimated {gen.estimate_wait_seconds:.0f}s left" if gen.estimate_wait_seconds else ""
                )
                self.log.info(
                    "Generation %s is %s (raw %r) after %.0fs%s",
                    gen.id,
                    state,
                    gen.raw_state,
                    elapsed,
                    estimate,
                )
                last[gen.id] = state

    def _log_error(self, err: LumaError, count: int) -> None:
        if count == 1 or isinstance(err, LumaNotFoundError):
            self.log.warning("Status check failed (%s); will retry in %.0fs", err, self.poll_interval)
        else:
            self.log.warning("Status check failed again (%d in a row): %s", count, type(err).__name__)

    def _describe(self, states: dict[str, str]) -> str:
        pending = [
            f"{i} ({states.get(i, 'not seen')})" for i in self.generation_ids if states.get(i) != "completed"
        ]
        return ", ".join(pending) or "generations"


def generations_from_event(
    hook: LumaHook, ids: list[str], event: dict[str, Any] | None
) -> list[LumaGeneration]:
    """Worker side of a ``LumaTrigger`` event: allow-list it, refetch, raise the right error.

    :raises LumaTimeoutError: for a ``timeout`` event (sensors turn it into their own timeout).
    """
    status = check_event(ids, event)
    generations = hook.get_generations(ids)  # events carry no URLs: refetch on the worker
    raise_if_failed(generations)
    if status == "failed":  # the trigger saw a failure the refetch did not: trust the trigger
        raise LumaError(_message(event))
    return generations


def finished_at_from_event(event: dict[str, Any] | None) -> dict[str, float]:
    """The event's ``finished_at`` (id -> epoch seconds), allow-listed: valid ids, finite numbers."""
    raw = (event or {}).get("finished_at")
    if not isinstance(raw, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in raw.items()
        if isinstance(k, str)
        and is_generation_id(k)
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
    }


def check_event(ids: list[str], event: dict[str, Any] | None) -> str:
    """Allow-list a ``LumaTrigger`` event; raise for ``timeout``/``error``, else return its status.

    :raises LumaTimeoutError: for a ``timeout`` event (sensors turn it into their own timeout).
    """
    status = (event or {}).get("status")
    if event is None or status not in EVENT_STATUSES:
        raise LumaError(f"Unexpected trigger event for generations {ids}: {str(event)[: api.DETAIL_LIMIT]}")
    if status == "timeout":
        raise LumaTimeoutError(_message(event))
    if status == "error":
        raise LumaError(_message(event))
    return str(status)


def _message(event: dict[str, Any] | None) -> str:
    return str((event or {}).get("message", ""))[: api.MESSAGE_LIMIT * 2]


def raise_if_failed(generations: list[LumaGeneration]) -> None:
    """Raise ``LumaGenerationFailed`` (id + failure_reason) for the first failed generation."""
    for gen in generations:
        if gen.state == LumaState.FAILED:
            raise LumaGenerationFailed(gen.id, gen.failure_reason)
