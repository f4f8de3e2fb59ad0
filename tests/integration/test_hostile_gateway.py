"""The hostile-gateway suite: each case of the hardening issue (#9) against a real hostile server.

Every test is registered with ``@case(number, fault, behaviour)``; those rows are the
"Hostile gateway" section of ``docs/fault-matrix.md`` (``test_doc_section_is_current`` fails when
it is stale; regenerate with ``UPDATE_FAULT_MATRIX=1 pytest tests/integration``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import math
import os
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow_helpers import connection_json
from hostile_server import KEY, HostileServer, Reply, generation, gzip_bomb, stream_reply

from luma_provider import api
from luma_provider.exceptions import (
    LumaConfigError,
    LumaDownloadError,
    LumaError,
    LumaResponseTooLargeError,
    LumaTransportError,
    LumaValidationError,
)
from luma_provider.hooks.luma import LumaHook
from luma_provider.ledger import GenerationLedger
from luma_provider.reuse import STATE_GENERATION_ID, GenerationReuse
from luma_provider.sandbox import LumaSandbox

DOC = Path(__file__).resolve().parents[2] / "docs" / "fault-matrix.md"
SECTION = "## Hostile gateway"
ROWS: list[tuple[int, str, str, str]] = []
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x11" * 5000


def case(number: int, fault: str, behaviour: str) -> Callable[[Any], Any]:
    """Register a test as the check of one numbered case of the hardening issue."""

    def mark(test: Any) -> Any:
        ROWS.append((number, fault, behaviour, test.__qualname__))
        return test

    return mark


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- 1-2 paying twice
SUBMIT = ("POST", "/luma/generations")


def _ambiguous_replies() -> dict[str, Reply]:
    accepted = generation("gen-acc-1", "pending")
    return {
        "read timeout": Reply(body=accepted, delay=4),
        "502": Reply(502, "<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"}),
        "504": Reply(504, {"error": {"message": "upstream timed out"}}),
        "created_at Infinity": Reply(body='{"id": "gen-acc-1", "state": "pending", "created_at": Infinity}'),
        "HTML page with 200": Reply(body="<html>welcome</html>", headers={"Content-Type": "text/html"}),
    }


@case(
    1,
    "ambiguous submit (read timeout, 502/504, `created_at: Infinity`, HTML 200) with `retries=1`",
    "task fails at once without Airflow retries (`LumaAmbiguousSubmitError` is an `AirflowFailException`); "
    "one POST; `ambiguous_submit='retry'` opts into a second",
)
@pytest.mark.parametrize("kind", list(_ambiguous_replies()))
def test_ambiguous_submit_is_not_retried_by_airflow(kind, hostile, run_dag, monkeypatch):
    gateway: HostileServer = hostile()
    gateway.on(*SUBMIT, _ambiguous_replies()[kind])
    monkeypatch.setenv(
        "AIRFLOW_CONN_LUMA_DEFAULT", connection_json(gateway.url, key=KEY, max_retries=2, timeout=2)
    )
    result = run_dag.run("""
        LumaGenerateOperator(task_id="submit", prompt="a red fox", retries=1, retry_delay=timedelta(0))
    """)
    assert result.ti("submit").state == "failed"
    assert len(gateway.requests(*SUBMIT)) == 1  # paid at most once
    assert "LumaAmbiguousSubmitError" in result.log
    assert "not submitted again" in result.log and "task list" in result.log
    assert KEY not in result.log


@case(1, "the same, with `ambiguous_submit='retry'`", "Airflow's retry submits again (the documented opt-in)")
def test_ambiguous_submit_retry_option_lets_airflow_retry(hostile, run_dag, monkeypatch):
    gateway: HostileServer = hostile()
    gateway.on(*SUBMIT, Reply(502, "bad gateway"), Reply(body=generation("gen-2", "pending")))
    monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", connection_json(gateway.url, key=KEY, max_retries=0))
    result = run_dag.run("""
        LumaGenerateOperator(task_id="submit", prompt="a red fox", retries=1, retry_delay=timedelta(0),
                             ambiguous_submit="retry")
    """)
    assert result.ti("submit").state == "success"
    assert result.xcom("submit") == "gen-2"
    assert len(gateway.requests(*SUBMIT)) == 2
    assert "the video may be paid twice" in result.log


def test_ambiguous_submit_option_is_validated():
    from luma_provider.operators.luma import LumaGenerateOperator

    with pytest.raises(LumaValidationError, match=r"ambiguous_submit.*fail, retry"):
        LumaGenerateOperator(task_id="t", prompt="x", ambiguous_submit="maybe")


@case(
    2,
    "two runs use the same `idempotency_key` at the same moment",
    "the key is claimed in the ledger first (exclusive create); the second run waits and reuses: one submit",
)
def test_concurrent_runs_with_one_idempotency_key_pay_once(tmp_path, monkeypatch):
    with LumaSandbox(port=0, api_key=KEY, time_scale=0) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", connection_json(sandbox.url, key=KEY, max_retries=0))
        sandbox.add_fault(route="submit", kind="delay", seconds=1.0, times=2)  # both submits overlap
        ledger_root = str(tmp_path / "ledger")
        results: dict[str, Any] = {}
        start = threading.Barrier(2)

        def run(owner: str) -> None:
            hook = LumaHook()
            reuse = GenerationReuse(
                hook,
                store=None,
                ledger=GenerationLedger(ledger_root),
                key="2026-01-01:abc",
                owner=owner,
                poll=0.05,
                claim_wait=10,
            )
            start.wait()
            try:
                results[owner] = reuse.submit_once(lambda: hook.submit_generation("a red fox")).id
            except Exception as err:  # reported below
                results[owner] = err

        threads = [threading.Thread(target=run, args=(f"run-{n}",)) for n in "AB"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sandbox.submissions == 1
        assert results["run-A"] == results["run-B"] and isinstance(results["run-A"], str)
        assert GenerationLedger(ledger_root).get("2026-01-01:abc") == results["run-A"]
        assert not list((tmp_path / "ledger").glob("*.claim"))  # released after recording


def test_a_stale_claim_is_taken_over(tmp_path):
    ledger = GenerationLedger(str(tmp_path))
    assert ledger.claim("k", "run-A") is None
    held = ledger.claim("k", "run-B")
    assert held is not None and held.owner == "run-A"
    assert ledger.claim("k", "run-B", ttl=0.0) is None  # older than the TTL: taken over
    assert ledger.current_claim("k").owner == "run-B"


# ----------------------------------------------------------------------------- 3 files only where the user said
@case(
    3,
    '`GET /luma/generations/gen-ok-1` answers `{"id": "../../../x"}`',
    "`LumaTransportError` (no usable id); nothing written anywhere",
)
def test_returned_id_with_path_traversal_is_refused(hostile, connect, tmp_path):
    gateway = hostile()
    # The video is really there: without the id check it would be written to tmp_path/x.mp4.
    evil = generation("../../../x", video={"url": f"{gateway.url}/v.mp4"})
    gateway.on("GET", "/luma/generations/gen-ok-1", Reply(body=evil))
    gateway.on("GET", "/v.mp4", Reply(body=MP4))
    hook = connect(gateway.url)
    dest = tmp_path / "a" / "b" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(LumaTransportError, match="no usable id"):
        hook.download_video("gen-ok-1", dest)
    assert files_under(tmp_path) == []


@case(
    3,
    "a generation dict whose id is `a/b`, `../x`, `/abs/x`, `..`, 300 chars or holds NUL",
    "`LumaValidationError` before any request; nothing written",
)
@pytest.mark.parametrize("bad_id", ["a/b", "../x", "<tmp>/abs/x", "..", "x" * 300, "a\x00b", "a\\b", "a..b"])
def test_dict_ids_that_could_escape_are_refused(bad_id, hostile, connect, tmp_path):
    bad_id = bad_id.replace("<tmp>", str(tmp_path))  # an absolute path whose damage stays visible
    cdn = hostile()
    cdn.on("GET", "/v.mp4", Reply(body=MP4, headers={"Content-Type": "video/mp4"}))
    hook = connect(cdn.url)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(LumaValidationError, match="generation"):
        hook.download_video({"id": bad_id, "state": "completed", "video_url": f"{cdn.url}/v.mp4"}, dest)
    assert cdn.seen == []
    assert files_under(tmp_path) == []


def test_download_operator_refuses_a_returned_traversal_id(hostile, run_dag, monkeypatch, tmp_path):
    gateway = hostile()
    gateway.on(
        "GET",
        "/luma/generations/gen-ok-1",
        Reply(body=generation("../../../x", video={"url": f"{gateway.url}/v.mp4"})),
    )
    gateway.on("GET", "/v.mp4", Reply(body=MP4))
    monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", connection_json(gateway.url, key=KEY, max_retries=0))
    dest = tmp_path / "out" / "dest"
    result = run_dag.run(f'''
        LumaDownloadVideoOperator(task_id="download", generation_id="gen-ok-1", destination="{dest}/")
    ''')
    assert result.ti("download").state == "failed"
    assert "LumaTransportError" in result.log and "no usable id" in result.log
    assert files_under(tmp_path) == []


def test_download_operator_refuses_a_dict_with_a_traversal_id(hostile, run_dag, monkeypatch, tmp_path):
    cdn = hostile()
    cdn.on("GET", "/v.mp4", Reply(body=MP4))
    monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", connection_json(cdn.url, key=KEY, max_retries=0))
    dest = tmp_path / "out" / "dest"
    result = run_dag.run(f'''
        LumaDownloadVideoOperator(task_id="download", destination="{dest}/",
                                  generation_id={{"id": "../../x", "state": "completed", "video_url": "{cdn.url}/v.mp4"}})
    ''')
    assert result.ti("download").state == "failed"
    assert "LumaValidationError" in result.log
    assert cdn.seen == [] and files_under(tmp_path) == []


# ----------------------------------------------------------------------------- 4-6 the key
@case(
    4,
    "`video_url = http://other-host:port\\@gateway-host:port/v.mp4` (urllib3 reads `other-host`)",
    "refused before any request (`LumaDownloadError`); no Bearer header anywhere but the gateway",
)
def test_backslash_url_cannot_carry_the_key_to_another_host(hostile, connect, tmp_path):
    gateway, other = hostile("127.0.0.1"), hostile("127.0.0.2")
    other.on("GET", "/v.mp4", Reply(body=MP4))
    gateway.on("GET", "/v.mp4", Reply(body=MP4))
    hook = connect(gateway.url, allow_private_downloads=True)
    url = f"http://127.0.0.2:{other.port}\\@127.0.0.1:{gateway.port}/v.mp4"
    with pytest.raises(Exception) as info:
        hook.download_video({"id": "g1", "state": "completed", "video_url": url}, tmp_path)
    assert [s.path for s in other.seen if "authorization" in s.headers] == []  # the key never left
    assert isinstance(info.value, LumaDownloadError) and "not a plain http" in str(info.value)
    assert other.seen == [] and gateway.seen == []
    for sneaky in (url, f"http://user:pw@127.0.0.1:{gateway.port}/x", f"http://127.0.0.1:{gateway.port}\t/x"):
        assert hook.settings.auth_headers_for(sneaky) == {}
    assert hook.settings.auth_headers_for(f"{gateway.url}/luma/x") == {"Authorization": f"Bearer {KEY}"}


@case(
    5,
    "the API key (password) ends in `\\n`, or holds a newline inside",
    "surrounding whitespace is stripped (the stripped key works and is registered with the secrets masker); "
    "a key with inner control characters is a `LumaConfigError` that does not echo it",
)
def test_pasted_key_with_newline_is_stripped_and_never_echoed(hostile, connect):
    gateway = hostile()
    gateway.on("GET", "/luma/generations/g1", Reply(body=generation("g1")))
    hook = connect(gateway.url, key=f"{KEY}\n")
    assert hook.get_generation("g1").id == "g1"
    assert gateway.seen[-1].headers["authorization"] == f"Bearer {KEY}"
    assert asyncio.run(_aget(connect(gateway.url, key=f"  {KEY}\r\n"), "g1")).id == "g1"
    assert gateway.seen[-1].headers["authorization"] == f"Bearer {KEY}"

    for bad in (f"{KEY}\nX-Evil: 1", f"sk-\x00{KEY}", f"{KEY} é"):
        with pytest.raises(LumaConfigError) as info:
            connect(gateway.url, key=bad).get_generation("g1")
        assert KEY not in str(info.value) and "value not shown" in str(info.value)
        with pytest.raises(LumaConfigError) as info:
            asyncio.run(_aget(connect(gateway.url, key=bad), "g1"))
        assert KEY not in str(info.value)
    assert len(gateway.seen) == 2  # the bad keys never reached the wire


async def _aget(hook: LumaHook, gen_id: str) -> Any:
    try:
        return await hook.aget_generation(gen_id)
    finally:
        await hook.aclose()


def test_stripped_key_is_registered_with_the_secrets_masker(hostile, connect):
    # Airflow masks the connection's password as stored ("key\n"); only the hook knows the
    # stripped form that goes on the wire and into messages.
    from airflow.sdk._shared.secrets_masker import redact

    gateway = hostile()
    gateway.on("GET", "/luma/generations/g1", Reply(body=generation("g1")))
    secret = f"sk-{uuid.uuid4().hex}"  # unknown to the process-wide masker until the hook sees it
    assert redact(f"the key is {secret} end") == f"the key is {secret} end"
    connect(gateway.url, key=f"{secret}\n").get_generation("g1")
    assert redact(f"the key is {secret} end") == "the key is *** end"


@case(
    6,
    "the gateway echoes the key in `failure_reason`, an error `code` or message; a 10 MB reply",
    "redacted (`***`) in exceptions, XCom, manifest and gallery; XCom holds only normalized fields",
)
def test_gateway_echoed_key_is_redacted_everywhere(hostile, connect, tmp_path):
    gateway = hostile()
    gateway.on(
        "GET",
        "/luma/generations/g1",
        Reply(
            body=generation("g1", "failed", failure_reason=f"key {KEY} is not allowed", prompt=f"echo {KEY}")
        ),
    )
    gateway.on("GET", "/luma/generations/g2", Reply(400, {"error": {"code": KEY, "message": f"bad {KEY}!"}}))
    hook = connect(gateway.url)
    gen = hook.get_generation("g1")
    assert gen.failure_reason == "key *** is not allowed" and gen.prompt == "echo ***"
    assert KEY not in json.dumps(gen.to_dict())
    with pytest.raises(LumaError) as info:
        hook.get_generation("g2")
    assert KEY not in str(info.value) and "***" in str(info.value)
    assert KEY not in repr(info.value.__dict__)

    from luma_provider.report import write_report

    gateway.on(
        "POST",
        "/luma/tasks",
        Reply(body=[generation("g1", "failed", failure_reason=f"key {KEY} is not allowed")]),
    )
    write_report(run_id="r1", output_dir=str(tmp_path), rows=[{"prompt": "p", "generation_id": "g1"}])
    for name in ("manifest.json", "index.html"):
        text = (tmp_path / name).read_text()
        assert KEY not in text and "key *** is not allowed" in text


def test_a_huge_reply_never_becomes_a_huge_xcom(hostile, run_dag, monkeypatch):
    gateway = hostile()
    gateway.on(*SUBMIT, Reply(body=generation("gen-big", "pending", padding="x" * (10 * 1024**2))))
    monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", connection_json(gateway.url, key=KEY, max_retries=0))
    result = run_dag.run("""
        LumaGenerateOperator(task_id="submit", prompt="a red fox")
    """)
    assert result.ti("submit").state == "success"
    stored = result.xcom("submit", "generation")
    assert stored["id"] == "gen-big" and "raw" not in stored
    assert len(json.dumps(stored)) < 2000


# ----------------------------------------------------------------------------- 7-8 memory and time
def _peak_mib(fn: Callable[[], Any]) -> tuple[float, BaseException | None]:
    tracemalloc.start()
    error = None
    try:
        fn()
    except BaseException as err:
        error = err
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1024**2, error


@case(
    7,
    "a 300 MiB JSON reply; a small gzip bomb (1 GiB of zeros); a 300 MiB error page during a download",
    "`LumaResponseTooLargeError` at the cap (16 MiB default, extra `max_response_bytes`), not retried; "
    "error bodies read to 8 KiB; memory stays near the cap (sync and async)",
)
def test_huge_replies_and_gzip_bombs_are_capped(hostile, connect, tmp_path):
    gateway = hostile()
    big = 300 * 1024**2
    gateway.on("GET", "/luma/generations/big", stream_reply(big))
    gateway.on(
        "GET", "/luma/generations/bomb", Reply(body=gzip_bomb(1024**3), headers={"Content-Encoding": "gzip"})
    )
    gateway.on("GET", "/v.mp4", stream_reply(big, status=500, content_type="text/html"))
    hook = connect(gateway.url, max_response_bytes=4 * 1024**2)
    for path in ("big", "bomb"):
        peak, error = _peak_mib(lambda p=path: hook.get_generation(p))
        assert isinstance(error, LumaResponseTooLargeError), error
        assert peak < 24, peak
        peak, error = _peak_mib(
            lambda p=path: asyncio.run(_aget(connect(gateway.url, max_response_bytes=4 * 1024**2), p))
        )
        assert isinstance(error, LumaResponseTooLargeError), error
        assert peak < 24, peak
    assert len(gateway.requests("GET", "/luma/generations/big")) == 2  # never retried
    peak, error = _peak_mib(
        lambda: hook.download_file(f"{gateway.url}/v.mp4", tmp_path, default_name="v.mp4")
    )
    assert isinstance(error, LumaError) and "HTTP 500" in str(error), error
    assert peak < 8, peak


@case(
    8,
    "a reply dripping 1 byte every 0.5 s with `timeout=1.5`",
    "the `timeout` extra bounds the whole API request (sync and async): `LumaTransportError` after ~1.5 s; "
    "downloads fail after `download_stall_timeout` without a byte",
)
def test_timeout_bounds_the_whole_request(hostile, connect, tmp_path):
    gateway = hostile()
    body = json.dumps(generation("g1")).encode()
    gateway.on("GET", "/luma/generations/g1", Reply(body=body, drip=1, drip_interval=0.5))
    hook = connect(gateway.url, timeout=1.5)
    started = time.monotonic()
    with pytest.raises(LumaTransportError):
        hook.get_generation("g1")
    assert time.monotonic() - started < 4  # was len(body) * 0.5 s, ~30 s
    started = time.monotonic()
    with pytest.raises(LumaTransportError):
        asyncio.run(_aget(connect(gateway.url, timeout=1.5), "g1"))
    assert time.monotonic() - started < 4

    def stall(seen: Any, sock: Any) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        time.sleep(6)

    gateway.on("GET", "/stall.mp4", stall)
    hook = connect(gateway.url, download_stall_timeout=1, allow_private_downloads=True)
    started = time.monotonic()
    with pytest.raises(LumaTransportError):
        hook.download_file(f"{gateway.url}/stall.mp4", tmp_path, default_name="s.mp4")
    assert time.monotonic() - started < 4
    assert files_under(tmp_path) == []


# ----------------------------------------------------------------------------- 9 hostile JSON
DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE_BODIES = {
    "created_at Infinity": '{"id": "g1", "state": "completed", "created_at": Infinity}',
    "created_at NaN": '{"id": "g1", "state": "completed", "created_at": NaN}',
    "created_at 1e300": '{"id": "g1", "state": "completed", "created_at": 1e300}',
    "width 1e400": '{"id": "g1", "state": "completed", "video": {"url": "http://x/v.mp4", "width": 1e400}}',
    "400-digit integer": '{"id": "g1", "state": "completed", "created_at": %s}' % ("9" * 400),
    "100k-deep nesting": f'{{"id": "g1", "state": {DEEP}}}',
    "id 100k-deep": DEEP,
}
HOSTILE_ERRORS = {
    "422 detail [{loc: 5}]": Reply(422, {"detail": [{"loc": 5, "msg": "bad"}]}),
    "422 detail mixing dicts and strings": Reply(422, {"detail": [{"loc": ["body"], "msg": "m"}, "oops", 3]}),
    "429 Retry-After: nan": Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "nan"}),
    "503 Retry-After: inf": Reply(503, {"error": {"message": "busy"}}, {"Retry-After": "inf"}),
}


@case(
    9,
    "hostile JSON: `created_at` Infinity/NaN/1e300, `width` 1e400, a 400-digit integer, 100k-deep nesting",
    "parses cleanly with the field dropped, or `LumaTransportError` (retried); never a bare Python error",
)
@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_hostile_json_is_a_luma_error_or_parses(name, hostile, connect):
    gateway = hostile()
    gateway.on("GET", "/luma/generations/g1", Reply(body=HOSTILE_BODIES[name]))
    hook = connect(gateway.url)
    outcome: Any
    try:
        outcome = hook.get_generation("g1")
    except LumaError as err:  # anything else (OverflowError, RecursionError...) fails the test
        outcome = err
    if isinstance(outcome, LumaError):
        assert isinstance(outcome, LumaTransportError), outcome
    else:
        gen = outcome
        assert gen.id == "g1"
        assert gen.created_at is None and gen.width is None
        json.dumps(gen.to_dict(), allow_nan=False)  # XCom-safe
    with contextlib.suppress(LumaError):
        asyncio.run(_aget(connect(gateway.url), "g1"))


@case(
    9,
    'a 422 `detail` of `[{"loc": 5}]` or mixing dicts and strings; `Retry-After: nan` / `inf`',
    "`LumaBadRequestError` with the readable parts; NaN/inf hints ignored (own backoff)",
)
@pytest.mark.parametrize("name", list(HOSTILE_ERRORS))
def test_hostile_error_replies_are_luma_errors(name, hostile, connect):
    gateway = hostile()
    gateway.on("GET", "/luma/generations/g1", HOSTILE_ERRORS[name], Reply(body=generation("g1")))
    hook = connect(gateway.url, max_retries=1)
    if HOSTILE_ERRORS[name].status in (429, 503):
        started = time.monotonic()
        assert hook.get_generation("g1").id == "g1"  # retried after our own backoff ...
        assert time.monotonic() - started < 10  # ... not after a NaN/inf hint (capped at 120 s)
        return
    with pytest.raises(LumaError, match="HTTP 422"):
        hook.get_generation("g1")


@case(
    9,
    "hostile JSON in the shared poller, every cycle",
    "the trigger ends with an `error` event after its budget; no traceback logged",
)
def test_poller_survives_hostile_json_without_tracebacks(hostile, connect, caplog):
    from luma_provider.triggers.luma import LumaTrigger

    gateway = hostile()
    gateway.on("POST", "/luma/tasks", Reply(body=DEEP))
    gateway.on("GET", "/luma/generations/g1", Reply(body=DEEP))
    connect(gateway.url)
    trigger = LumaTrigger(["g1"], poll_interval=0.1, deadline=time.time() + 20, error_budget=3)

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    with caplog.at_level("DEBUG"):
        event = asyncio.run(first())
    assert event["status"] == "error"
    assert "LumaTransportError" in event["message"]
    assert not [r for r in caplog.records if r.exc_info]


def test_retry_after_nan_never_reaches_sleep():
    assert api.retry_after_seconds({"Retry-After": "nan"}) is None
    assert api.retry_after_seconds({"Retry-After": "inf"}) is None
    assert api.retry_after_seconds({"Retry-After": "-5"}) == 0.0
    policy = api.RetryPolicy()
    assert math.isfinite(policy.wait_seconds(1, LumaTransportError("x")))


# ----------------------------------------------------------------------------- 10-11 odd downloads
@case(
    10,
    "`Content-Length: ten`; a port out of range or not a number in `video_url`",
    "`LumaDownloadError` naming the problem; nothing written",
)
@pytest.mark.parametrize("variant", ["content-length", "port 99999", "port abc", "port -1"])
def test_odd_download_urls_and_headers(variant, hostile, connect, tmp_path):
    cdn = hostile()
    cdn.on("GET", "/v.mp4", Reply(body=MP4, headers={"Content-Length": "ten"}))
    hook = connect(cdn.url)
    url = {
        "content-length": f"{cdn.url}/v.mp4",
        "port 99999": "http://127.0.0.1:99999/v.mp4",
        "port abc": "http://127.0.0.1:abc/v.mp4",
        "port -1": "http://127.0.0.1:-1/v.mp4",
    }[variant]
    with pytest.raises(LumaDownloadError, match=r"Content-Length|not a plain http"):
        hook.download_video({"id": "g1", "state": "completed", "video_url": url}, tmp_path)
    assert files_under(tmp_path) == []


@case(
    10,
    "a 403 from the video CDN",
    "`LumaDownloadError`: the video URL was refused or expired (not 'bad API key')",
)
def test_cdn_403_is_an_expired_url_not_a_bad_key(hostile, connect, tmp_path):
    cdn = hostile()
    cdn.on(
        "GET", "/v.mp4", Reply(403, "<Error><Code>AccessDenied</Code></Error>", {"Content-Type": "text/xml"})
    )
    hook = connect(cdn.url)
    with pytest.raises(LumaDownloadError, match=r"video URL was refused .*HTTP 403.*expired"):
        hook.download_video({"id": "g1", "state": "completed", "video_url": f"{cdn.url}/v.mp4"}, tmp_path)
    assert len(cdn.seen) == 1  # not retried
    assert files_under(tmp_path) == []


@case(
    11,
    "a gzip-encoded download (`Content-Encoding: gzip`, Content-Length of the compressed body)",
    "decoded and written; the length check compares bytes on the wire with Content-Length",
)
def test_gzip_encoded_download(hostile, connect, tmp_path):
    cdn = hostile()
    body = MP4 + bytes(range(256)) * 400
    packed = gzip.compress(body)
    cdn.on(
        "GET", "/v.mp4", Reply(body=packed, headers={"Content-Encoding": "gzip", "Content-Type": "video/mp4"})
    )
    hook = connect(cdn.url)
    hook.download_video({"id": "g1", "state": "completed", "video_url": f"{cdn.url}/v.mp4"}, tmp_path)
    assert (tmp_path / "g1.mp4").read_bytes() == body
    # A truncated gzip body is still short on the wire: no file.
    cdn.on(
        "GET",
        "/short.mp4",
        lambda seen, sock: sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
            + packed[:100]
        ),
    )
    with pytest.raises(LumaTransportError):
        hook.download_video({"id": "g2", "state": "completed", "video_url": f"{cdn.url}/short.mp4"}, tmp_path)
    assert files_under(tmp_path) == ["g1.mp4"]


# ----------------------------------------------------------------------------- 12 corrupt ledger
class DictStore:
    """The task state store's get/set, for driving ``GenerationReuse`` without a task."""

    def __init__(self, **values: Any) -> None:
        self.values = dict(values)

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


