"""Routes, progression, shapes and errors of the sandbox, over real HTTP."""

from __future__ import annotations

import re
import time
import uuid

import pytest
import requests

from luma_provider.sandbox import LumaSandbox

ISO_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "sandbox-key"}])
def test_missing_or_wrong_key_gets_new_api_401(sb: LumaSandbox, headers: dict) -> None:
    resp = requests.post(f"{sb.url}/luma/generations", json={"user_prompt": "x"}, headers=headers, timeout=5)
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert error["type"] == "new_api_error" and error["code"] == ""
    assert re.fullmatch(r"无效的令牌 \(request id: \w+\)", error["message"])
    assert sb.submissions == 0


def test_api_key_none_disables_auth() -> None:
    with LumaSandbox(port=0, api_key=None, time_scale=0) as sandbox:
        resp = requests.post(f"{sandbox.url}/luma/generations", json={"user_prompt": "x"}, timeout=5)
        assert resp.status_code == 200
        assert "password" not in sandbox.connection_json


def test_quota_exhausted_403(sb, api) -> None:
    sb.configure(quota_exhausted=True)
    resp = api(sb, "POST", "/luma/generations", json={"user_prompt": "x"})
    assert resp.status_code == 403
    error = resp.json()["error"]
    assert error["code"] == "insufficient_user_quota" and error["param"] == ""
    assert error["message"].startswith("user quota is not enough (request id: ")
    assert sb.submissions == 0


# --------------------------------------------------------------------------- submit + progression


def test_submit_returns_pending_native_object(sb, api) -> None:
    resp = api(sb, "POST", "/luma/generations", json={"user_prompt": "cat dance", "aspect_ratio": "16:9"})
    assert resp.status_code == 200
    body = resp.json()
    uuid.UUID(body["id"], version=4)
    assert body["state"] == "pending" and body["prompt"] == ""
    assert ISO_MICROS.match(body["created_at"])
    assert isinstance(body["estimate_wait_seconds"], (int, float))
    for key in ("video", "video_raw", "thumbnail", "last_frame", "liked", "queue_state"):
        assert body[key] is None
    assert body["batch_id"] == ""
    assert sb.submissions == 1


def test_progression_pending_processing_completed_with_real_media(sb, api, submit, wait_for) -> None:
    gen_id = submit(sb, "a tiger walking in snow", aspect_ratio="9:16")
    seen = []

    def poll():
        body = api(sb, "GET", f"/luma/generations/{gen_id}").json()
        if not seen or seen[-1] != body["state"]:
            seen.append(body["state"])
        return body if body["state"] == "completed" else None

    done = wait_for(poll)
    assert seen == ["pending", "processing", "completed"]
    assert done["prompt"] == "a tiger walking in snow"
    assert done["estimate_wait_seconds"] is None
    assert done["request"] == {"prompt": "a tiger walking in snow", "aspect_ratio": "9:16"}
    assert (done["video"]["width"], done["video"]["height"]) == (
        320,
        180,
    )  # the served clip's, whatever the ratio
    assert done["video"]["url"] == f"{sb.url}/media/{gen_id}.mp4"
    assert done["video"]["download_url"] == f"{sb.url}/media/{gen_id}.mp4?raw=1"
    assert done["video_raw"]["media_type"] == "video" and done["video_raw"]["duration"] > 0
    assert done["artifact"]["created_at"] == "0001-01-01T00:00:00Z"
    assert done["artifact"]["video"]["url"] == done["video"]["url"]

    video = requests.get(done["video"]["download_url"], timeout=5)  # CDN: no auth
    assert video.status_code == 200
    assert video.headers["Content-Type"] == "video/mp4"
    assert int(video.headers["Content-Length"]) == len(video.content) < 100_000
    assert video.content[4:8] == b"ftyp"
    for key in ("thumbnail", "last_frame"):
        image = requests.get(done[key]["url"], timeout=5)
        assert image.status_code == 200 and image.headers["Content-Type"] == "image/jpeg"
        assert image.content[:2] == b"\xff\xd8"  # JPEG SOI marker


