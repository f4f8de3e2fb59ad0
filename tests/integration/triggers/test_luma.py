"""LumaTrigger.run() driven directly on an asyncio loop against a real sandbox, in both API flavours
(``[gateway]`` polls ``POST /luma/tasks``, ``[official]`` one ``GET /generations/{id}`` per id)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from airflow_helpers import connection_json, json_leaves
from flavours import conn_extra, is_official, status_route

from luma_provider.sandbox import LumaSandbox
from luma_provider.triggers import poller as poller_module
from luma_provider.triggers.luma import AUTH_ERROR_BUDGET, LumaTrigger

KEY = "sk-trigger-tests-key-0001"  # the conftest sandbox's key
WRONG_KEY = "sk-wrong-key-000000"


async def run_trigger(trigger: LumaTrigger) -> tuple[dict[str, Any], float]:
    """All events of one ``run()`` (must be exactly one) and the seconds it took."""
    started = time.monotonic()
    events = [event async for event in trigger.run()]
    elapsed = time.monotonic() - started
    assert len(events) == 1, events
    return events[0].payload, elapsed


class TestEvents:
    async def test_success_event_has_ids_states_and_no_url_or_key(self, sandbox: LumaSandbox, submit) -> None:
        ids = [submit("a red fox"), submit("a blue whale")]
        payload, elapsed = await run_trigger(LumaTrigger(ids, poll_interval=0.3))

        assert payload["status"] == "success"
        assert payload["generation_ids"] == ids
        assert payload["states"] == {ids[0]: "completed", ids[1]: "completed"}
        assert payload["message"] == "2 generation(s) completed"
        assert set(payload) == {"status", "generation_ids", "states", "finished_at", "message"}
        # When the wait saw each one finish (epoch seconds): a batch's render times come from here.
        assert set(payload["finished_at"]) == set(ids)
        assert all(abs(t - time.time()) < 30 for t in payload["finished_at"].values())
        text = json.dumps(payload)
        assert "http" not in text and sandbox.url not in text and "/media/" not in text
        assert KEY not in text
        # Every leaf is a plain JSON scalar: nothing the triggerer could not log or store.
        assert all(isinstance(leaf, (str, float)) for leaf in json_leaves(payload))
        assert elapsed < 3.0

    async def test_failed_event_carries_id_and_reason(self, sandbox: LumaSandbox, submit) -> None:
        ok, bad = submit("a calm sea"), submit("a storm #fail")
        payload, _ = await run_trigger(LumaTrigger([ok, bad], poll_interval=0.3))

        assert payload["status"] == "failed"
        assert payload["states"][bad] == "failed"
        assert payload["message"] == f"Luma generation failed: {bad}: Advanced prompt moderation failed"

    async def test_failed_event_custom_reason(self, sandbox: LumaSandbox, submit) -> None:
        bad = submit("a storm #fail:Prompt contains a trademark")
        payload, _ = await run_trigger(LumaTrigger([bad], poll_interval=0.3))
        assert payload["status"] == "failed"
        assert payload["message"].endswith(f"{bad}: Prompt contains a trademark")

    async def test_deadline_in_the_past_times_out_without_any_request(
        self, sandbox: LumaSandbox, submit
    ) -> None:
        gen_id = submit()
        before = sandbox.stats()["requests"]
        payload, elapsed = await run_trigger(
            LumaTrigger([gen_id], poll_interval=0.3, deadline=time.time() - 5)
        )

        assert payload["status"] == "timeout"
        assert payload["states"] == {}
        assert gen_id in payload["message"] and "not seen" in payload["message"]
        assert sandbox.stats()["requests"] == before
        assert elapsed < 0.5

    async def test_deadline_in_near_future_times_out_with_last_state(
        self, sandbox: LumaSandbox, submit
    ) -> None:
        gen_id = submit("a glacier calving #slow")  # 2.5 s to finish
        payload, elapsed = await run_trigger(
            LumaTrigger([gen_id], poll_interval=0.3, deadline=time.time() + 1.0)
        )

        assert payload["status"] == "timeout"
        assert payload["states"][gen_id] in ("queued", "running")
        assert payload["message"].startswith(f"Timed out waiting for {gen_id} (")
        assert 0.9 <= elapsed < 2.0

    async def test_unknown_state_keeps_waiting_then_completes(
        self, sandbox: LumaSandbox, submit, capfd
    ) -> None:
        if is_official(sandbox):
            # The official sandbox has no #unknown directive: an unknown_state fault on the first poll.
            gen_id, raw = submit("a lighthouse"), "weird_new_state"
            sandbox.add_fault(route="get", kind="unknown_state", times=1)
        else:
            gen_id, raw = submit("a lighthouse #unknown"), "mystery_state"
        payload, _ = await run_trigger(LumaTrigger([gen_id], poll_interval=0.1))
        log = capfd.readouterr().out  # Airflow routes logging through structlog to stdout

        assert payload["status"] == "success"
        assert payload["states"] == {gen_id: "completed"}
        assert (
            f"Generation {gen_id} is unknown (raw '{raw}')" in log
        )  # it really saw the unknown raw state and kept going


class TestTransientFaults:
    @pytest.mark.parametrize(
        "fault",
        [
            pytest.param(
                {"kind": "status", "status": 429, "retry_after": 0.1, "times": 2}, id="429-retry-after"
            ),
            pytest.param({"kind": "status", "status": 500, "times": 3}, id="500-burst"),
            pytest.param({"kind": "reset", "times": 2}, id="connection-reset"),
            pytest.param({"kind": "truncated_json", "times": 1}, id="truncated-json"),
        ],
    )
    async def test_recovers_and_reports_success(
        self, sandbox: LumaSandbox, submit, fault: dict[str, Any]
    ) -> None:
        gen_id = submit()
        sandbox.add_fault(route=status_route(sandbox), **fault)
        payload, _ = await run_trigger(LumaTrigger([gen_id], poll_interval=0.2))

        assert payload["status"] == "success"
        assert payload["generation_ids"] == [gen_id]
        stats = sandbox.stats()
        assert sum(stats["faults_applied"].values()) == fault["times"]  # every fault was really hit


class TestPersistentErrors:
    async def test_persistent_401_gives_up_after_auth_budget(
        self, sandbox: LumaSandbox, submit, monkeypatch
    ) -> None:
        gen_id = submit()
        monkeypatch.setenv(
            "AIRFLOW_CONN_LUMA_DEFAULT",
            connection_json(sandbox.url, key=WRONG_KEY, max_retries=2, **conn_extra(sandbox)),
        )
        before = sandbox.stats()["requests"]
        payload, elapsed = await run_trigger(LumaTrigger([gen_id], poll_interval=0.3, error_budget=10))

        assert payload["status"] == "error"
        assert payload["message"].startswith(
            f"Gave up after {AUTH_ERROR_BUDGET} consecutive authentication errors"
        )
        assert "sk-wrong-key" not in payload["message"]
        # Auth errors are not retried inside a poll: exactly one request per poll, polls spaced out.
        assert sandbox.stats()["requests"] - before == AUTH_ERROR_BUDGET
        assert elapsed >= (AUTH_ERROR_BUDGET - 1) * 0.3 - 0.05

    async def test_persistent_500_gives_up_after_error_budget(self, sandbox: LumaSandbox, submit) -> None:
        gen_id = submit()
        sandbox.add_fault(route=status_route(sandbox), kind="status", status=500, times=1000)
        payload, _ = await run_trigger(LumaTrigger([gen_id], poll_interval=0.2, error_budget=3))

        assert payload["status"] == "error"
        assert payload["message"].startswith(
            "Gave up after 3 consecutive status errors; last: LumaServerError"
        )
        # Each poll = 1 request + POLL_RETRIES retries; nothing more.
        assert sandbox.stats()["by_route"][status_route(sandbox)] == 3 * (1 + poller_module.POLL_RETRIES)

    @pytest.mark.parametrize("kind", ["500", "401", "404"])
    async def test_no_hot_loop_on_errors(self, sandbox: LumaSandbox, submit, monkeypatch, kind: str) -> None:
        """Whatever the error, requests stay within T/p + a constant (HttpSensorTrigger: 2,503 in 3 s)."""
        interval, run_for = 0.25, 1.5
        gen_id = submit()
        if kind == "500":
            sandbox.add_fault(route="*", kind="status", status=500, times=100_000)
        elif kind == "401":
            monkeypatch.setenv(
                "AIRFLOW_CONN_LUMA_DEFAULT",
                connection_json(sandbox.url, key=WRONG_KEY, max_retries=2, **conn_extra(sandbox)),
            )
        else:
            gen_id = str(uuid.uuid4())  # a well-formed id the gateway never issued
        before = sandbox.stats()["requests"]
        trigger = LumaTrigger(
            [gen_id], poll_interval=interval, deadline=time.time() + run_for, error_budget=1000
        )
        payload, elapsed = await run_trigger(trigger)

        sent = sandbox.stats()["requests"] - before
        per_poll = 1 + poller_module.POLL_RETRIES
        # 401 gives up after the auth budget; the others run into the deadline.
        assert payload["status"] == ("error" if kind == "401" else "timeout")
        assert sent >= 1
        assert sent <= (elapsed / interval + 2) * per_poll, (sent, elapsed)