@case(
    12,
    "a corrupt ledger entry (truncated JSON, a JSON list, non-UTF-8 bytes, a bad id)",
    "the task state store is consulted first and wins; a corrupt entry is logged and treated as absent",
)
@pytest.mark.parametrize(
    "content",
    [
        b'{"key": "k", "generation_id": "g',
        b'["g1"]',
        b"\xff\xfe\x00garbage",
        b'{"key": "k", "generation_id": "../../x"}',
    ],
)
def test_corrupt_ledger_entry_never_blocks(content, tmp_path, caplog):
    with LumaSandbox(port=0, api_key=KEY, time_scale=0) as sandbox:
        hook = _sandbox_hook(sandbox)
        paid = hook.submit_generation("a red fox").id
        ledger = GenerationLedger(str(tmp_path))
        ledger.record("k", paid)
        entry = next(tmp_path.glob("*.json"))
        entry.write_bytes(content)

        store = DictStore(**{STATE_GENERATION_ID: paid})
        reuse = GenerationReuse(hook, store=store, ledger=ledger, key="k", owner="o")
        assert reuse.submit_once(lambda: hook.submit_generation("a red fox")).id == paid
        assert sandbox.submissions == 1

        with caplog.at_level("WARNING"):
            fresh = GenerationReuse(hook, store=DictStore(), ledger=ledger, key="k", owner="o")
            new = fresh.submit_once(lambda: hook.submit_generation("a red fox"))
        assert new.id != paid and sandbox.submissions == 2
        assert any(
            "treating it as absent" in r.message or "no valid generation id" in r.message
            for r in caplog.records
        )
        assert ledger.get("k") == new.id  # the corrupt entry was replaced