def test_estimate_wait_counts_down(sb, api, submit) -> None:
    gen_id = submit(sb)
    first = api(sb, "GET", f"/luma/generations/{gen_id}").json()["estimate_wait_seconds"]
    time.sleep(0.15)
    second = api(sb, "GET", f"/luma/generations/{gen_id}").json()["estimate_wait_seconds"]
    assert first > second > 0


def test_different_generations_get_different_clips(instant, api, submit) -> None:
    sizes = set()
    for _ in range(12):
        gen_id = submit(instant)
        sizes.add(len(requests.get(f"{instant.url}/media/{gen_id}.mp4", timeout=5).content))
    assert len(sizes) >= 2


def test_media_of_unknown_or_unfinished_generation_is_404(sb, submit) -> None:
    gen_id = submit(sb)
    assert requests.get(f"{sb.url}/media/{gen_id}.mp4", timeout=5).status_code == 404
    assert requests.get(f"{sb.url}/media/{uuid.uuid4()}.jpg", timeout=5).status_code == 404


def test_blob_streams_exact_size(sb) -> None:
    size = 3 * 1024 * 1024 + 7
    resp = requests.get(f"{sb.url}/media/blob", params={"size": size}, timeout=10)
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) == size == len(resp.content)
    assert requests.get(f"{sb.url}/media/blob", params={"size": "x"}, timeout=5).status_code == 400


@pytest.mark.parametrize("path", ["/luma/generations/", "/pro/luma/generations", "/vip/luma/generations"])
def test_route_aliases(instant, api, path) -> None:
    resp = api(instant, "POST", path, json={"user_prompt": "x"})
    assert resp.status_code == 200
    gen_id = resp.json()["id"]
    prefix = path.split("/luma")[0]
    assert api(instant, "GET", f"{prefix}/luma/generations/{gen_id}").json()["state"] == "completed"


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("body", [{}, {"user_prompt": ""}, {"user_prompt": "   "}])
def test_user_prompt_required(sb, api, body) -> None:
    resp = api(sb, "POST", "/luma/generations", json=body)
    assert resp.status_code == 400
    assert resp.json() == {"code": "invalid_request", "message": "user_prompt is required", "data": None}


def test_bad_aspect_ratio_names_field_and_allowed_values(sb, api) -> None:
    resp = api(sb, "POST", "/luma/generations", json={"user_prompt": "x", "aspect_ratio": "21:9"})
    assert resp.status_code == 400
    message = resp.json()["message"]
    assert "aspect_ratio" in message and "16:9" in message and "9:16" in message


