"""Bounded request statistics for ``GET /_sandbox/stats``.

Counters are O(1) per request and the recent-request log is a fixed-size deque, so
the sandbox can take thousands of polls per second for hours. The Authorization
header is never stored: only whether it was accepted.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

RECENT_LIMIT = 500


class Stats:
    """Request counts per route and status, plus the last :data:`RECENT_LIMIT` requests."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.submissions = 0
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_LIMIT)
        #: Requests being handled now, and the most ever handled at once, per route: shows
        #: whether a client keeps its concurrency bound.
        self.in_flight: Counter[str] = Counter()
        self.peak_in_flight: Counter[str] = Counter()
        #: Official flavour: every ``callback_url`` POST attempt (the last RECENT_LIMIT of them).
        self.callback_attempts = 0
        self.callbacks: deque[dict[str, Any]] = deque(maxlen=RECENT_LIMIT)

    def begin(self, route: str) -> None:
        """A request for ``route`` started (``record`` ends it)."""
        self.in_flight[route] += 1
        self.peak_in_flight[route] = max(self.peak_in_flight[route], self.in_flight[route])

    def record(
        self,
        *,
        method: str,
        path: str,
        route: str,
        status: int | str,
        auth_ok: bool | None,
        fault: str | None = None,
    ) -> None:
        """Count one finished request; ``status`` is ``"reset"`` when the connection was dropped."""
        self.total += 1
        if self.in_flight[route] > 0:
            self.in_flight[route] -= 1
        self.by_route[route] += 1
        self.by_status[str(status)] += 1
        if fault:
            self.faults[fault] += 1
        self.recent.append(
            {
                "time": round(time.time(), 3),
                "method": method,
                "path": path,  # path only: query strings are not logged
                "route": route,
                "status": status,
                "auth_ok": auth_ok,
                "fault": fault,
            }
        )

    def record_callback(
        self,
        *,
        url: str,
        generation_id: str,
        state: str,
        attempt: int,
        status: int | None,
        error: str | None,
    ) -> None:
        """Count one callback POST; ``status`` is None when it got no HTTP answer (``error`` says why)."""
        self.callback_attempts += 1
        self.callbacks.append(
            {
                "time": round(time.time(), 3),
                "url": url,  # without its query string, like ``path`` above
                "generation_id": generation_id,
                "state": state,
                "attempt": attempt,
                "status": status,
                "error": error,
            }
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.total,
            "submissions": self.submissions,
            "by_route": dict(self.by_route),
            "by_status": dict(self.by_status),
            "faults_applied": dict(self.faults),
            "peak_in_flight": dict(self.peak_in_flight),
            "recent": list(self.recent),
            "callback_attempts": self.callback_attempts,
            "callbacks": list(self.callbacks),
        }