def _sandbox_hook(sandbox: LumaSandbox) -> LumaHook:
    os.environ["AIRFLOW_CONN_LUMA_DEFAULT"] = connection_json(sandbox.url, key=KEY, max_retries=0)
    return LumaHook()


# ----------------------------------------------------------------------------- 13 intervals
BAD_SECONDS = [-1, 0, 1e-6, math.nan, math.inf, "soon", 1e300]


@case(
    13,
    "`poll_interval` / `timeout` of -1, 0, 1e-6, NaN, inf, 'soon', 1e300",
    "`LumaValidationError` naming the field (operator, sensor, trigger, hook), before any request",
)
@pytest.mark.parametrize("value", BAD_SECONDS, ids=str)
def test_bad_intervals_are_refused_everywhere(value, hostile, connect):
    from luma_provider.operators.luma import LumaGenerateOperator
    from luma_provider.sensors.luma import LumaTaskSensor
    from luma_provider.triggers.luma import LumaTrigger

    gateway = hostile()
    hook = connect(gateway.url)
    for field in ("poll_interval", "timeout"):
        with pytest.raises(LumaValidationError, match=field):
            LumaGenerateOperator(task_id="t", prompt="x", **{field: value})
        with pytest.raises(LumaValidationError, match=field):
            LumaTaskSensor(task_id="w", generation_id="g1", **{field: value})
        with pytest.raises(LumaValidationError, match=field):
            hook.wait_for_generations(["g1"], **{field: value})
    with pytest.raises(LumaValidationError, match="poll_interval"):
        LumaTrigger(["g1"], poll_interval=value)
    assert gateway.seen == []


