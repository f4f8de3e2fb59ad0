"""Admin routes (``/_sandbox/*``): key required, JSON-only bodies, health open (issue case 15).

Raw requests against a started sandbox, with exactly the headers a browser form, a no-cors
``fetch`` or another local process would send.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from luma_provider.sandbox import LumaSandbox, SandboxAdmin

KEY = "sandbox-key"  # the ``sb`` fixture's


def admin_call(
    sandbox: LumaSandbox,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """``(status, parsed JSON body)`` of one request; bytes bodies go out with no Content-Type of their own."""
    resp = requests.request(method, f"{sandbox.url}{path}", data=body, headers=headers or {}, timeout=5)
    return resp.status_code, resp.json()


def auth_still_on(sandbox: LumaSandbox) -> bool:
    """The attack's goal is ``api_key: null``; check the gateway still rejects a keyless submit."""
    resp = requests.post(f"{sandbox.url}/luma/generations", json={"user_prompt": "x"}, timeout=5)
    return resp.status_code == 401 and sandbox.api_key == KEY


TURN_AUTH_OFF = json.dumps({"api_key": None}).encode()
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": KEY}],
    ids=["no-key", "wrong-key", "no-bearer-scheme"],
)
def test_config_post_without_the_key_is_401_and_changes_nothing(sb: LumaSandbox, headers: dict) -> None:
    status, body = admin_call(sb, "POST", "/_sandbox/config", TURN_AUTH_OFF, {**JSON, **headers})
    assert status == 401
    assert "Authorization: Bearer" in body["error"]
    assert auth_still_on(sb)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_config_post_with_key_but_not_json_is_415_and_changes_nothing(sb: LumaSandbox, content_type) -> None:
    # What cross-site "simple" requests can carry: form encodings, or no type at all (no-cors fetch)
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    status, body = admin_call(sb, "POST", "/_sandbox/config", TURN_AUTH_OFF, headers)
    assert status == 415
    assert "application/json" in body["error"]
    assert auth_still_on(sb)


def test_config_post_with_key_and_json_works(sb: LumaSandbox) -> None:
    status, body = admin_call(
        sb,
        "POST",
        "/_sandbox/config",
        json.dumps({"shape": "native-array"}).encode(),
        {**AUTH, "Content-Type": "application/json; charset=utf-8"},
    )
    assert status == 200 and body["shape"] == "native-array"
    assert sb.config.shape == "native-array"
    status, body = admin_call(sb, "POST", "/_sandbox/config", TURN_AUTH_OFF, {**AUTH, **JSON})
    assert status == 200 and body["api_key"] is None
    assert (
        requests.post(f"{sb.url}/luma/generations", json={"user_prompt": "x"}, timeout=5).status_code == 200
    )


def test_health_stays_open(sb: LumaSandbox) -> None:
    assert admin_call(sb, "GET", "/_sandbox/health") == (200, {"status": "ok"})
    assert requests.head(f"{sb.url}/_sandbox/health", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/_sandbox/stats", None),
        ("GET", "/_sandbox/config", None),
        ("GET", "/_sandbox/faults", None),
        ("POST", "/_sandbox/faults", json.dumps([{"route": "get", "kind": "reset"}]).encode()),
        ("DELETE", "/_sandbox/faults", None),
        ("POST", "/_sandbox/reset", None),
    ],
)
def test_every_other_admin_route_needs_the_key(sb: LumaSandbox, submit, method, path, body) -> None:
    submit(sb)
    sb.add_fault(route="submit", kind="status", status=503)
    status, _ = admin_call(sb, method, path, body, JSON)
    assert status == 401
    assert sb.submissions == 1 and len(sb.faults()) == 1  # neither reset nor faults touched
    status, _ = admin_call(sb, method, path, body, {**AUTH, **JSON})
    assert status == 200


def test_fault_post_and_delete_with_a_non_json_body_are_415(sb: LumaSandbox) -> None:
    rule = json.dumps([{"route": "submit", "kind": "status", "status": 500}]).encode()
    plain = {**AUTH, "Content-Type": "text/plain"}
    assert admin_call(sb, "POST", "/_sandbox/faults", rule, plain)[0] == 415
    assert sb.faults() == []
    sb.add_fault(route="get", kind="empty")
    assert admin_call(sb, "DELETE", "/_sandbox/faults", b"[]", plain)[0] == 415
    assert len(sb.faults()) == 1


def test_without_a_key_admin_is_open_but_still_json_only() -> None:
    # --no-auth: nothing to check a key against, but a cross-site form must still not get in
    with LumaSandbox(port=0, api_key=None) as sandbox:
        body = json.dumps({"quota_exhausted": True}).encode()
        assert admin_call(sandbox, "POST", "/_sandbox/config", body, {"Content-Type": "text/plain"})[0] == 415
        assert sandbox.config.quota_exhausted is False
        status, config = admin_call(sandbox, "POST", "/_sandbox/config", body, JSON)
        assert status == 200 and config["quota_exhausted"] is True
        assert SandboxAdmin(sandbox.url).stats()["requests"] == 0


def test_sandbox_admin_client_sends_the_key(sb: LumaSandbox) -> None:
    with pytest.raises(ValueError, match="401"):
        SandboxAdmin(sb.url).configure(shape="native-array")
    assert sb.config.shape == "native-object"
    admin = SandboxAdmin(sb.url, api_key=KEY)
    assert admin.configure(shape="native-array")["shape"] == "native-array"
    assert KEY not in repr(admin)
    # after a key change, the client follows it (the in-process controller uses no HTTP)
    admin.configure(api_key="rotated-key")
    assert admin.stats()["config"]["api_key"] == "rot…"
    assert sb.admin.api_key == "rotated-key"
    with pytest.raises(ValueError, match="401"):
        SandboxAdmin(sb.url, api_key=KEY).stats()
