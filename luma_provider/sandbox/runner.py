"""``LumaSandbox``: run the fake gateway on its own event loop in a daemon thread.

A private loop in a thread means the sandbox works the same from synchronous tests,
from tests that run their own asyncio loop, and from a REPL.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from luma_provider.sandbox.admin import SandboxAdmin
from luma_provider.sandbox.config import DEFAULT_API_KEY, OFFICIAL_BASE_PATH, SandboxConfig

T = TypeVar("T")
_UNSET: Any = object()
#: Extra of every ``luma`` connection the sandbox hands out.
CONNECTION_EXTRA: dict[str, Any] = {"allow_private_downloads": True}


class LumaSandbox:
    """A local fake Luma gateway.

    >>> with LumaSandbox(port=0, api_key="sandbox-key", queue_seconds=0.2) as sb:
    ...     sb.url  # doctest: +SKIP
    'http://127.0.0.1:54321'
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = _UNSET,
        config: SandboxConfig | None = None,
        **config_fields: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.config = config or SandboxConfig()
        if api_key is not _UNSET:
            config_fields["api_key"] = api_key
        elif config is None:
            config_fields.setdefault("api_key", DEFAULT_API_KEY)
        self.config.update(**config_fields)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._state: Any = None

    def __repr__(self) -> str:
        running = "running" if self._thread is not None else "stopped"
        return f"<LumaSandbox {self.url} {running}>"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LumaSandbox:
        """Start serving; returns once the port is bound (``self.port`` is then the real one)."""
        if self._thread is not None:
            return self
        from luma_provider.sandbox.server import (
            SandboxState,  # aiohttp is imported only when a server really starts
        )

        self._state = SandboxState(self.config)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name=f"luma-sandbox-{self.port}", daemon=True
        )
        self._thread.start()
        ready.wait(timeout=15)
        if self._runner is None:
            self.stop()
            raise RuntimeError(f"Luma sandbox failed to start on {self.host}:{self.port}")
        return self

    def _serve(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._runner, self.port = self._loop.run_until_complete(
                start_site(self.host, self.port, self._state)
            )
        except Exception:  # reported by start() as a RuntimeError
            ready.set()
            return
        ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        """Stop the server and join its thread (idempotent)."""
        if self._loop is not None and self._thread is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
        self._runner = None

    def __enter__(self) -> LumaSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ connection info

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base_url(self) -> str:
        """Where the API lives: ``url`` (gateway) or ``url + "/dream-machine/v1"`` (official),
        e.g. ``lumaai.LumaAI(auth_token=KEY, base_url=sb.api_base_url)``."""
        return f"{self.url}{OFFICIAL_BASE_PATH}" if self.config.api_flavour == "official" else self.url

    @property
    def api_key(self) -> str | None:
        return self.config.api_key

    @property
    def connection_extra(self) -> dict[str, Any]:
        """Extra of the connections handed out: the sandbox's media is on a loopback host,
        which the provider refuses to download from unless told to. An official-flavour sandbox
        also says ``api_flavour: official`` (the provider then adds ``/dream-machine/v1``)."""
        extra = dict(CONNECTION_EXTRA)
        if self.config.api_flavour == "official":
            extra["api_flavour"] = "official"
        return extra

    @property
    def connection_json(self) -> str:
        """Value for ``AIRFLOW_CONN_LUMA_DEFAULT`` (JSON form)."""
        conn: dict[str, Any] = {"conn_type": "luma", "host": self.url}
        if self.api_key is not None:
            conn["password"] = self.api_key
        conn["extra"] = self.connection_extra
        return json.dumps(conn)

    @property
    def connection_uri(self) -> str:
        """Same connection in Airflow URI form (``host`` round-trips as ``http://HOST:PORT``)."""
        netloc = urllib.parse.quote(f"{self.host}:{self.port}", safe="")
        auth = f":{urllib.parse.quote(self.api_key, safe='')}@" if self.api_key is not None else ""
        # Airflow JSON-decodes each query value, so "true" arrives as a real bool.
        query = urllib.parse.urlencode({k: json.dumps(v) for k, v in self.connection_extra.items()})
        return f"luma://http://{auth}{netloc}?{query}"

    @property
    def admin(self) -> SandboxAdmin:
        """A :class:`SandboxAdmin` for this sandbox over HTTP (with its key), e.g. to hand to
        another thread or to test the admin routes themselves."""
        return SandboxAdmin(self.url, api_key=self.api_key)

    # ------------------------------------------------------------------ control

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server loop (state is not thread-safe) and return its result."""
        if self._loop is None or self._thread is None:
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def configure(self, **changes: Any) -> None:
        """Update config fields at runtime (validated; raises ``ValueError``)."""
        self._call(lambda: self.config.update(**changes))

    def add_fault(self, route: str = "*", kind: str = "status", **fields: Any) -> dict[str, Any]:
        """Add one fault rule; returns it as a dict (see :mod:`.faults`)."""
        return self.add_faults([{"route": route, "kind": kind, **fields}])[0]

    def add_faults(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self._require_started()
        return self._call(lambda: [rule.as_dict() for rule in self._state.faults.add(rules)])

    def faults(self) -> list[dict[str, Any]]:
        self._require_started()
        return self._call(self._state.faults.as_list)

    def clear_faults(self) -> None:
        self._require_started()
        self._call(self._state.faults.clear)

    def reset(self) -> None:
        """Forget generations, stats and faults (config is kept)."""
        self._require_started()
        self._call(self._state.reset)

    def stats(self) -> dict[str, Any]:
        """Same dict as ``GET /_sandbox/stats``."""
        self._require_started()
        return self._call(self._state.snapshot)

    @property
    def submissions(self) -> int:
        """Generations actually created (submit + extend); faulted attempts are not counted."""
        return int(self.stats()["submissions"])

    def _require_started(self) -> None:
        if self._state is None:
            raise RuntimeError("LumaSandbox is not started; call start() or use it as a context manager")


async def start_site(host: str, port: int, state: Any, *, backlog: int = 2048) -> tuple[Any, int]:
    """Bind the app; returns the aiohttp runner and the actual port (for ``port=0``)."""
    from aiohttp import web

    from luma_provider.sandbox.server import create_app

    # access_log=None: logging every poll would dominate the cost under heavy load.
    runner = web.AppRunner(create_app(state=state), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog, reuse_address=True)
    await site.start()
    addresses = runner.addresses  # [(host, port, ...)] of the bound sockets
    return runner, (addresses[0][1] if addresses else port)