# ----------------------------------------------------------------------------- 14 SSRF
@case(
    14,
    "the gateway hands out a video URL on a loopback, private or link-local host (also via a redirect)",
    "`LumaDownloadError` before connecting, re-checked on every redirect hop; the gateway's own origin "
    "and the extra `allow_private_downloads=true` allow it",
)
def test_downloads_refuse_private_hosts_unless_allowed(hostile, connect, tmp_path):
    gateway, inside = hostile("127.0.0.1"), hostile("127.0.0.2")
    inside.on("GET", "/secret.mp4", Reply(body=MP4))
    gateway.on("GET", "/own.mp4", Reply(body=MP4))
    gateway.on("GET", "/hop.mp4", Reply(302, "", {"Location": f"{inside.url}/secret.mp4"}))
    hook = connect(gateway.url)
    for url in (
        f"{inside.url}/secret.mp4",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/x",
        "http://10.0.0.1/x",
        f"{gateway.url}/hop.mp4",
    ):
        with pytest.raises(LumaDownloadError, match="allow_private_downloads"):
            hook.download_video({"id": "g1", "state": "completed", "video_url": url}, tmp_path)
    assert inside.seen == []
    hook.download_video({"id": "own", "state": "completed", "video_url": f"{gateway.url}/own.mp4"}, tmp_path)
    allowed = connect(gateway.url, allow_private_downloads=True)
    allowed.download_video(
        {"id": "hop", "state": "completed", "video_url": f"{gateway.url}/hop.mp4"}, tmp_path
    )
    assert files_under(tmp_path) == ["hop.mp4", "own.mp4"]
    assert "authorization" not in inside.seen[-1].headers  # the redirect left the gateway's origin