def test_non_json_body_is_400_but_text_plain_json_is_accepted(sb, api) -> None:
    bad = api(sb, "POST", "/luma/generations", data="user_prompt=x", headers={"Content-Type": "text/plain"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"
    good = api(
        sb, "POST", "/luma/generations", data='{"user_prompt": "x"}', headers={"Content-Type": "text/plain"}
    )
    assert good.status_code == 200 and good.json()["state"] == "pending"
    assert sb.submissions == 1


def test_optional_fields_are_accepted_and_echoed(instant, api, submit) -> None:
    gen_id = submit(
        instant,
        "x",
        model_name="ray-v2",
        resolution="720p",
        duration="5s",
        loop=True,
        expand_prompt=True,
        notify_hook="https://example.com/hook",
    )
    request = api(instant, "GET", f"/luma/generations/{gen_id}").json()["request"]
    assert request["model_name"] == "ray-v2" and request["resolution"] == "720p" and request["loop"] is True
    assert "notify_hook" not in request


# --------------------------------------------------------------------------- directives


def test_fail_directive(instant, api, submit) -> None:
    gen_id = submit(instant, "a cat #fail")
    body = api(instant, "GET", f"/luma/generations/{gen_id}").json()
    assert body["state"] == "failed"
    assert body["failure_reason"] == "Advanced prompt moderation failed"
    assert body["video"] is None


def test_fail_directive_custom_reason(instant, api, submit) -> None:
    gen_id = submit(instant, "a cat #fail: GPU on fire #slow")
    assert api(instant, "GET", f"/luma/generations/{gen_id}").json()["failure_reason"] == "GPU on fire"


def test_slow_directive_takes_longer(sb, api, submit) -> None:
    gen_id = submit(sb, "a cat #slow")
    time.sleep(0.6)  # a normal job would be completed by now
    assert api(sb, "GET", f"/luma/generations/{gen_id}").json()["state"] == "pending"


def test_unknown_directive_reports_mystery_state_while_processing(sb, api, submit, wait_for) -> None:
    gen_id = submit(sb, "a cat #unknown")
    states = set()
    wait_for(
        lambda: (
            states.add(api(sb, "GET", f"/luma/generations/{gen_id}").json()["state"]) or "completed" in states
        )
    )
    assert states == {"pending", "mystery_state", "completed"}


def test_nourl_directive_hides_download_url_on_first_completed_poll(instant, api, submit) -> None:
    gen_id = submit(instant, "a cat #nourl")
    first = api(instant, "GET", f"/luma/generations/{gen_id}").json()
    second = api(instant, "GET", f"/luma/generations/{gen_id}").json()
    assert first["state"] == "completed" and first["video"]["download_url"] == "" and first["video"]["url"]
    assert second["video"]["download_url"].endswith(f"/media/{gen_id}.mp4?raw=1")


# --------------------------------------------------------------------------- shapes


def test_native_array_shape(instant, api) -> None:
    instant.configure(shape="native-array")
    submitted = api(instant, "POST", "/luma/generations", json={"user_prompt": "x"}).json()
    assert isinstance(submitted, list) and submitted[0]["state"] == "pending"
    got = api(instant, "GET", f"/luma/generations/{submitted[0]['id']}").json()
    assert isinstance(got, list) and got[0]["state"] == "completed"


def test_kling_wrapper_shape(sb, api, wait_for) -> None:
    sb.configure(shape="kling-wrapper")
    body = api(sb, "POST", "/luma/generations", json={"user_prompt": "x"}).json()
    assert body["code"] == 0 and body["message"] == "SUCCEED"
    uuid.UUID(body["request_id"])
    data = body["data"]
    assert data["task_status"] == "submitted"
    assert isinstance(data["created_at"], int) and data["created_at"] > 10**12  # milliseconds
    done = wait_for(
        lambda: (
            (r := api(sb, "GET", f"/luma/generations/{data['task_id']}").json())["data"]["task_status"]
            == "succeed"
            and r
        )
    )
    assert "video" not in done and done["data"]["updated_at"] >= data["created_at"]


def test_official_states(sb, api, submit, wait_for) -> None:
    sb.configure(states="official")
    gen_id = submit(sb)
    states = []

    def poll():
        body = api(sb, "GET", f"/luma/generations/{gen_id}").json()
        if not states or states[-1] != body["state"]:
            states.append(body["state"])
        return body if body["state"] == "completed" else None

    done = wait_for(poll)
    assert states == ["queued", "dreaming", "completed"]
    assert done["assets"] == {"video": done["video"]["url"], "image": done["thumbnail"]["url"]}
    assert done["failure_reason"] is None


def test_submit_status_201(instant, api) -> None:
    instant.configure(submit_status=201)
    assert api(instant, "POST", "/luma/generations", json={"user_prompt": "x"}).status_code == 201


def test_invalid_config_is_rejected(sb) -> None:
    with pytest.raises(ValueError, match="shape"):
        sb.configure(shape="xml")
    with pytest.raises(ValueError, match="unknown"):
        sb.configure(colour="blue")
    assert sb.stats()["config"]["shape"] == "native-object"


# --------------------------------------------------------------------------- not found


def test_unknown_id_404_style(sb, api) -> None:
    resp = api(sb, "GET", f"/luma/generations/{uuid.uuid4()}")
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["code"] == "task_not_exist" and error["type"] == "new_api_error"
    assert error["message"].startswith("task not found (request id: ")


def test_unknown_id_task_not_exist_style(sb, api) -> None:
    sb.configure(not_found_style="task_not_exist")
    resp = api(sb, "GET", f"/luma/generations/{uuid.uuid4()}")
    assert resp.status_code == 400
    assert resp.json() == {"code": "task_not_exist", "message": "task_not_exist", "data": None}


# --------------------------------------------------------------------------- tasks


def test_tasks_array_shape_skips_unknown_ids(instant, api, submit) -> None:
    ids = [submit(instant), submit(instant, "b #fail")]
    resp = api(
        instant,
        "POST",
        "/luma/tasks",
        data='{{"ids": {}}}'.format(str([*ids, "nope"]).replace("'", '"')),
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status_code == 200
    body = resp.json()
    assert [item["id"] for item in body] == ids
    assert [item["state"] for item in body] == ["completed", "failed"]


def test_tasks_newapi_wrapper_shape(sb, api, submit) -> None:
    sb.configure(tasks_shape="newapi-wrapper")
    ok, bad = submit(sb), submit(sb, "x #fail: nope")
    first = api(sb, "POST", "/luma/tasks", json={"ids": [ok]}).json()
    assert first["code"] == "success" and first["message"] == ""
    task = first["data"][0]
    assert task["status"] in ("SUBMITTED", "NOT_START", "QUEUED") and task["progress"] == "0%"
    assert task["platform"] == "luma" and task["action"] == "LUMA_VIDEO" and isinstance(task["id"], int)
    assert task["task_id"] == ok and task["data"]["id"] == ok and task["finish_time"] == 0
    time.sleep(0.6)
    items = {t["task_id"]: t for t in api(sb, "POST", "/luma/tasks", json={"ids": [ok, bad]}).json()["data"]}
    assert items[ok]["status"] == "SUCCESS" and items[ok]["progress"] == "100%"
    assert items[ok]["finish_time"] >= items[ok]["start_time"] >= items[ok]["submit_time"] > 0
    assert items[bad]["status"] == "FAILURE" and items[bad]["fail_reason"] == "nope"
    assert items[bad]["data"]["state"] == "failed"


def test_tasks_rejects_bad_ids(sb, api) -> None:
    assert api(sb, "POST", "/luma/tasks", json={"ids": "abc"}).status_code == 400


def test_batch_route_off_is_404(sb, api, submit) -> None:
    sb.configure(batch_route=False)
    resp = api(sb, "POST", "/luma/tasks", json={"ids": [submit(sb)]})
    assert resp.status_code == 404
    assert "Invalid URL" in resp.json()["error"]["message"]


# --------------------------------------------------------------------------- download url + extend


def test_download_video_url(sb, api, submit, wait_for) -> None:
    gen_id = submit(sb)
    early = api(sb, "GET", f"/luma/generations/{gen_id}/download_video_url")
    assert early.status_code == 400
    url = wait_for(lambda: api(sb, "GET", f"/luma/generations/{gen_id}/download_video_url").json().get("url"))
    assert url == f"{sb.url}/media/{gen_id}.mp4?raw=1"
    assert requests.get(url, timeout=5).content[4:8] == b"ftyp"
    assert api(sb, "GET", f"/luma/generations/{uuid.uuid4()}/download_video_url").status_code == 404


def test_download_route_off_is_404(instant, api, submit) -> None:
    instant.configure(download_route=False)
    assert api(instant, "GET", f"/luma/generations/{submit(instant)}/download_video_url").status_code == 404


def test_extend_requires_completed_source_and_creates_new_generation(sb, api, submit, wait_for) -> None:
    source = submit(sb)
    early = api(sb, "POST", f"/luma/generations/{source}/extend", json={"user_prompt": "add cat"})
    assert early.status_code == 400 and "completed" in early.json()["message"]
    wait_for(lambda: api(sb, "GET", f"/luma/generations/{source}").json()["state"] == "completed")
    assert api(sb, "POST", f"/luma/generations/{source}/extend", json={}).status_code == 400
    resp = api(sb, "POST", f"/luma/generations/{source}/extend", json={"user_prompt": "add cat"})
    assert resp.status_code == 200
    new = resp.json()
    assert new["id"] != source and new["state"] == "pending"
    done = wait_for(
        lambda: (b := api(sb, "GET", f"/luma/generations/{new['id']}").json())["state"] == "completed" and b
    )
    assert done["request"]["extend_of"] == source and done["prompt"] == "add cat"
    assert sb.submissions == 2
    assert (
        api(sb, "POST", f"/luma/generations/{uuid.uuid4()}/extend", json={"user_prompt": "x"}).status_code
        == 404
    )
