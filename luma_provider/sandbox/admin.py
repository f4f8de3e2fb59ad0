"""Control a sandbox running in another process through its ``/_sandbox/`` routes.

Uses only :mod:`urllib` so it works anywhere (an ``airflow dags test`` subprocess,
a Makefile helper, a notebook) without extra dependencies.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, cast


class SandboxAdmin:
    """HTTP twin of :class:`~luma_provider.sandbox.LumaSandbox`'s control methods.

    ``api_key`` is the sandbox's own key (``--api-key``): every admin route but
    ``health`` requires it whenever the sandbox has one.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def __repr__(self) -> str:  # never show the key
        return f"<SandboxAdmin {self.url}>"

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            f"{self.url}/_sandbox/{path}", data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise ValueError(f"sandbox rejected {method} /_sandbox/{path}: {exc.code} {detail}") from None

    def health(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self._call("GET", "health"))

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the sandbox answers (e.g. right after starting the CLI)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.health()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Update config fields; returns the new config (API key masked)."""
        config: dict[str, Any] = self._call("POST", "config", changes)
        if "api_key" in changes:  # the admin routes now want the new key (or none)
            self.api_key = changes["api_key"]
        return config

    def add_fault(self, route: str = "*", kind: str = "status", **fields: Any) -> list[dict[str, Any]]:
        """Add one fault rule (see :mod:`luma_provider.sandbox.faults`)."""
        return self.add_faults([{"route": route, "kind": kind, **fields}])

    def add_faults(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self._call("POST", "faults", rules))

    def faults(self) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self._call("GET", "faults"))

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def reset(self) -> None:
        """Forget generations, stats and faults."""
        self._call("POST", "reset")

    def stats(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self._call("GET", "stats"))

    @property
    def submissions(self) -> int:
        """Generations actually created (submit + extend), faulted attempts excluded."""
        return int(self.stats()["submissions"])