# ----------------------------------------------------------------------------- 17, 19 UI findings
@case(
    17,
    'the "Luma video" extra link opened `download_url` (served as an attachment)',
    '"Luma video" links the playable `video.url`; a second link "Luma video (download)" the download URL',
)
def test_extra_links_are_playable_and_download(run_dag, gateway):
    result = run_dag.run("""
        LumaGenerateOperator(task_id="submit", prompt="a waterfall", wait_for_completion=True,
                             deferrable=False, poll_interval=0.2)
    """)
    assert result.state == "success"
    done = result.xcom("submit")
    links = {k: v for k, v in result.ti("submit").xcom.items() if k.startswith("_link_")}
    assert links == {
        "_link_LumaVideoLink": done["playable_url"],
        "_link_LumaVideoDownloadLink": done["video_url"],
    }
    assert "raw=1" not in done["playable_url"] and "raw=1" in done["video_url"]


@case(
    19,
    "the connection host has no scheme (`127.0.0.1:8011`) and the gateway speaks plain HTTP",
    "the SSL error says https:// was assumed and suggests `http://127.0.0.1:8011`",
)
def test_host_without_scheme_gets_a_hint(hostile, connect):
    gateway = hostile()
    gateway.on("GET", "/luma/generations/g1", Reply(body=generation("g1")))
    hook = connect(f"127.0.0.1:{gateway.port}")
    with pytest.raises(
        LumaTransportError, match=rf"https:// was assumed.*http://127\.0\.0\.1:{gateway.port}"
    ):
        hook.get_generation("g1")


