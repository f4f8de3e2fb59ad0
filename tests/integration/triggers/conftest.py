"""Fixtures for driving ``LumaTrigger.run()`` directly against a real sandbox (no mocks), in the API
flavour of the ``flavour`` fixture (``tests/integration/conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from airflow_helpers import connection_json
from flavours import conn_extra

from luma_provider.hooks.luma import LumaHook
from luma_provider.sandbox import LumaSandbox
from luma_provider.triggers.poller import StatusPoller, active_pollers

KEY = "sk-trigger-tests-key-0001"


@pytest.fixture
def sandbox(flavour: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LumaSandbox]:
    """A sandbox in ``flavour``: jobs pending 0.2 s, processing 0.3 s; ``luma_default`` points at it."""
    with LumaSandbox(port=0, api_key=KEY, api_flavour=flavour, queue_seconds=0.2, process_seconds=0.3) as sb:
        conn = connection_json(sb.url, key=KEY, max_retries=2, **conn_extra(sb))
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", conn)
        yield sb


@pytest.fixture
def submit(sandbox: LumaSandbox) -> Callable[..., str]:
    """``submit(prompt)`` -> id of a real generation on ``sandbox`` (sync hook, before the trigger runs)."""
    hook = LumaHook()

    def make(prompt: str = "a quiet lake at dawn") -> str:
        return hook.submit_generation(prompt).id

    return make


@pytest.fixture(autouse=True)
def no_poller_leak() -> Iterator[None]:
    """Every test must leave no shared poller behind (a leak would also poison later tests)."""
    StatusPoller._registry.clear()
    yield
    leaked = active_pollers()
    StatusPoller._registry.clear()
    assert leaked == {}, f"pollers leaked: {leaked}"
