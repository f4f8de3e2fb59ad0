"""CLI, cross-process control (SandboxAdmin), pytest fixtures and import hygiene."""

from __future__ import annotations

import json
import os
import signal

import pytest
import requests

from luma_provider.sandbox import LumaSandbox, SandboxAdmin


@pytest.fixture
def cli_sandbox(cli_sandbox_process):
    with cli_sandbox_process("--time-scale", "0", "--tasks-shape", "newapi-wrapper") as started:
        yield started


def test_cli_serves_and_stops_on_sigterm(cli_sandbox) -> None:
    proc, url = cli_sandbox
    assert url.startswith("http://127.0.0.1:")
    headers = {"Authorization": "Bearer cli-key"}
    gen = requests.post(
        f"{url}/luma/generations", json={"user_prompt": "x"}, headers=headers, timeout=5
    ).json()
    tasks = requests.post(f"{url}/luma/tasks", json={"ids": [gen["id"]]}, headers=headers, timeout=5).json()
    assert tasks["data"][0]["status"] == "SUCCESS"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert f"Luma sandbox listening on {url} (API key: cli…)" in out
    assert "cli-key" not in out


def test_sandbox_admin_controls_another_process(cli_sandbox) -> None:
    _, url = cli_sandbox
    admin = SandboxAdmin(url, api_key="cli-key")
    admin.wait_ready()
    headers = {"Authorization": "Bearer cli-key"}
    assert admin.configure(shape="native-array")["shape"] == "native-array"
    admin.add_fault(route="submit", kind="status", status=503)
    first = requests.post(f"{url}/luma/generations", json={"user_prompt": "x"}, headers=headers, timeout=5)
    second = requests.post(f"{url}/luma/generations", json={"user_prompt": "x"}, headers=headers, timeout=5)
    assert (first.status_code, second.status_code) == (503, 200)
    assert isinstance(second.json(), list)
    assert admin.submissions == 1
    assert admin.stats()["by_status"] == {"503": 1, "200": 1}
    with pytest.raises(ValueError, match="400"):
        admin.configure(shape="nope")
    admin.add_fault(route="get", kind="reset")
    assert len(admin.faults()) == 2
    admin.clear_faults()
    assert admin.faults() == []
    admin.reset()
    assert admin.stats()["requests"] == 0


def test_admin_fault_routes_over_http(sb) -> None:
    headers = {"Authorization": "Bearer sandbox-key"}
    resp = requests.post(
        f"{sb.url}/_sandbox/faults", json=[{"route": "get", "kind": "empty"}], headers=headers, timeout=5
    )
    assert resp.status_code == 200 and resp.json()[0]["kind"] == "empty"
    bogus = requests.post(f"{sb.url}/_sandbox/faults", json=[{"kind": "bogus"}], headers=headers, timeout=5)
    assert bogus.status_code == 400
    # Every write needs the JSON content type, bodiless ones too (no cross-site "simple" request).
    assert requests.delete(f"{sb.url}/_sandbox/faults", headers=headers, timeout=5).status_code == 415
    json_headers = {**headers, "Content-Type": "application/json"}
    assert requests.delete(f"{sb.url}/_sandbox/faults", headers=json_headers, timeout=5).json() == []


def test_connection_json_and_uri(sb) -> None:
    conn = json.loads(sb.connection_json)
    assert conn == {
        "conn_type": "luma",
        "host": sb.url,
        "password": "sandbox-key",
        "extra": {"allow_private_downloads": True},
    }
    assert (
        sb.connection_uri == f"luma://http://:sandbox-key@127.0.0.1%3A{sb.port}?allow_private_downloads=true"
    )


def test_both_connection_forms_allow_downloads_from_the_loopback_cdn(sb) -> None:
    from airflow.models.connection import Connection

    from luma_provider.api import settings_from_connection

    from_uri = Connection(conn_id="luma_default", uri=sb.connection_uri)
    from_json = Connection.from_json(sb.connection_json, conn_id="luma_default")
    for conn in (from_uri, from_json):
        assert (conn.conn_type, conn.host, conn.password) == ("luma", sb.url, "sandbox-key")
        assert conn.extra_dejson == {"allow_private_downloads": True}
        settings = settings_from_connection(
            conn.conn_id, conn.conn_type, conn.host, conn.password, conn.port, conn.extra_dejson
        )
        assert settings.allow_private_downloads is True


def test_luma_conn_env_fixture_sets_airflow_connection(luma_conn_env: LumaSandbox) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_LUMA_DEFAULT"])
    assert conn["host"] == luma_conn_env.url
    assert conn["extra"] == {"allow_private_downloads": True}
    resp = requests.get(f"{conn['host']}/_sandbox/health", timeout=5)
    assert resp.status_code == 200


def test_session_and_function_fixtures_are_distinct_sandboxes(
    luma_sandbox_session: LumaSandbox, luma_sandbox: LumaSandbox
) -> None:
    assert luma_sandbox_session.url != luma_sandbox.url
    assert requests.get(f"{luma_sandbox_session.url}/_sandbox/health", timeout=5).ok


def test_sync_use_from_inside_a_running_event_loop() -> None:
    """The sandbox has its own loop, so async tests can use it too."""
    import asyncio

    import aiohttp

    async def scenario() -> int:
        with LumaSandbox(port=0, time_scale=0) as sandbox:
            async with aiohttp.ClientSession(headers={"Authorization": "Bearer sandbox-key"}) as session:
                async with session.post(f"{sandbox.url}/luma/generations", json={"user_prompt": "x"}) as resp:
                    await resp.json()
            return sandbox.submissions

    assert asyncio.run(scenario()) == 1


def test_sandbox_factory_fixture(luma_sandbox_factory) -> None:
    fast = luma_sandbox_factory(time_scale=0, shape="kling-wrapper", api_key="k2")
    assert "running" in repr(fast)
    headers = {"Authorization": "Bearer k2"}
    body = requests.post(
        f"{fast.url}/luma/generations", json={"user_prompt": "x #fail: boom"}, headers=headers, timeout=5
    ).json()
    task = requests.get(
        f"{fast.url}/luma/generations/{body['data']['task_id']}", headers=headers, timeout=5
    ).json()
    assert task["data"]["task_status"] == "failed" and task["data"]["task_status_msg"] == "boom"
