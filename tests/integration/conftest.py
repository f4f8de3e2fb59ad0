"""Fixtures of the integration tests: the hostile gateway (``hostile_server.py``) and a hook on it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_helpers import connection_json

sys.path.insert(0, str(Path(__file__).resolve().parent))  # hostile_server, importable by the tests
from hostile_server import KEY, HostileServer


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileServer]]:
    """``hostile(host="127.0.0.1")`` -> a started ``HostileServer``; all are stopped after the test."""
    servers: list[HostileServer] = []

    def start(host: str = "127.0.0.1") -> HostileServer:
        server = HostileServer(host)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``connect(url, key=KEY, **extra)``: point ``luma_default`` at ``url`` and return a new hook.

    ``max_retries`` 0 and a 5 s timeout unless ``extra`` says otherwise: hostile cases stay fast.
    """
    from luma_provider.hooks.luma import LumaHook

    def make(url: str, key: str | None = KEY, **extra: Any) -> LumaHook:
        extras = {"max_retries": 0, "timeout": 5, **extra}
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", connection_json(url, key=key, **extras))
        return LumaHook()

    return make
