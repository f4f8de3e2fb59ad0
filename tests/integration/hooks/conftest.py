"""Fixtures for the LumaHook integration tests: a real sandbox over real HTTP, no mocks, in the
API flavour of the ``flavour`` fixture (``tests/integration/conftest.py``)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from airflow_helpers import connection_json

from luma_provider import api
from luma_provider.hooks.luma import LumaHook
from luma_provider.sandbox import LumaSandbox

KEY = "sk-test-gateway-key-0001"


@pytest.fixture
def sandbox(flavour: str) -> Iterator[LumaSandbox]:
    """A fresh sandbox in ``flavour`` whose jobs are pending 0.05 s, processing 0.1 s, then completed."""
    with LumaSandbox(port=0, api_key=KEY, api_flavour=flavour, queue_seconds=0.05, process_seconds=0.1) as sb:
        yield sb


@pytest.fixture
def connect(flavour: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., LumaHook]:
    """``connect(url, key=KEY, extra=None, **hook_kwargs)``: point ``luma_default`` at ``url``, return a hook.

    ``max_retries`` is 2 unless ``extra`` says otherwise, so failing paths stay fast; downloads
    from loopback (other sandboxes as CDNs) are allowed unless ``extra`` says otherwise. In the
    official flavour the extra also says ``api_flavour: official`` (``url`` is the server's root).
    """
    flavour_extra = {"api_flavour": "official"} if flavour == "official" else {}

    def make(
        url: str, key: str | None = KEY, extra: dict[str, Any] | None = None, **hook_kwargs: Any
    ) -> LumaHook:
        extras = {"max_retries": 2, "allow_private_downloads": True, **flavour_extra, **(extra or {})}
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", connection_json(url, key=key, **extras))
        return LumaHook(**hook_kwargs)

    return make


@pytest.fixture
def hook(sandbox: LumaSandbox, connect: Callable[..., LumaHook]) -> LumaHook:
    """A hook on the ``sandbox`` (its flavour) with ``max_retries=2``."""
    return connect(sandbox.url)


@pytest.fixture
def closed_port_url() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens (bound, then released): connection refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scale the real exponential backoff down (1 s -> 0.02 s base) for tests that need many retries.

    ``RetryPolicy`` is not injectable into the hook, so this swaps the dataclass' default
    ``initial_wait``/``max_wait``; ``wait_seconds`` and tenacity still run unchanged.
    """
    max_retries, _initial, _max = api.RetryPolicy.__init__.__defaults__
    monkeypatch.setattr(api.RetryPolicy.__init__, "__defaults__", (max_retries, 0.02, 0.1))
