"""Status lookups without a batch route: one GET per id, ``status_concurrency`` in flight at once.

The sandbox delays every status GET and reports the most GETs it ever handled at once
(``peak_in_flight``), so the bound is observed on the server, not inferred from timings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import pytest

from luma_provider.exceptions import LumaNotFoundError
from luma_provider.hooks.luma import LumaHook
from luma_provider.sandbox import LumaSandbox

KEY = "sk-status-concurrency-01"
IDS = 12
DELAY = 0.15


def _connect(monkeypatch: pytest.MonkeyPatch, host: str, **extra: object) -> LumaHook:
    conn = {"conn_type": "luma", "host": host, "password": KEY, "extra": {"max_retries": 0, **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", json.dumps(conn))
    return LumaHook()


@pytest.fixture(params=["official", "gateway-without-batch-route"])
def no_batch(request: pytest.FixtureRequest) -> Iterator[LumaSandbox]:
    """A sandbox without a batch status route: the official API, or a gateway lacking /luma/tasks."""
    official = request.param == "official"
    config = {"api_flavour": "official"} if official else {"batch_route": False}
    with LumaSandbox(port=0, api_key=KEY, time_scale=0, **config) as sb:
        yield sb


def gets(sb: LumaSandbox) -> int:
    return int(sb.stats()["by_route"].get("get", 0))


@pytest.fixture
def make_hook(
    no_batch: LumaSandbox, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[LumaHook, list[str]]]:
    """``make_hook(status_concurrency)`` -> a hook and IDS generations; every status GET is delayed."""

    def make(concurrency: int) -> tuple[LumaHook, list[str]]:
        # Setup GETs (if any) run one at a time: they cannot raise the peak above 1.
        hook = _connect(monkeypatch, no_batch.api_base_url, status_concurrency=concurrency)
        ids = [hook.submit_generation(f"clip {i}").id for i in range(IDS)]
        if not hook.settings.official:
            hook.get_generations(ids[:1])  # learns that /luma/tasks is missing
        no_batch.add_fault(route="get", kind="delay", seconds=DELAY, times=1000)
        return hook, ids

    return make


@pytest.mark.parametrize("concurrency", [1, 4])
def test_sync_lookups_keep_the_bound(no_batch, make_hook, concurrency):
    hook, ids = make_hook(concurrency)
    shuffled = ids[::-1]
    before = gets(no_batch)
    generations = hook.get_generations(shuffled)
    assert [g.id for g in generations] == shuffled  # input order, whatever order they finished in
    assert gets(no_batch) - before == IDS
    assert no_batch.stats()["peak_in_flight"]["get"] == concurrency


@pytest.mark.parametrize("concurrency", [1, 4])
def test_async_lookups_keep_the_bound(no_batch, make_hook, concurrency):
    hook, ids = make_hook(concurrency)
    before = gets(no_batch)

    async def look() -> list[str]:
        try:
            return [g.id for g in await hook.aget_generations(ids)]
        finally:
            await hook.aclose()

    assert asyncio.run(look()) == ids
    assert gets(no_batch) - before == IDS
    assert no_batch.stats()["peak_in_flight"]["get"] == concurrency


def test_sync_unknown_ids_are_skipped_when_asked(no_batch, make_hook):
    hook, ids = make_hook(4)
    unknown = "00000000-0000-4000-8000-000000000000"
    assert [g.id for g in hook.get_generations([unknown, *ids], skip_missing=True)] == ids


def test_async_unknown_ids_are_skipped_for_the_poller(no_batch, make_hook):
    hook, ids = make_hook(4)
    unknown = "00000000-0000-4000-8000-000000000000"

    async def look() -> list[str]:
        try:
            return [g.id for g in await hook.aget_generations([unknown, *ids], skip_missing=True)]
        finally:
            await hook.aclose()

    assert asyncio.run(look()) == ids


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_unknown_id_stops_the_other_lookups(no_batch, make_hook, mode):
    hook, ids = make_hook(2)
    unknown = "00000000-0000-4000-8000-000000000000"
    wanted = [unknown, *ids]
    before = gets(no_batch)

    async def look() -> None:
        try:
            await hook.aget_generations(wanted)
        finally:
            await hook.aclose()

    with pytest.raises(LumaNotFoundError):
        hook.get_generations(wanted) if mode == "sync" else asyncio.run(look())
    # Both workers stop after the request they have in hand, long before all IDS + 1 are fetched.
    assert gets(no_batch) - before <= 3


def test_each_id_has_its_own_error_without_a_batch_route(no_batch, make_hook):
    from luma_provider.exceptions import LumaServerError

    hook, ids = make_hook(3)
    no_batch.clear_faults()
    no_batch.add_fault(route="get", kind="status", status=500, skip=4, times=1)

    async def look():
        try:
            return await hook.aget_each(ids)
        finally:
            await hook.aclose()

    found = asyncio.run(look())
    assert list(found) == ids
    errors = [i for i, r in found.items() if isinstance(r, LumaServerError)]
    assert len(errors) == 1  # one failed GET spoils one id, not the whole cycle
    assert all(r.id == i for i, r in found.items() if i not in errors)
