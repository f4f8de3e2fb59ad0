"""``GenerationReuse`` on a task's first try: the task state store is written, never read.

A chunk of 100 prompts paid three Execution API calls per prompt for the store (BENCHMARKS.md,
section 5); on a first try nothing can be recorded yet, so the two reads are skipped.
"""

from __future__ import annotations

from typing import Any

from luma_provider.models import LumaGeneration, LumaState
from luma_provider.reuse import STATE_GENERATION_ID, GenerationReuse

GEN_ID = "00000000-0000-4000-8000-000000000001"


class CountingStore:
    """A task state store double that records every call (the real one is an API client)."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values = dict(values or {})
        self.calls: list[tuple[str, str]] = []

    def get(self, key: str) -> Any:
        self.calls.append(("get", key))
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.calls.append(("set", key))
        self.values[key] = value


def accepted() -> LumaGeneration:
    return LumaGeneration(id=GEN_ID, state=LumaState.QUEUED, raw_state="queued")


def test_first_try_writes_the_id_without_reading_the_store():
    store = CountingStore()
    reuse = GenerationReuse(None, store=store, ledger=None, key=None, owner="d/r/t/-1", first_try=True)  # type: ignore[arg-type]
    assert reuse.submit_once(accepted).id == GEN_ID
    assert store.calls == [("set", STATE_GENERATION_ID)]


def test_a_retry_still_reads_the_store_first():
    store = CountingStore()
    reuse = GenerationReuse(None, store=store, ledger=None, key=None, owner="d/r/t/-1")  # type: ignore[arg-type]
    reuse.submit_once(accepted)
    assert [c[0] for c in store.calls] == ["get", "get", "set"]
