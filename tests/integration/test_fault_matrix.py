"""The fault matrix: every gateway fault, at the hook (status + submit) and trigger layers.

``CASES`` is both the test table and the source of ``docs/fault-matrix.md``:
``test_doc_is_current`` fails when the doc is stale; regenerate it with
``UPDATE_FAULT_MATRIX=1 pytest tests/integration/test_fault_matrix.py``.
(The whole-DAG rows name the system/e2e tests that verify them.)
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from airflow_helpers import connection_json

from luma_provider.exceptions import (
    LumaAmbiguousSubmitError,
    LumaAuthError,
    LumaBadRequestError,
    LumaGenerationFailed,
    LumaNotFoundError,
)
from luma_provider.hooks.luma import LumaHook
from luma_provider.models import LumaState
from luma_provider.sandbox import LumaSandbox
from luma_provider.triggers.luma import LumaTrigger

DOC = Path(__file__).resolve().parents[2] / "docs" / "fault-matrix.md"
KEY = "sk-matrix-key"


@dataclass(frozen=True)
class Case:
    fault: str
    layer: str  # "status" (hook GET), "submit" (hook POST), "trigger"
    outcome: str  # what the doc says happens
    rule: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    prompt: str = "a calm lake"
    expect: type[BaseException] | str | None = None  # exception class, trigger status, or None=success


def _s(status: int, **kw: Any) -> dict[str, Any]:
    return {"kind": "status", "status": status, **kw}


CASES = [
    # --- status lookups (GET /luma/generations/{id}): idempotent, retried with backoff
    Case("429 with Retry-After", "status", "recovered (waits Retry-After)", _s(429, retry_after=0, times=2)),
    Case("429 without Retry-After", "status", "recovered (backoff + jitter)", _s(429, times=1)),
    Case("burst 500,502,503,504", "status", "recovered", {"kind": "status", "status": 500, "times": 1}),
    Case("connection reset", "status", "recovered", {"kind": "reset", "times": 1}),
    Case("reset mid-response", "status", "recovered", {"kind": "reset_mid_body", "times": 1}),
    Case("read timeout", "status", "recovered", {"kind": "delay", "seconds": 3, "times": 1}),
    Case("HTML error page", "status", "recovered", {"kind": "html", "times": 1}),
    Case("truncated JSON", "status", "recovered", {"kind": "truncated_json", "times": 1}),
    Case("empty 200", "status", "recovered", {"kind": "empty", "times": 1}),
    Case(
        "unknown state string",
        "status",
        "parsed as `unknown`; callers keep waiting",
        {"kind": "unknown_state", "times": 1},
    ),
    Case(
        "400",
        "status",
        "LumaBadRequestError at once (HTTP status + message)",
        _s(400, times=5),
        expect=LumaBadRequestError,
    ),
    Case("401 bad key", "status", "LumaAuthError at once", _s(401, times=5), expect=LumaAuthError),
    Case(
        "403 quota",
        "status",
        "LumaAuthError at once (code insufficient_user_quota)",
        _s(403, times=5),
        expect=LumaAuthError,
    ),
    Case("404", "status", "LumaNotFoundError at once", _s(404, times=5), expect=LumaNotFoundError),
    Case(
        "task_not_exist (400)",
        "status",
        "LumaNotFoundError at once",
        _s(400, body={"code": "task_not_exist", "message": "task_not_exist", "data": None}, times=5),
        expect=LumaNotFoundError,
    ),
    Case(
        "generation ends failed",
        "status",
        "LumaGenerationFailed with failure_reason",
        prompt="a ship #fail",
        expect=LumaGenerationFailed,
    ),
    # --- submit (POST /luma/generations): costs money, retried only when provably not taken
    Case(
        "429 on submit", "submit", "retried; exactly one generation created", _s(429, retry_after=0, times=2)
    ),
    Case("503 on submit", "submit", "retried; exactly one generation created", _s(503, times=1)),
    Case("connection refused", "submit", "retried (request never sent)", config={"refused": True}),
    Case(
        "502 after the job was taken",
        "submit",
        "LumaAmbiguousSubmitError, not resubmitted",
        _s(502, after_processing=True),
        expect=LumaAmbiguousSubmitError,
    ),
    Case(
        "504 after the job was taken",
        "submit",
        "LumaAmbiguousSubmitError, not resubmitted",
        _s(504, after_processing=True),
        expect=LumaAmbiguousSubmitError,
    ),
    Case(
        "reset after the job was taken",
        "submit",
        "LumaAmbiguousSubmitError, not resubmitted",
        {"kind": "reset", "after_processing": True},
        expect=LumaAmbiguousSubmitError,
    ),
    Case(
        "read timeout on submit",
        "submit",
        "LumaAmbiguousSubmitError, not resubmitted",
        {"kind": "delay", "seconds": 3},
        expect=LumaAmbiguousSubmitError,
    ),
    Case("400 on submit", "submit", "LumaBadRequestError at once", _s(400), expect=LumaBadRequestError),
    Case(
        "403 quota on submit",
        "submit",
        "LumaAuthError at once",
        config={"quota_exhausted": True},
        expect=LumaAuthError,
    ),
    # --- trigger (batch polling in the triggerer): every error path sleeps a poll interval
    Case(
        "429 burst",
        "trigger",
        "`success` event",
        {**_s(429, retry_after=0), "route": "tasks", "times": 3},
        expect="success",
    ),
    Case(
        "5xx burst", "trigger", "`success` event", {**_s(502), "route": "tasks", "times": 3}, expect="success"
    ),
    Case(
        "connection resets",
        "trigger",
        "`success` event",
        {"kind": "reset", "route": "tasks", "times": 2},
        expect="success",
    ),
    Case(
        "persistent 401",
        "trigger",
        "`error` event after 3 polls; ≤ 1 request per poll",
        {**_s(401), "route": "*", "times": 1000},
        expect="error",
    ),
    Case(
        "persistent 500",
        "trigger",
        "`error` event after the error budget; bounded requests",
        {**_s(500), "route": "*", "times": 1000},
        expect="error",
    ),
    Case(
        "unknown state",
        "trigger",
        "keeps waiting, then `success`",
        {"kind": "unknown_state", "route": "tasks", "times": 3},
        expect="success",
    ),
    Case(
        "generation ends failed",
        "trigger",
        "`failed` event naming the failure_reason",
        prompt="a ship #fail",
        expect="failed",
    ),
]


#: The whole-DAG layer, verified by the named tests (they run `airflow dags test` or a real Airflow).
DAG_ROWS = [
    (
        "429, 503 on submit; 500, reset, truncated JSON on batch status; short and reset downloads",
        "all videos, each paid once",
        "tests/system/test_example_dags.py::test_daily_dag_rides_out_gateway_faults",
    ),
    (
        "a generation ends failed",
        "its wait task fails naming failure_reason; the manifest lists it; the run "
        "is marked failed after the report",
        "tests/system/test_example_dags.py::test_daily_content_end_to_end_with_a_failing_prompt",
    ),
    (
        "worker dies right after submit",
        "the retry reuses the recorded generation; one submission",
        "tests/integration/operators/test_luma.py::TestNeverPayTwice",
    ),
    (
        "triggerer killed mid-wait",
        "a new triggerer resumes every wait; one submission per prompt",
        "tests/e2e/test_real_airflow.py",
    ),
]


def render_doc() -> str:
    lines = [
        "# Fault matrix",
        "",
        "Generated from `tests/integration/test_fault_matrix.py` (each row is a test against the sandbox's",
        "fault injection; regenerate with `UPDATE_FAULT_MATRIX=1 pytest tests/integration/test_fault_matrix.py`).",
        "Layers: **status** = hook status lookups, **submit** = hook `POST /luma/generations`,",
        "**trigger** = `LumaTrigger` via the shared poller; the whole-DAG layer is at the end.",
        "",
        "| fault | layer | outcome |",
        "|---|---|---|",
    ]
    lines += [f"| {c.fault} | {c.layer} | {c.outcome} |" for c in CASES]
    lines += ["", "## Whole DAG", "", "| fault | outcome | test |", "|---|---|---|"]
    lines += [f"| {fault} | {outcome} | `{test}` |" for fault, outcome, test in DAG_ROWS]
    return "\n".join(lines) + "\n"


@pytest.fixture
def gateway(monkeypatch):
    with LumaSandbox(port=0, api_key=KEY, queue_seconds=0.2, process_seconds=0.3) as sandbox:
        monkeypatch.setenv(
            "AIRFLOW_CONN_LUMA_DEFAULT", connection_json(sandbox.url, key=KEY, max_retries=3, timeout=1.5)
        )
        yield sandbox


def _ids(layer: str) -> list[Any]:
    return [pytest.param(c, id=f"{c.layer}-{c.fault}") for c in CASES if c.layer == layer]


class TestStatusFaults:
    @pytest.mark.parametrize("case", _ids("status"))
    def test_status(self, case: Case, gateway: LumaSandbox):
        hook = LumaHook()
        gen = hook.submit_generation(case.prompt)
        if case.expect is LumaGenerationFailed:
            with pytest.raises(LumaGenerationFailed, match="Advanced prompt moderation failed"):
                hook.wait_for_generations([gen.id], poll_interval=0.2, timeout=10)
            return
        gateway.add_fault(route="get", **case.rule)
        before = gateway.stats()["requests"]
        if isinstance(case.expect, type):
            with pytest.raises(case.expect) as info:
                hook.get_generation(gen.id)
            assert str(info.value.status) in str(info.value)  # the message names the HTTP status
            assert gateway.stats()["requests"] - before == 1  # failed at once: no retry
            return
        result = hook.get_generation(gen.id)
        assert result.id == gen.id
        if case.rule.get("kind") == "unknown_state":
            assert result.state == LumaState.UNKNOWN and not result.is_terminal
        else:
            assert result.state in (LumaState.QUEUED, LumaState.RUNNING, LumaState.COMPLETED)
            assert hook.requests_sent >= 3  # submit + a failed attempt + the retry that worked


class TestSubmitFaults:
    @pytest.mark.parametrize("case", _ids("submit"))
    def test_submit(self, case: Case, gateway: LumaSandbox):
        if case.config.get("refused"):
            _refused_submit()
            return
        gateway.configure(**case.config) if case.config else None
        if case.rule:
            gateway.add_fault(route="submit", **case.rule)
        hook = LumaHook()
        if case.expect is None:
            gen = hook.submit_generation(case.prompt)
            assert gateway.submissions == 1 and gen.id
            assert gateway.stats()["by_route"]["submit"] >= 2
            return
        with pytest.raises(case.expect) as info:
            hook.submit_generation(case.prompt)
        assert hook.requests_sent == 1  # never resubmitted
        if case.expect is LumaAmbiguousSubmitError:
            assert "may have accepted the job" in str(info.value)
            if case.rule.get("after_processing"):
                assert gateway.submissions == 1


def _refused_submit() -> None:
    import socket

    from luma_provider.exceptions import LumaTransportError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ["AIRFLOW_CONN_LUMA_DEFAULT"] = connection_json(
        f"http://127.0.0.1:{port}", key=KEY, max_retries=1
    )
    hook = LumaHook()
    with pytest.raises(LumaTransportError) as info:
        hook.submit_generation("a calm lake")
    assert info.value.sent is False and not isinstance(info.value, LumaAmbiguousSubmitError)
    assert hook.requests_sent == 2  # retried: the request provably never reached the gateway


class TestTriggerFaults:
    @pytest.mark.parametrize("case", _ids("trigger"))
    def test_trigger(self, case: Case, gateway: LumaSandbox):
        gen = LumaHook().submit_generation(case.prompt)
        if case.rule:
            gateway.add_fault(**case.rule)
        before = gateway.stats()["requests"]
        interval = 0.3
        trigger = LumaTrigger([gen.id], poll_interval=interval, deadline=time.time() + 30, error_budget=4)
        started = time.monotonic()
        event = asyncio.run(_first_event(trigger))
        elapsed = time.monotonic() - started
        assert event["status"] == case.expect
        assert "http" not in json.dumps(event)  # no URLs in events (the triggerer logs them)
        if case.expect == "failed":
            assert "Advanced prompt moderation failed" in event["message"]
        if case.expect == "error":
            sent = gateway.stats()["requests"] - before
            # At most one poll per interval, each with at most 1 + POLL_RETRIES attempts: no hot loop.
            assert sent <= 2 * (elapsed / interval + 2), (sent, elapsed)
            assert "consecutive" in event["message"]


async def _first_event(trigger: LumaTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("trigger ended without an event")


#: Written by tests/integration/test_hostile_gateway.py; this test leaves it as it is.
HOSTILE_SECTION = "## Hostile gateway"


def test_doc_is_current():
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    rest = current[current.index(HOSTILE_SECTION) :] if HOSTILE_SECTION in current else ""
    text = render_doc() + ("\n" + rest if rest else "")
    if os.environ.get("UPDATE_FAULT_MATRIX"):
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == text, "docs/fault-matrix.md is stale: set UPDATE_FAULT_MATRIX=1"
