"""Fault injection: each kind once, plus ``times``/``skip``/``after_processing`` counting."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time

import pytest
import requests

from luma_provider.sandbox import LumaSandbox

SUBMIT = "/luma/generations"


def test_status_fault_with_default_429_body_and_retry_after(instant, api, submit) -> None:
    instant.add_fault(route="submit", kind="status", status=429, retry_after=1, times=2)
    for _ in range(2):
        resp = api(instant, "POST", SUBMIT, json={"user_prompt": "x"})
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "1"
        assert resp.json()["error"]["message"].startswith("当前分组上游负载已饱和，请稍后再试 (request id: ")  # noqa: RUF001
    assert api(instant, "POST", SUBMIT, json={"user_prompt": "x"}).status_code == 200
    assert instant.submissions == 1  # the two 429s created nothing
    stats = instant.stats()
    assert stats["by_route"]["submit"] == 3 and stats["by_status"]["429"] == 2


def test_status_fault_custom_body_and_headers(instant, api, submit) -> None:
    gen_id = submit(instant)
    instant.add_fault(
        route="get", kind="status", status=502, body="upstream exploded", headers={"X-Why": "test"}
    )
    resp = api(instant, "GET", f"/luma/generations/{gen_id}")
    assert resp.status_code == 502 and resp.text == "upstream exploded" and resp.headers["X-Why"] == "test"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 400, 401, 403, 404])
def test_status_fault_default_bodies_are_json_envelopes(instant, api, status) -> None:
    instant.add_fault(route="submit", kind="status", status=status)
    resp = api(instant, "POST", SUBMIT, json={"user_prompt": "x"})
    assert resp.status_code == status
    body = resp.json()
    assert "error" in body or "code" in body


def test_skip_lets_first_requests_through(instant, api) -> None:
    instant.add_fault(route="submit", kind="status", status=500, skip=2, times=1)
    codes = [api(instant, "POST", SUBMIT, json={"user_prompt": "x"}).status_code for _ in range(4)]
    assert codes == [200, 200, 500, 200]
    assert instant.submissions == 3
    (rule,) = instant.faults()
    assert rule["seen"] == 3 and rule["hits"] == 1


def test_wildcard_route_and_clear_faults(instant, api, submit) -> None:
    gen_id = submit(instant)
    instant.add_fault(route="*", kind="status", status=503, times=10)
    assert api(instant, "GET", f"/luma/generations/{gen_id}").status_code == 503
    assert requests.get(f"{instant.url}/media/{gen_id}.mp4", timeout=5).status_code == 503
    instant.clear_faults()
    assert api(instant, "GET", f"/luma/generations/{gen_id}").status_code == 200


def test_reset_drops_connection_without_creating_generation(instant, api) -> None:
    instant.add_fault(route="submit", kind="reset")
    with pytest.raises(requests.ConnectionError):
        api(instant, "POST", SUBMIT, json={"user_prompt": "x"})
    assert instant.submissions == 0
    stats = instant.stats()
    assert stats["by_status"] == {"reset": 1} and stats["recent"][-1]["fault"] == "reset"


@pytest.mark.parametrize("kind", ["reset", "status"])
def test_after_processing_creates_generation_then_fails(instant, api, kind) -> None:
    instant.add_fault(route="submit", kind=kind, status=504, after_processing=True)
    with pytest.raises(requests.ConnectionError) if kind == "reset" else contextlib.nullcontext():
        resp = api(instant, "POST", SUBMIT, json={"user_prompt": "x"})
        assert resp.status_code == 504
    assert instant.submissions == 1  # the gateway took the job although the client saw a failure
    assert instant.stats()["generations"] == 1


def test_reset_mid_body_on_json_route(instant, api, submit) -> None:
    gen_id = submit(instant)
    instant.add_fault(route="get", kind="reset_mid_body")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api(instant, "GET", f"/luma/generations/{gen_id}")


def test_reset_mid_body_on_submit_creates_nothing(instant, api) -> None:
    instant.add_fault(route="submit", kind="reset_mid_body")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api(instant, "POST", SUBMIT, json={"user_prompt": "x"})
    assert instant.submissions == 0


def test_short_body_on_media(instant, submit) -> None:
    gen_id = submit(instant)
    instant.add_fault(route="media", kind="short_body")
    conn = http.client.HTTPConnection("127.0.0.1", instant.port, timeout=5)
    conn.request("GET", f"/media/{gen_id}.mp4")
    resp = conn.getresponse()
    declared = int(resp.headers["Content-Length"])
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert len(info.value.partial) == declared // 2
    conn.close()


def test_short_body_on_blob(instant) -> None:
    instant.add_fault(route="media", kind="short_body")
    conn = http.client.HTTPConnection("127.0.0.1", instant.port, timeout=5)
    conn.request("GET", "/media/blob?size=1000000")
    resp = conn.getresponse()
    assert resp.headers["Content-Length"] == "1000000"
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert len(info.value.partial) == 500000
    conn.close()


def test_delay_triggers_client_timeout_and_still_processes(instant, api) -> None:
    instant.add_fault(route="submit", kind="delay", seconds=1.0)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            instant.url + SUBMIT,
            json={"user_prompt": "x"},
            headers={"Authorization": "Bearer sandbox-key"},
            timeout=0.3,
        )
    assert time.monotonic() - started < 0.9
    time.sleep(0.9)
    assert instant.submissions == 1  # like a gateway that got the job but answered too late


def test_html_fault(instant, api) -> None:
    instant.add_fault(route="submit", kind="html", status=502)
    resp = api(instant, "POST", SUBMIT, json={"user_prompt": "x"})
    assert resp.status_code == 502 and resp.headers["Content-Type"].startswith("text/html")
    assert "<html>" in resp.text and "502 Bad Gateway" in resp.text
    instant.add_fault(route="submit", kind="html")
    assert api(instant, "POST", SUBMIT, json={"user_prompt": "x"}).status_code == 200
    assert instant.submissions == 0


def test_truncated_json_fault(instant, api, submit) -> None:
    gen_id = submit(instant)
    instant.add_fault(route="get", kind="truncated_json")
    resp = api(instant, "GET", f"/luma/generations/{gen_id}")
    assert resp.status_code == 200 and resp.text.startswith('{"id": ')
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.text)


def test_empty_fault(instant, api) -> None:
    instant.add_fault(route="tasks", kind="empty")
    resp = api(instant, "POST", "/luma/tasks", json={"ids": []})
    assert resp.status_code == 200 and resp.content == b""


@pytest.mark.parametrize("shape", ["native-object", "kling-wrapper"])
def test_unknown_state_fault(instant, api, submit, shape) -> None:
    gen_id = submit(instant)
    instant.configure(shape=shape)
    instant.add_fault(route="get", kind="unknown_state")
    body = api(instant, "GET", f"/luma/generations/{gen_id}").json()
    state = body["data"]["task_status"] if shape == "kling-wrapper" else body["state"]
    assert state == "weird_new_state"


def test_unknown_state_fault_in_tasks_wrapper(instant, api, submit) -> None:
    gen_id = submit(instant)
    instant.configure(tasks_shape="newapi-wrapper")
    instant.add_fault(route="tasks", kind="unknown_state")
    item = api(instant, "POST", "/luma/tasks", json={"ids": [gen_id]}).json()["data"][0]
    assert item["status"] == "weird_new_state" and item["data"]["state"] == "weird_new_state"


def test_invalid_fault_rules_are_rejected(instant) -> None:
    with pytest.raises(ValueError, match="kind"):
        instant.add_fault(route="submit", kind="explode")
    with pytest.raises(ValueError, match="route"):
        instant.add_fault(route="everything", kind="reset")
    with pytest.raises(ValueError, match="status"):
        instant.add_fault(route="submit", kind="status")
    assert instant.faults() == []


def test_reset_clears_generations_stats_and_faults(instant, api, submit) -> None:
    gen_id = submit(instant)
    instant.add_fault(route="get", kind="status", status=500, times=5)
    instant.reset()
    assert instant.faults() == [] and instant.submissions == 0
    assert api(instant, "GET", f"/luma/generations/{gen_id}").status_code == 404


def test_stats_never_contain_the_api_key() -> None:
    secret = "sk-very-secret-key-123"
    with LumaSandbox(port=0, api_key=secret, time_scale=0) as sandbox:
        headers = {"Authorization": f"Bearer {secret}"}
        requests.post(f"{sandbox.url}{SUBMIT}", json={"user_prompt": "x"}, headers=headers, timeout=5)
        requests.get(
            f"{sandbox.url}/luma/generations/abc", headers={"Authorization": "Bearer sk-wrong"}, timeout=5
        )
        stats_resp = requests.get(f"{sandbox.url}/_sandbox/stats", headers=headers, timeout=5)
        assert stats_resp.status_code == 200  # a 401 body would pass the check below vacuously
        over_http = stats_resp.text
        in_process = json.dumps(sandbox.stats(), ensure_ascii=False)
        for text in (over_http, in_process):
            assert secret not in text and "very-secret" not in text and "sk-wrong" not in text
        recent = sandbox.stats()["recent"]
        assert [r["auth_ok"] for r in recent] == [True, False]


def test_recent_requests_are_bounded(instant) -> None:
    with requests.Session() as session:
        for _ in range(520):
            session.get(f"{instant.url}/luma/generations/x", timeout=5)
    stats = instant.stats()
    assert stats["requests"] == 520 and len(stats["recent"]) == 500


def test_many_concurrent_keepalive_connections(instant, submit) -> None:
    gen_id = submit(instant)
    socks = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", instant.port), timeout=10)
            s.sendall(
                f"GET /luma/generations/{gen_id} HTTP/1.1\r\nHost: x\r\n"
                "Authorization: Bearer sandbox-key\r\n\r\n".encode()
            )
            socks.append(s)
        ok = sum(1 for s in socks if s.recv(64).startswith(b"HTTP/1.1 200"))
    finally:
        for s in socks:
            s.close()
    assert ok == 300