# ----------------------------------------------------------------------------- the doc
OTHER_ROWS = [
    (
        15,
        "cross-site `text/plain` POST to `/_sandbox/config`; admin routes without the key",
        "401 without the key, 415 without a JSON content type; `GET /_sandbox/health` stays open",
        "tests/integration/sandbox/test_sandbox_admin_security.py",
    ),
    (
        16,
        "exactly one mapped download (Airflow returns a single value, not a list)",
        "the manifest and gallery list the video; 0, 1 and several results tested",
        "tests/integration/test_report.py::test_report_lists_every_downloaded_video",
    ),
    (
        18,
        "mapped `wait`/`download` labelled by UUID and index",
        "labelled by prompt (`map_label`)",
        "tests/integration/test_report.py::test_mapped_instances_are_labelled_by_prompt",
    ),
    (
        19,
        "the sandbox's captions said 5.0 s · 1360×752 for 3 s 320×180 files",  # noqa: RUF001
        "metadata read from the served MP4",
        "tests/integration/sandbox/test_sandbox_media.py",
    ),
]


def render_section() -> str:
    rows = [(n, f, b, f"tests/integration/test_hostile_gateway.py::{t}") for n, f, b, t in ROWS] + OTHER_ROWS
    lines = [
        SECTION,
        "",
        "Generated from `tests/integration/test_hostile_gateway.py` (a real HTTP server scripted to misbehave;",
        "regenerate with `UPDATE_FAULT_MATRIX=1 pytest tests/integration`). Numbers are the cases of issue #9.",
        "",
        "| # | fault | behaviour now | test |",
        "|---|---|---|---|",
    ]
    lines += [f"| {n} | {f} | {b} | `{t}` |" for n, f, b, t in sorted(rows, key=lambda r: r[0])]
    return "\n".join(lines) + "\n"


def test_doc_section_is_current():
    text = DOC.read_text(encoding="utf-8")
    head = text.split(SECTION, 1)[0].rstrip("\n") + "\n\n"
    wanted = head + render_section()
    if os.environ.get("UPDATE_FAULT_MATRIX"):
        DOC.write_text(wanted, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == wanted, (
        "docs/fault-matrix.md is stale: set UPDATE_FAULT_MATRIX=1"
    )
