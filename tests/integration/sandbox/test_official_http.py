"""The official flavour over plain HTTP: what the SDK hides (status codes, bodies, routing)."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from luma_provider.sandbox import LumaSandbox

V1 = "/dream-machine/v1"
VIDEO = f"{V1}/generations/video"


def create(api, sb, **body) -> dict:
    resp = api(sb, "POST", VIDEO, json={"model": "ray-2", "prompt": "a cat", **body})
    assert resp.status_code == 201, resp.text
    return resp.json()


# --------------------------------------------------------------------------- status codes, routing


@pytest.mark.parametrize("path", [VIDEO, f"{V1}/generations"])
def test_create_answers_201_queued_on_both_routes(official_sb, api, path) -> None:
    resp = api(official_sb, "POST", path, json={"model": "ray-2", "prompt": "a cat"})
    assert resp.status_code == 201
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {
        "id",
        "generation_type",
        "state",
        "failure_reason",
        "created_at",
        "assets",
        "model",
        "request",
    }
    assert body["state"] == "queued" and body["generation_type"] == "video" and body["model"] == "ray-2"
    assert body["request"] == {
        "generation_type": "video",
        "model": "ray-2",
        "prompt": "a cat",
        "aspect_ratio": "16:9",
    }
    assert official_sb.submissions == 1


def test_create_is_queued_even_when_instant(api) -> None:
    with LumaSandbox(port=0, api_flavour="official", time_scale=0) as sb:
        body = create(api, sb)
        assert body["state"] == "queued"
        assert api(sb, "GET", f"{V1}/generations/{body['id']}").json()["state"] == "completed"


def test_delete_is_204_without_body(official_sb, api) -> None:
    gen_id = create(api, official_sb)["id"]
    resp = api(official_sb, "DELETE", f"{V1}/generations/{gen_id}", headers={"Accept": "*/*"})
    assert resp.status_code == 204 and resp.content == b""
    resp = api(official_sb, "GET", f"{V1}/generations/{gen_id}")
    assert resp.status_code == 404 and resp.json() == {"detail": f"Generation {gen_id} not found"}


def test_missing_key_is_401_detail(official_sb) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        resp = requests.get(f"{official_sb.url}{V1}/credits", headers=headers, timeout=5)
        assert resp.status_code == 401
        assert resp.json() == {"detail": "Invalid API key is provided"}


def test_unknown_route_and_gateway_routes_are_404_detail(official_sb, api) -> None:
    for method, path in (
        ("GET", f"{V1}/nothing"),
        ("POST", "/luma/generations"),
        ("GET", f"/luma/generations/{uuid.uuid4()}"),
        ("POST", "/luma/tasks"),
    ):
        resp = api(official_sb, method, path, json={"user_prompt": "x"})
        assert resp.status_code == 404 and resp.json() == {"detail": "Not Found"}, path
    assert official_sb.submissions == 0


def test_official_routes_do_not_exist_in_the_gateway_flavour(sb, api) -> None:
    resp = api(sb, "POST", VIDEO, json={"model": "ray-2", "prompt": "x"})
    assert resp.status_code == 404
    assert resp.json()["error"]["message"] == f"Invalid URL (POST {VIDEO})"
    sb.configure(api_flavour="official")  # switchable at runtime, like every config field
    assert api(sb, "POST", VIDEO, json={"model": "ray-2", "prompt": "x"}).status_code == 201
    assert api(sb, "GET", f"{V1}/ping").json() == {"message": "pong"}


def test_admin_routes_keep_their_guard(official_sb) -> None:
    url = f"{official_sb.url}/_sandbox/config"
    assert requests.get(url, timeout=5).status_code == 401
    resp = requests.post(
        url,
        data="api_key=",
        headers={"Authorization": "Bearer sandbox-key", "Content-Type": "text/plain"},
        timeout=5,
    )
    assert resp.status_code == 415
    assert official_sb.admin.stats()["config"]["api_flavour"] == "official"


def test_credits_body_and_exhaustion(api) -> None:
    with LumaSandbox(port=0, api_flavour="official", starting_credits=100, time_scale=0) as sb:
        assert api(sb, "GET", f"{V1}/credits").json() == {"credit_balance": 100.0}
        create(api, sb, resolution="720p")  # 80 cents
        assert api(sb, "GET", f"{V1}/credits").json() == {"credit_balance": 20.0}
        resp = api(sb, "POST", VIDEO, json={"model": "ray-2", "prompt": "again"})
        assert resp.status_code == 400 and resp.json()["detail"].startswith("Insufficient credits")
        assert sb.submissions == 1 and sb.stats()["credit_balance"] == 20.0
        sb.reset()
        assert api(sb, "GET", f"{V1}/credits").json() == {"credit_balance": 100.0}


def test_list_body_and_bad_params(official_sb, api) -> None:
    ids = [create(api, official_sb, prompt=f"n{n}")["id"] for n in range(3)]
    body = api(official_sb, "GET", f"{V1}/generations?limit=2&offset=1").json()
    assert {k: v for k, v in body.items() if k != "generations"} == {
        "count": 2,
        "has_more": False,
        "limit": 2,
        "offset": 1,
    }
    assert [g["id"] for g in body["generations"]] == [ids[1], ids[0]]
    for query in ("limit=0", "limit=abc", "offset=-1", "limit=5000"):
        resp = api(official_sb, "GET", f"{V1}/generations?{query}")
        assert resp.status_code == 422 and query.split("=")[0] in resp.json()["detail"], query


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "field", ["user_prompt", "model_name", "expand_prompt", "image_url", "image_end_url"]
)
@pytest.mark.parametrize("path", [VIDEO, f"{V1}/generations/image"])
def test_gateway_only_fields_are_422_naming_the_field(official_sb, api, field, path) -> None:
    model = "photon-1" if path.endswith("image") else "ray-2"
    resp = api(official_sb, "POST", path, json={"model": model, "prompt": "x", field: "v"})
    assert resp.status_code == 422
    assert list(resp.json()) == ["detail"] and f"'{field}'" in resp.json()["detail"]
    assert official_sb.submissions == 0


def test_gateway_fields_are_rejected_on_upscale_and_audio_too(api) -> None:
    with LumaSandbox(port=0, api_flavour="official", time_scale=0) as sb:
        gen_id = create(api, sb)["id"]
        for route, body in (("upscale", {"resolution": "4k"}), ("audio", {"prompt": "x"})):
            resp = api(sb, "POST", f"{V1}/generations/{gen_id}/{route}", json={**body, "model_name": "x"})
            assert resp.status_code == 422 and "'model_name'" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"prompt": "x"}, 422, "'model'"),
        ({"model": "ray-2"}, 422, "'prompt'"),
        ({"model": "ray-2", "prompt": "   "}, 422, "'prompt'"),
        ({"model": "photon-1", "prompt": "x"}, 422, "'model'"),
        ({"model": "ray-2", "prompt": "x", "aspect_ratio": "2:1"}, 422, "'aspect_ratio'"),
        ({"model": "ray-2", "prompt": "x", "resolution": "8k"}, 422, "'resolution'"),
        ({"model": "ray-2", "prompt": "x", "duration": 5}, 422, "'duration'"),
        ({"model": "ray-2", "prompt": "x", "loop": "yes"}, 422, "'loop'"),
        ({"model": "ray-2", "prompt": "x", "generation_type": "image"}, 422, "'generation_type'"),
        ({"model": "ray-2", "prompt": "x", "keyframes": {"frame2": {}}}, 422, "keyframes.frame2"),
        (
            {
                "model": "ray-2",
                "prompt": "x",
                "keyframes": {"frame0": {"type": "video", "url": "http://a/b"}},
            },
            422,
            "keyframes.frame0.type",
        ),
        (
            {"model": "ray-2", "prompt": "x", "keyframes": {"frame0": {"type": "image", "url": "ftp://a/b"}}},
            422,
            "keyframes.frame0.url",
        ),
        (
            {"model": "ray-2", "prompt": "x", "keyframes": {"frame0": {"type": "generation"}}},
            422,
            "keyframes.frame0.id",
        ),
        ({"model": "ray-2", "prompt": "x", "concepts": ["dolly_zoom"]}, 422, "'concepts'"),
        ({"model": "ray-2", "prompt": "x", "concepts": [{"key": "moonwalk"}]}, 400, "moonwalk"),
        ({"model": "ray-2", "prompt": "x", "callback_url": "not a url"}, 422, "'callback_url'"),
        (["not", "an", "object"], 422, "body"),
    ],
)
def test_video_body_validation(official_sb, api, body, status, needle) -> None:
    resp = api(official_sb, "POST", VIDEO, json=body)
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["detail"]
    assert official_sb.submissions == 0


def test_invalid_json_is_422(official_sb, api) -> None:
    resp = api(official_sb, "POST", VIDEO, data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 422 and "JSON" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "ray-2", "prompt": "x"}, "'model'"),
        ({"model": "photon-1", "prompt": "x", "format": "gif"}, "'format'"),
        ({"model": "photon-1", "prompt": "x", "image_ref": [{"url": "http://a/b", "weight": 3}]}, "weight"),
        ({"model": "photon-1", "prompt": "x", "character_ref": {"identity0": {}}}, "'character_ref'"),
        ({"model": "photon-1", "prompt": "x", "sync_timeout": -1}, "'sync_timeout'"),
    ],
)
def test_image_body_validation(official_sb, api, body, needle) -> None:
    resp = api(official_sb, "POST", f"{V1}/generations/image", json=body)
    assert resp.status_code == 422 and needle in resp.json()["detail"]


def test_upscale_needs_resolution(api) -> None:
    with LumaSandbox(port=0, api_flavour="official", time_scale=0) as sb:
        gen_id = create(api, sb)["id"]
        resp = api(sb, "POST", f"{V1}/generations/{gen_id}/upscale", json={})
        assert resp.status_code == 422 and "'resolution'" in resp.json()["detail"]
        resp = api(sb, "POST", f"{V1}/generations/{gen_id}/upscale", json={"resolution": "4k"})
        assert resp.status_code == 201 and resp.json()["request"] == {
            "generation_type": "upscale_video",
            "resolution": "4k",
        }


# --------------------------------------------------------------------------- media


def test_progress_video_only_while_dreaming_or_after(official_sb, api, wait_for) -> None:
    gen_id = create(api, official_sb)["id"]
    progress = f"{official_sb.url}/media/{gen_id}_progress.mp4"
    assert requests.get(progress, timeout=5).status_code == 404  # still queued
    assert requests.get(f"{official_sb.url}/media/{gen_id}.mp4", timeout=5).status_code == 404
    body = wait_for(
        lambda: (g := api(official_sb, "GET", f"{V1}/generations/{gen_id}").json())["assets"] and g
    )
    assert body["state"] == "dreaming" and body["assets"] == {"progress_video": progress}
    resp = requests.get(progress, timeout=5)
    assert resp.status_code == 200 and resp.content[4:8] == b"ftyp"


def test_image_generation_has_no_video(api) -> None:
    with LumaSandbox(port=0, api_flavour="official", time_scale=0) as sb:
        resp = api(sb, "POST", f"{V1}/generations/image", json={"model": "photon-flash-1", "prompt": "x"})
        gen = api(sb, "GET", f"{V1}/generations/{resp.json()['id']}").json()
        assert gen["assets"] == {"image": f"{sb.url}/media/{gen['id']}.jpg"}
        assert requests.get(f"{sb.url}/media/{gen['id']}.mp4", timeout=5).status_code == 404
        assert requests.get(gen["assets"]["image"], timeout=5).status_code == 200


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("route", "method", "path"),
    [
        ("list", "GET", f"{V1}/generations"),
        ("credits", "GET", f"{V1}/credits"),
        ("ping", "GET", f"{V1}/ping"),
        ("concepts", "GET", f"{V1}/generations/concepts/list"),
        ("image", "POST", f"{V1}/generations/image"),
        ("modify", "POST", f"{V1}/generations/video/modify"),
        ("reframe_video", "POST", f"{V1}/generations/video/reframe"),
        ("reframe_image", "POST", f"{V1}/generations/image/reframe"),
    ],
)
def test_status_faults_hit_official_routes_with_detail_bodies(official_sb, api, route, method, path) -> None:
    official_sb.add_fault(route=route, kind="status", status=429, retry_after=2)
    resp = api(official_sb, method, path, json={"model": "photon-1", "prompt": "x"})
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "2"
    assert resp.json() == {"detail": "Too Many Requests"}
    assert official_sb.stats()["by_route"] == {route: 1}
    assert official_sb.submissions == 0


def test_faults_on_get_delete_upscale_audio(api) -> None:
    with LumaSandbox(port=0, api_flavour="official", time_scale=0) as sb:
        gen_id = create(api, sb)["id"]
        sb.add_faults(
            [
                {"route": "get", "kind": "status", "status": 503},
                {"route": "upscale", "kind": "status", "status": 500},
                {"route": "audio", "kind": "status", "status": 504, "after_processing": True},
                {"route": "delete", "kind": "status", "status": 502},
            ]
        )
        assert api(sb, "GET", f"{V1}/generations/{gen_id}").json() == {"detail": "Service Unavailable"}
        resp = api(sb, "POST", f"{V1}/generations/{gen_id}/upscale", json={"resolution": "4k"})
        assert resp.status_code == 500 and sb.submissions == 1  # refused before processing
        resp = api(sb, "POST", f"{V1}/generations/{gen_id}/audio", json={"prompt": "x"})
        assert resp.status_code == 504 and sb.submissions == 2  # taken, then the reply broke
        assert api(sb, "DELETE", f"{V1}/generations/{gen_id}").status_code == 502
        assert api(sb, "GET", f"{V1}/generations/{gen_id}").status_code == 200  # not deleted
        assert sb.stats()["faults_applied"] == {"status": 4}


EDIT_BODY = {"media": {"url": "https://cdn.example/a.mp4"}, "aspect_ratio": "1:1", "mode": "flex_1"}


@pytest.mark.parametrize(
    ("route", "path", "body"),
    [
        ("submit", VIDEO, {"model": "ray-2", "prompt": "x"}),
        (
            "modify",
            f"{V1}/generations/video/modify",
            {**EDIT_BODY, "generation_type": "modify_video", "model": "ray-2"},
        ),
        (
            "reframe_video",
            f"{V1}/generations/video/reframe",
            {**EDIT_BODY, "generation_type": "reframe_video", "model": "ray-2"},
        ),
        (
            "reframe_image",
            f"{V1}/generations/image/reframe",
            {**EDIT_BODY, "generation_type": "reframe_image", "model": "photon-1"},
        ),
    ],
)
def test_truncated_create_reply_creates_nothing(official_sb, api, route, path, body) -> None:
    official_sb.add_fault(route=route, kind="truncated_json")
    resp = api(official_sb, "POST", path, json=body)
    assert resp.status_code == 200 and resp.text.startswith('{"id": ')
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.text)
    assert official_sb.submissions == 0
    assert api(official_sb, "GET", f"{V1}/generations").json()["count"] == 0


def test_unknown_state_fault_on_official_get(official_sb, api) -> None:
    gen_id = create(api, official_sb)["id"]
    official_sb.add_fault(route="get", kind="unknown_state")
    assert api(official_sb, "GET", f"{V1}/generations/{gen_id}").json()["state"] == "weird_new_state"


# --------------------------------------------------------------------------- CLI, connection


def test_connection_extra_names_the_flavour(official_sb, sb) -> None:
    conn = json.loads(official_sb.connection_json)
    assert conn["extra"] == {"allow_private_downloads": True, "api_flavour": "official"}
    assert "api_flavour=%22official%22" in official_sb.connection_uri
    assert official_sb.api_base_url == f"{official_sb.url}{V1}"
    assert json.loads(sb.connection_json)["extra"] == {"allow_private_downloads": True}
    assert sb.api_base_url == sb.url


def test_cli_api_flavour_official(cli_sandbox_process) -> None:
    args = ("--api-flavour", "official", "--starting-credits", "500")
    with cli_sandbox_process(*args) as (proc, url):
        headers = {"Authorization": "Bearer cli-key"}
        assert requests.get(f"{url}{V1}/ping", headers=headers, timeout=5).json() == {"message": "pong"}
        assert requests.get(f"{url}{V1}/credits", headers=headers, timeout=5).json() == {
            "credit_balance": 500.0
        }
        assert requests.post(f"{url}/luma/generations", headers=headers, timeout=5).status_code == 404
    assert proc.returncode == 0
    assert proc.stdout is not None
    assert f"Official Dream Machine API at {url}{V1}" in proc.stdout.read()
