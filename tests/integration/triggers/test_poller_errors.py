"""One failed status GET spoils one id of a cycle, not every waiter's (APIs without a batch route)."""

from __future__ import annotations

import asyncio
import json

import pytest

from luma_provider.exceptions import LumaServerError
from luma_provider.hooks.luma import LumaHook
from luma_provider.models import LumaGeneration
from luma_provider.sandbox import LumaSandbox
from luma_provider.triggers.poller import StatusPoller

KEY = "sk-poller-errors-0001"


@pytest.fixture(autouse=True)
def no_poller_leak():
    StatusPoller._registry.clear()
    yield
    StatusPoller._registry.clear()


def test_a_failed_get_is_that_ids_error_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with LumaSandbox(port=0, api_key=KEY, api_flavour="official", time_scale=0) as sb:
        extra = {"max_retries": 0, "status_concurrency": 1}  # one GET at a time: the fault hits the first id
        conn = {"conn_type": "luma", "host": sb.api_base_url, "password": KEY, "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", json.dumps(conn))
        ids = [LumaHook().submit_generation(f"clip {i}").id for i in range(3)]
        # The poller's hook retries once: both attempts for the first id fail.
        sb.add_fault(route="get", kind="status", status=500, times=2)

        async def one_cycle() -> dict:
            poller = StatusPoller.for_connection("luma_default").acquire()
            try:
                waits = [poller.status((gen_id,), 0.2) for gen_id in ids]
                return {k: v for answer in await asyncio.gather(*waits) for k, v in answer.items()}
            finally:
                await poller.release()

        answers = asyncio.run(one_cycle())
    assert isinstance(answers[ids[0]], LumaServerError)
    assert all(isinstance(answers[i], LumaGeneration) for i in ids[1:])
