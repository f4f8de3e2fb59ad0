"""Never pay twice on a retry, on every supported Airflow: the task state store (3.3+) or its
stand-in in the ledger, keyed by the task instance (before 3.3), and which one is used is logged."""

from __future__ import annotations

import logging
import threading

from luma_provider.ledger import GenerationLedger, TaskInstanceStore
from luma_provider.reuse import STATE_AMBIGUOUS, STATE_GENERATION_ID, ScopedStore, retry_store

TI = "dag/manual__2026-11-25/submit/-1"


class DictStore:
    """What Airflow 3.3 hands over as ``context["task_state_store"]`` (get/set)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str) -> None:
        self.data[key] = value


class TestRetryStore:
    def test_airflow_3_3_store_is_used_and_said(self, tmp_path, caplog):
        store = DictStore()
        with caplog.at_level(logging.INFO):
            found = retry_store({"task_state_store": store}, GenerationLedger(str(tmp_path)), TI, keyed=False)
        assert found is store
        assert "accepted ids go to the task state store" in caplog.text
        assert not list(tmp_path.iterdir())  # nothing written to the ledger

    def test_before_3_3_without_key_falls_back_to_the_ledger_loudly(self, tmp_path, caplog):
        with caplog.at_level(logging.WARNING):
            found = retry_store({}, GenerationLedger(str(tmp_path)), TI, keyed=False)
        assert isinstance(found, TaskInstanceStore)
        warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
        assert "no task state store (it needs Airflow 3.3)" in warning.getMessage()
        assert "keyed by this task instance" in warning.getMessage()
        assert str(tmp_path) in warning.getMessage()

    def test_before_3_3_with_key_the_ledger_entries_do_it(self, tmp_path, caplog):
        with caplog.at_level(logging.WARNING):
            found = retry_store({"task_state_store": None}, GenerationLedger(str(tmp_path)), TI, keyed=True)
        assert found is None
        assert "relies on the ledger entries under idempotency_key" in caplog.text


class TestTaskInstanceStore:
    def test_a_retry_finds_what_an_earlier_try_set(self, tmp_path):
        TaskInstanceStore(GenerationLedger(str(tmp_path)), TI).set(STATE_GENERATION_ID, "gen-1")
        # The retry is another process: a new store over the same folder.
        retry = TaskInstanceStore(GenerationLedger(f"file://{tmp_path}"), TI)
        assert retry.get(STATE_GENERATION_ID) == "gen-1"
        assert retry.get(STATE_AMBIGUOUS) is None

    def test_keyed_by_the_task_instance(self, tmp_path):
        ledger = GenerationLedger(str(tmp_path))
        TaskInstanceStore(ledger, TI).set(STATE_GENERATION_ID, "gen-1")
        for other in (
            "dag/manual__2026-11-26/submit/-1",  # another run
            "dag/manual__2026-11-25/submit/0",  # another mapped instance
            "dag/manual__2026-11-25/other/-1",  # another task
        ):
            assert TaskInstanceStore(ledger, other).get(STATE_GENERATION_ID) is None

    def test_batch_scopes_stay_apart(self, tmp_path):
        store = TaskInstanceStore(GenerationLedger(str(tmp_path)), TI)
        lock = threading.Lock()
        ScopedStore(store, "digest-a", lock).set(STATE_GENERATION_ID, "gen-a")
        ScopedStore(store, "digest-b", lock).set(STATE_GENERATION_ID, "gen-b")
        assert ScopedStore(store, "digest-a", lock).get(STATE_GENERATION_ID) == "gen-a"
        assert ScopedStore(store, "digest-b", lock).get(STATE_GENERATION_ID) == "gen-b"
        assert store.get(STATE_GENERATION_ID) is None

    def test_kept_apart_from_the_idempotency_entries(self, tmp_path):
        ledger = GenerationLedger(str(tmp_path))
        ledger.record("daily:abc", "gen-1")
        TaskInstanceStore(ledger, TI).set(STATE_GENERATION_ID, "gen-2")
        assert len(list(tmp_path.glob("*.json"))) == 1  # the ledger's own entry only
        assert len(list((tmp_path / TaskInstanceStore.FOLDER).glob("*.json"))) == 1
        assert ledger.get("daily:abc") == "gen-1"
