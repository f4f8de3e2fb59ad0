"""Integration tests of ``LumaHook``: real HTTP against a real ``LumaSandbox`` gateway.

Nothing is mocked: every test starts a sandbox (``conftest.py``), points the
``luma_default`` connection at it through ``AIRFLOW_CONN_LUMA_DEFAULT`` and checks both
what the hook returns and what the sandbox saw (its request log / stats).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from luma_provider.exceptions import (
    LumaAmbiguousSubmitError,
    LumaAuthError,
    LumaBadRequestError,
    LumaDownloadError,
    LumaGenerationFailed,
    LumaNotFoundError,
    LumaRateLimitError,
    LumaServerError,
    LumaTimeoutError,
    LumaTransportError,
    LumaValidationError,
)
from luma_provider.hooks.luma import LumaHook
from luma_provider.models import LumaGeneration, LumaState
from luma_provider.sandbox import LumaSandbox
from luma_provider.sandbox.media import video_bytes

# ----------------------------------------------------------------------------- helpers


def routes(sb: LumaSandbox) -> list[str]:
    """Route names of the requests the sandbox saw, oldest first."""
    return [r["route"] for r in sb.stats()["recent"]]


def by_route(sb: LumaSandbox, route: str) -> int:
    return sb.stats()["by_route"].get(route, 0)


def settled(sb: LumaSandbox, timeout: float = 3.0) -> dict[str, Any]:
    """Sandbox stats once in-flight requests finished (a request is logged when it ends, so a
    ``delay`` fault the client gave up on shows up only after its sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = sb.stats()
        hits = sum(rule["hits"] for rule in sb.faults())
        if sum(stats["faults_applied"].values()) >= hits or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def wait_completed(hook: LumaHook, gen_id: str) -> LumaGeneration:
    (gen,) = hook.wait_for_generations([gen_id], poll_interval=0.1, timeout=10)
    return gen


def submit_direct(sb: LumaSandbox, prompt: str = "a direct job") -> str:
    """Create a generation without the hook (plain HTTP), for tests about reading it."""
    resp = requests.post(
        f"{sb.url}/luma/generations",
        json={"user_prompt": prompt},
        headers={"Authorization": f"Bearer {sb.api_key}"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def completed_ids(sb: LumaSandbox, n: int) -> list[str]:
    sb.configure(time_scale=0)
    return [submit_direct(sb, f"job {i}") for i in range(n)]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def assert_mp4(path: Path, gen_id: str) -> None:
    data = path.read_bytes()
    assert data[4:8] == b"ftyp"
    assert data == video_bytes(gen_id)


# ----------------------------------------------------------------------------- 1. round trip


RAW_QUEUED = {"gateway": "pending", "official": "queued"}


class TestRoundTrip:
    @pytest.mark.parametrize("states", ["gateway", "official"])
    @pytest.mark.parametrize("tasks_shape", ["array", "newapi-wrapper"])
    @pytest.mark.parametrize("shape", ["native-object", "native-array", "kling-wrapper"])
    def test_submit_poll_download_every_shape(self, sandbox, hook, tmp_path, shape, tasks_shape, states):
        sandbox.configure(shape=shape, tasks_shape=tasks_shape, states=states)

        submitted = hook.submit_generation("a red fox in the snow", aspect_ratio="16:9", model="ray-2")
        assert submitted.state == LumaState.QUEUED
        assert submitted.raw_state == ("submitted" if shape == "kling-wrapper" else RAW_QUEUED[states])
        assert sandbox.submissions == 1

        polled = wait_completed(hook, submitted.id)  # POST /luma/tasks in tasks_shape
        assert polled.id == submitted.id
        assert polled.state == LumaState.COMPLETED
        assert polled.video_url == f"{sandbox.url}/media/{submitted.id}.mp4?raw=1"

        single = hook.get_generation(submitted.id)
        assert single.id == submitted.id
        assert single.state == LumaState.COMPLETED
        if shape == "kling-wrapper":
            assert single.raw_state == "succeed"
            assert single.video_url is None  # the Kling envelope carries no URLs
        else:
            assert single.raw_state == "completed"
            assert single.video_url == f"{sandbox.url}/media/{submitted.id}.mp4?raw=1"
            assert (single.width, single.height) == (320, 180)  # the served clip's own size

        batch = hook.get_generations([submitted.id])
        assert [(g.id, g.state) for g in batch] == [(submitted.id, LumaState.COMPLETED)]

        async def poll_async() -> list[LumaGeneration]:
            async_hook = LumaHook()
            try:
                return await async_hook.aget_generations([submitted.id])
            finally:
                await async_hook.aclose()

        assert [(g.id, g.state) for g in asyncio.run(poll_async())] == [(submitted.id, LumaState.COMPLETED)]

        # Download by id: the hook polls once more and, without a URL (Kling), asks download_video_url.
        downloads_before = by_route(sandbox, "download_url")
        uri = hook.download_video(submitted.id, tmp_path)
        target = tmp_path / f"{submitted.id}.mp4"
        assert uri == f"file://{target}"
        assert_mp4(target, submitted.id)
        assert by_route(sandbox, "download_url") - downloads_before == (1 if shape == "kling-wrapper" else 0)
        served = requests.head(f"{sandbox.url}/media/{submitted.id}.mp4", timeout=10)
        assert int(served.headers["Content-Length"]) == target.stat().st_size
        assert files_in(tmp_path) == [f"{submitted.id}.mp4"]

    def test_batch_route_missing_falls_back_to_single_gets(self, sandbox, hook):
        ids = completed_ids(sandbox, 2)
        sandbox.configure(batch_route=False)
        before = len(sandbox.stats()["recent"])

        first = hook.get_generations(ids)
        second = hook.get_generations(ids)  # the hook remembers the route is missing

        assert [g.id for g in first] == ids and [g.id for g in second] == ids
        assert all(g.state == LumaState.COMPLETED for g in first + second)
        seen = sandbox.stats()["recent"][before:]
        assert [(r["route"], r["status"]) for r in seen] == [("tasks", 404)] + [("get", 200)] * 4

    def test_download_route_missing(self, sandbox, hook, tmp_path):
        (gen_id,) = completed_ids(sandbox, 1)
        assert hook.get_download_url(gen_id) == f"{sandbox.url}/media/{gen_id}.mp4?raw=1"

        sandbox.configure(download_route=False)
        assert hook.get_download_url(gen_id) is None

        # Kling shape + no download route: no URL anywhere -> a clear download error, no file.
        sandbox.configure(shape="kling-wrapper")
        with pytest.raises(LumaDownloadError, match=f"Generation {gen_id} .*has no video URL"):
            hook.download_video(gen_id, tmp_path)
        assert files_in(tmp_path) == []

    def test_async_get_generation_and_skip_missing(self, sandbox, hook):
        (gen_id,) = completed_ids(sandbox, 1)
        missing = "11111111-2222-3333-4444-555555555555"

        async def run() -> tuple[Any, ...]:
            try:
                one = await hook.aget_generation(gen_id)
                some = await hook.aget_generations([missing, gen_id], skip_missing=True)
                with pytest.raises(LumaNotFoundError) as info:
                    await hook.aget_generations([gen_id, missing])
                return one, some, info.value
            finally:
                await hook.aclose()

        one, some, err = asyncio.run(run())
        assert (one.id, one.state) == (gen_id, LumaState.COMPLETED)
        assert [g.id for g in some] == [gen_id]
        assert err.status == 404 and err.path == f"/luma/generations/{missing}"


# ----------------------------------------------------------------------------- 2-3. submit & extend


class TestSubmitAndExtend:
    def test_submit_maps_fields_to_gateway_names(self, sandbox, hook):
        gen = hook.submit_generation(
            "  a lighthouse at dusk  ",
            aspect_ratio="9:16",
            model="ray-2",
            loop=True,
            expand_prompt="no",
            image_url="https://example.com/start.jpg",
            resolution="720p",
            duration="5s",
        )
        wait_completed(hook, gen.id)
        stored = hook.get_generation(gen.id).raw["request"]  # the sandbox echoes what it stored
        assert stored == {
            "prompt": "a lighthouse at dusk",  # sent as user_prompt (the sandbox 400s without it), stripped
            "aspect_ratio": "9:16",
            "model_name": "ray-v2",
            "loop": True,
            "expand_prompt": False,
            "image_url": "https://example.com/start.jpg",
            "resolution": "720p",
            "duration": "5s",
        }
        assert hook.get_generation(gen.id).prompt == "a lighthouse at dusk"

    def test_submit_201_is_success(self, sandbox, hook):
        sandbox.configure(submit_status=201)
        gen = hook.submit_generation("a cat")
        assert gen.state == LumaState.QUEUED and sandbox.submissions == 1

    def test_extend_returns_new_generation(self, sandbox, hook):
        source = hook.submit_generation("a boat")
        wait_completed(hook, source.id)

        extension = hook.extend_generation(
            source.id, "the boat sails away", aspect_ratio="16:9", model="ray-2"
        )

        assert extension.id != source.id
        assert extension.state == LumaState.QUEUED
        assert sandbox.submissions == 2
        wait_completed(hook, extension.id)
        assert hook.get_generation(extension.id).raw["request"] == {
            "prompt": "the boat sails away",
            "aspect_ratio": "16:9",
            "model_name": "ray-v2",
            "extend_of": source.id,
        }

    def test_extend_of_unfinished_generation_is_rejected(self, sandbox, hook):
        sandbox.configure(queue_seconds=30)
        source = hook.submit_generation("a slow boat")

        with pytest.raises(LumaBadRequestError) as info:
            hook.extend_generation(source.id, "more")

        assert info.value.status == 400
        assert f"generation {source.id} is pending; only completed generations can be extended" in str(
            info.value
        )
        assert by_route(sandbox, "extend") == 1  # a 400 is not retried
        assert sandbox.submissions == 1

    def test_extend_of_unknown_generation(self, sandbox, hook):
        with pytest.raises(LumaNotFoundError) as info:
            hook.extend_generation("no-such-generation", "more")
        assert info.value.status == 404 and info.value.code == "task_not_exist"


# ----------------------------------------------------------------------------- 4. errors


class TestErrors:
    def test_bad_key(self, sandbox, connect):
        hook = connect(sandbox.url, key="sk-wrong-key-9999")

        with pytest.raises(LumaAuthError) as info:
            hook.get_generation("abc")
        assert info.value.status == 401
        assert "无效的令牌" in info.value.message  # the gateway's own message
        assert by_route(sandbox, "get") == 1  # 401 is not retried

        ok, message = hook.test_connection()
        assert ok is False
        assert message.startswith("Bad API key (HTTP 401): 无效的令牌")
        assert [r["auth_ok"] for r in sandbox.stats()["recent"]] == [False, False]

    def test_connection_unreachable(self, connect, closed_port_url):
        hook = connect(closed_port_url)
        ok, message = hook.test_connection()
        assert ok is False
        assert message.startswith("Gateway unreachable: ")
        assert hook.requests_sent == 1  # the probe is never retried

    def test_connection_works(self, sandbox, hook):
        assert hook.test_connection() == (True, "Connection works: the gateway accepted the API key.")
        (probe,) = sandbox.stats()["recent"]
        assert (probe["route"], probe["status"], probe["auth_ok"]) == ("get", 404, True)

    def test_quota_exhausted(self, sandbox, hook):
        sandbox.configure(quota_exhausted=True)
        with pytest.raises(LumaAuthError) as info:
            hook.submit_generation("a cat")
        assert (info.value.status, info.value.code) == (403, "insufficient_user_quota")
        assert "user quota is not enough" in info.value.message
        assert by_route(sandbox, "submit") == 1 and sandbox.submissions == 0

    @pytest.mark.parametrize(("style", "status"), [("404", 404), ("task_not_exist", 400)])
    def test_unknown_id(self, sandbox, hook, style, status):
        sandbox.configure(not_found_style=style)
        with pytest.raises(LumaNotFoundError) as info:
            hook.get_generation("unknown-id-1")
        assert info.value.status == status
        assert info.value.code == "task_not_exist"
        assert by_route(sandbox, "get") == 1  # not retried

    @pytest.mark.parametrize("style", ["404", "task_not_exist"])
    def test_unknown_id_in_batch(self, sandbox, hook, style):
        (known,) = completed_ids(sandbox, 1)
        sandbox.configure(not_found_style=style)
        with pytest.raises(LumaNotFoundError):
            hook.get_generations([known, "unknown-id-2"])


# ----------------------------------------------------------------------------- 5. retries


class TestRetries:
    def test_429_with_retry_after_then_success(self, sandbox, hook):
        (gen_id,) = completed_ids(sandbox, 1)
        sandbox.add_fault(route="get", kind="status", status=429, retry_after=0, times=1)

        gen = hook.get_generation(gen_id)

        assert gen.state == LumaState.COMPLETED
        assert [(r["route"], r["status"]) for r in sandbox.stats()["recent"]] == [
            ("submit", 200),
            ("get", 429),
            ("get", 200),
        ]

    def test_429_exhausted(self, sandbox, hook):
        sandbox.add_fault(route="get", kind="status", status=429, retry_after=0, times=10)
        with pytest.raises(LumaRateLimitError) as info:
            hook.get_generation("abc")
        assert info.value.retry_after == 0.0
        assert by_route(sandbox, "get") == 3

    def test_burst_of_5xx_recovered(self, sandbox, connect, fast_backoff):
        (gen_id,) = completed_ids(sandbox, 1)
        hook = connect(sandbox.url, extra={"max_retries": 4})
        sandbox.add_faults([{"route": "get", "kind": "status", "status": s} for s in (500, 502, 503, 504)])

        gen = hook.get_generation(gen_id)

        assert gen.state == LumaState.COMPLETED
        statuses = [r["status"] for r in sandbox.stats()["recent"] if r["route"] == "get"]
        assert statuses == [500, 502, 503, 504, 200]

    def test_persistent_500_on_get(self, sandbox, hook):
        sandbox.add_fault(route="get", kind="status", status=500, times=100)
        started = time.monotonic()
        with pytest.raises(LumaServerError) as info:
            hook.get_generation("abc")
        assert info.value.status == 500
        assert by_route(sandbox, "get") == 3  # max_retries (2) + 1
        assert hook.requests_sent == 3
        assert time.monotonic() - started >= 1.5  # real exponential backoff: >= 0.5 s + 1 s

    def test_submit_429_retried_one_generation(self, sandbox, hook):
        sandbox.add_fault(route="submit", kind="status", status=429, retry_after=0, times=1)
        gen = hook.submit_generation("a cat")
        assert gen.state == LumaState.QUEUED
        assert by_route(sandbox, "submit") == 2
        assert sandbox.submissions == 1
        assert sandbox.stats()["generations"] == 1

    def test_submit_503_retried(self, sandbox, hook):
        sandbox.add_fault(route="submit", kind="status", status=503, times=1)
        gen = hook.submit_generation("a cat")
        assert [r["status"] for r in sandbox.stats()["recent"]] == [503, 200]
        assert sandbox.submissions == 1
        assert hook.get_generation(gen.id).id == gen.id

    @pytest.mark.parametrize(
        "fault",
        [
            {"kind": "status", "status": 502},
            {"kind": "status", "status": 504},
            {"kind": "reset"},
            {"kind": "truncated_json"},
        ],
        ids=["502", "504", "reset", "truncated_json"],
    )
    def test_submit_ambiguous_failure_not_retried(self, sandbox, hook, fault):
        sandbox.add_fault(route="submit", after_processing=True, times=5, **fault)

        with pytest.raises(LumaAmbiguousSubmitError) as info:
            hook.submit_generation("an expensive video")

        message = str(info.value)
        assert "may have accepted the job" in message
        assert "not submitted again" in message
        assert by_route(sandbox, "submit") == 1  # exactly one paid request went out
        assert sandbox.submissions == 1  # ... and the gateway did create the job

    def test_submit_connection_refused_is_retried(self, connect, closed_port_url):
        hook = connect(closed_port_url, extra={"max_retries": 1})
        with pytest.raises(LumaTransportError) as info:
            hook.submit_generation("a cat")
        assert not isinstance(info.value, LumaAmbiguousSubmitError)
        assert info.value.sent is False
        assert "POST /luma/generations" in str(info.value)
        assert hook.requests_sent == 2  # retried once: nothing can have reached a gateway

    @pytest.mark.parametrize(
        "fault",
        [
            {"kind": "reset"},
            {"kind": "delay", "seconds": 1.5},
            {"kind": "html"},
            {"kind": "html", "status": 502},
            {"kind": "truncated_json"},
            {"kind": "empty"},
        ],
        ids=["reset", "read-timeout", "html-200", "html-502", "truncated-json", "empty-200"],
    )
    def test_get_broken_answer_retried_once(self, sandbox, connect, fault):
        (gen_id,) = completed_ids(sandbox, 1)
        hook = connect(sandbox.url, timeout=0.5)
        sandbox.add_fault(route="get", times=1, **fault)

        gen = hook.get_generation(gen_id)

        assert (gen.id, gen.state) == (gen_id, LumaState.COMPLETED)
        assert gen.video_url == f"{sandbox.url}/media/{gen_id}.mp4?raw=1"
        assert hook.requests_sent == 2
        assert settled(sandbox)["by_route"]["get"] == 2
        assert settled(sandbox)["faults_applied"] == {fault["kind"]: 1}

    def test_get_unparseable_body_error_message(self, sandbox, hook, fast_backoff):
        sandbox.add_fault(route="get", kind="html", times=10)
        with pytest.raises(LumaTransportError, match=r"GET /luma/generations/abc: HTTP 200 body is not JSON"):
            hook.get_generation("abc")
        assert by_route(sandbox, "get") == 3


# ----------------------------------------------------------------------------- 6. secrets


SECRET = "sk-SECRET-abc123"


class TestSecrets:
    def test_key_never_in_errors_logs_or_repr(self, connect, caplog):
        with LumaSandbox(port=0, api_key=SECRET) as sb:
            hook = connect(sb.url, key=SECRET)
            sb.add_faults(
                [
                    {
                        "route": "get",
                        "kind": "status",
                        "status": 500,
                        "body": {"error": {"message": f"boom {SECRET}"}},
                    },
                    {
                        "route": "get",
                        "kind": "status",
                        "status": 401,
                        "body": {"error": {"message": f"bad token {SECRET}", "code": ""}},
                    },
                ]
            )
            caplog.set_level(logging.DEBUG)

            with pytest.raises(LumaAuthError) as info:
                hook.get_generation("abc")

            assert info.value.status == 401
            assert info.value.message == "bad token ***"
            assert SECRET not in str(info.value) and SECRET not in repr(info.value)
            assert "retrying" in caplog.text and "boom ***" in caplog.text  # the retried 500 was logged...
            assert SECRET not in caplog.text  # ... without the key
            assert SECRET not in repr(hook.settings)
            assert sb.url in repr(hook.settings)
            assert [r["auth_ok"] for r in sb.stats()["recent"]] == [None, None]  # faults hit before auth

    def test_authorization_not_sent_to_another_origin(self, sandbox, hook, tmp_path):
        (gen_id,) = completed_ids(sandbox, 1)
        with LumaSandbox(port=0, api_key=sandbox.api_key, time_scale=0) as cdn:  # same key, other port
            cdn_id = submit_direct(cdn)
            before = len(cdn.stats()["recent"])

            # A real MP4 from the other origin downloads fine ...
            video = {"id": cdn_id, "state": "completed", "video_url": f"{cdn.url}/media/{cdn_id}.mp4"}
            hook.download_video(video, tmp_path)
            assert_mp4(tmp_path / f"{cdn_id}.mp4", cdn_id)

            # ... and an auth-checked path there proves no Bearer header came along.
            probe = {"id": "probe", "state": "completed", "video_url": f"{cdn.url}/luma/generations/{cdn_id}"}
            with pytest.raises(LumaDownloadError, match=r"video URL was refused .* \(HTTP 401\)"):
                hook.download_video(probe, tmp_path)
            last = cdn.stats()["recent"][-1]
            assert (last["route"], last["status"], last["auth_ok"]) == ("get", 401, False)
            assert len(cdn.stats()["recent"]) - before == 2

        # The same path on the gateway's own origin gets the key.
        own = {"id": "own", "state": "completed", "video_url": f"{sandbox.url}/luma/generations/{gen_id}"}
        hook.download_video(own, tmp_path)
        last = sandbox.stats()["recent"][-1]
        assert (last["route"], last["status"], last["auth_ok"]) == ("get", 200, True)
        assert b'"id": "%s"' % gen_id.encode() in (tmp_path / "own.mp4").read_bytes()

    def test_authorization_dropped_on_redirect_to_another_origin(self, sandbox, hook, tmp_path):
        (gen_id,) = completed_ids(sandbox, 1)
        with LumaSandbox(port=0, api_key=sandbox.api_key, time_scale=0) as cdn:
            cdn_id = submit_direct(cdn)
            sandbox.add_fault(
                route="media",
                kind="status",
                status=302,
                body="",
                headers={"Location": f"{cdn.url}/luma/generations/{cdn_id}"},
            )
            with pytest.raises(LumaDownloadError, match=r"\(HTTP 401\)"):
                hook.download_video(gen_id, tmp_path)
            last = cdn.stats()["recent"][-1]
            assert (last["route"], last["status"], last["auth_ok"]) == ("get", 401, False)
        assert files_in(tmp_path) == []


# ----------------------------------------------------------------------------- 7. downloads


class TestDownloads:
    @pytest.fixture
    def done(self, sandbox) -> str:
        (gen_id,) = completed_ids(sandbox, 1)
        return gen_id

    def test_to_folder(self, hook, done, tmp_path):
        assert hook.download_video(done, tmp_path) == f"file://{tmp_path}/{done}.mp4"
        assert_mp4(tmp_path / f"{done}.mp4", done)

    def test_to_new_folder_with_trailing_slash(self, hook, done, tmp_path):
        uri = hook.download_video(done, f"{tmp_path}/new/dir/")
        assert uri == f"file://{tmp_path}/new/dir/{done}.mp4"
        assert_mp4(tmp_path / "new" / "dir" / f"{done}.mp4", done)

    def test_to_file_path(self, hook, done, tmp_path):
        target = tmp_path / "out" / "clip.mp4"
        assert hook.download_video(done, target) == f"file://{target}"
        assert_mp4(target, done)
        assert files_in(tmp_path) == ["clip.mp4"]

    def test_to_file_uri(self, hook, done, tmp_path):
        assert hook.download_video(done, f"file://{tmp_path}/uri.mp4") == f"file://{tmp_path}/uri.mp4"
        assert_mp4(tmp_path / "uri.mp4", done)

    def test_from_generation_dict_needs_no_poll(self, sandbox, hook, done, tmp_path):
        gen = hook.get_generation(done)
        before = by_route(sandbox, "get")
        hook.download_video(gen.to_dict(), tmp_path)
        assert by_route(sandbox, "get") == before
        assert_mp4(tmp_path / f"{done}.mp4", done)

    def test_thumbnail(self, hook, done, tmp_path):
        uri = hook.download_thumbnail(done, tmp_path)
        assert uri == f"file://{tmp_path}/{done}.jpg"
        assert (tmp_path / f"{done}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"

    def test_short_body_once_is_retried(self, sandbox, hook, done, tmp_path):
        sandbox.add_fault(route="media", kind="short_body", times=1)
        hook.download_video(done, tmp_path)
        assert_mp4(tmp_path / f"{done}.mp4", done)
        assert files_in(tmp_path) == [f"{done}.mp4"]
        assert by_route(sandbox, "media") == 2

    def test_short_body_always_leaves_nothing(self, sandbox, hook, done, tmp_path, fast_backoff):
        sandbox.add_fault(route="media", kind="short_body", times=100)
        with pytest.raises((LumaTransportError, LumaDownloadError)):
            hook.download_video(done, tmp_path)
        assert files_in(tmp_path) == []  # no final file and no .part leftovers
        assert by_route(sandbox, "media") == 3

    def test_size_cap(self, sandbox, hook, done, tmp_path):
        with pytest.raises(LumaDownloadError, match="above the 1000-byte cap"):
            hook.download_video(done, tmp_path, max_bytes=1000)
        assert files_in(tmp_path) == []
        assert by_route(sandbox, "media") == 1  # not retried

    def test_size_cap_while_streaming(self, sandbox, hook, tmp_path):
        # /media/blob announces the size; a cap just under it must stop the download.
        with pytest.raises(LumaDownloadError):
            hook.download_file(
                f"{sandbox.url}/media/blob?size=3000000",
                tmp_path,
                default_name="blob.bin",
                max_bytes=2_999_999,
            )
        assert files_in(tmp_path) == []
        path = hook.download_file(
            f"{sandbox.url}/media/blob?size=3000000", tmp_path, default_name="blob.bin", max_bytes=3_000_000
        )
        assert Path(path.removeprefix("file://")).stat().st_size == 3_000_000

    @pytest.mark.parametrize("name", ["clip#1.mp4", "what?.mp4", "my video.mp4", "100%.mp4"])
    def test_file_names_with_uri_characters(self, hook, done, tmp_path, name):
        assert hook.download_video(done, tmp_path / name) == f"file://{tmp_path}/{name}"
        assert_mp4(tmp_path / name, done)
        assert files_in(tmp_path) == [name]

    def test_redirect_to_file_url_refused(self, sandbox, hook, done, tmp_path, fast_backoff):
        sandbox.add_fault(
            route="media",
            kind="status",
            status=302,
            body="",
            times=100,
            headers={"Location": "file:///etc/passwd"},
        )
        with pytest.raises(LumaDownloadError, match=r"not a plain http\(s\) URL"):
            hook.download_video(done, tmp_path)
        assert files_in(tmp_path) == []
        assert by_route(sandbox, "media") == 1

    @pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/video.mp4", "javascript:alert(1)"])
    def test_non_http_url_refused_before_any_request(self, sandbox, hook, tmp_path, url):
        with pytest.raises(LumaDownloadError, match=r"not a plain http\(s\) URL"):
            hook.download_video({"id": "g1", "state": "completed", "video_url": url}, tmp_path)
        with pytest.raises(LumaDownloadError, match=r"not a plain http\(s\) URL"):
            hook.download_file(url, tmp_path, default_name="x.mp4")
        assert sandbox.stats()["requests"] == 0
        assert hook.requests_sent == 0
        assert files_in(tmp_path) == []


# ----------------------------------------------------------------------------- 8. chunking


class TestChunking:
    def test_batches_of_two_dedup_and_order(self, sandbox, connect):
        ids = completed_ids(sandbox, 5)
        hook = connect(sandbox.url, extra={"batch_size": 2})
        before = len(sandbox.stats()["recent"])
        asked = [ids[3], ids[0], ids[3], ids[4], ids[1], ids[0], ids[2]]

        result = hook.get_generations(asked)

        assert [g.id for g in result] == [ids[3], ids[0], ids[4], ids[1], ids[2]]
        assert all(g.state == LumaState.COMPLETED for g in result)
        assert routes(sandbox)[before:] == ["tasks", "tasks", "tasks"]

    def test_async_batches(self, sandbox, connect):
        ids = completed_ids(sandbox, 5)
        hook = connect(sandbox.url, extra={"batch_size": 2})
        before = len(sandbox.stats()["recent"])

        async def run() -> list[LumaGeneration]:
            try:
                return await hook.aget_generations(list(reversed(ids)))
            finally:
                await hook.aclose()

        assert [g.id for g in asyncio.run(run())] == list(reversed(ids))
        assert routes(sandbox)[before:] == ["tasks", "tasks", "tasks"]


# ----------------------------------------------------------------------------- async transport


def run_async(hook: LumaHook, coro_fn: Any) -> Any:
    async def run() -> Any:
        try:
            return await coro_fn()
        finally:
            await hook.aclose()

    return asyncio.run(run())


class TestAsyncTransport:
    @pytest.mark.parametrize(
        "fault",
        [
            {"kind": "status", "status": 500},
            {"kind": "status", "status": 429, "retry_after": 0},
            {"kind": "reset"},
            {"kind": "delay", "seconds": 1.5},
            {"kind": "html"},
            {"kind": "empty"},
        ],
        ids=["500", "429", "reset", "read-timeout", "html", "empty"],
    )
    def test_broken_answer_retried_once(self, sandbox, connect, fault, fast_backoff):
        ids = completed_ids(sandbox, 2)
        hook = connect(sandbox.url, timeout=0.5)
        sandbox.add_fault(route="tasks", times=1, **fault)

        result = run_async(hook, lambda: hook.aget_generations(ids))

        assert [(g.id, g.state) for g in result] == [(i, LumaState.COMPLETED) for i in ids]
        assert hook.requests_sent == 2
        assert settled(sandbox)["faults_applied"] == {fault["kind"]: 1}

    def test_persistent_reset_gives_transport_error(self, sandbox, hook, fast_backoff):
        sandbox.add_fault(route="get", kind="reset", times=100)
        with pytest.raises(LumaTransportError) as info:
            run_async(hook, lambda: hook.aget_generation("abc"))
        assert info.value.sent is True
        assert "GET /luma/generations/abc" in str(info.value)
        assert hook.requests_sent == 3

    def test_unreachable_is_not_sent(self, connect, closed_port_url):
        hook = connect(closed_port_url, extra={"max_retries": 0})
        with pytest.raises(LumaTransportError) as info:
            run_async(hook, lambda: hook.aget_generation("abc"))
        assert info.value.sent is False
        assert hook.requests_sent == 1

    def test_truncated_body_splitting_a_utf8_character_is_retried(self, sandbox, hook):
        sandbox.configure(time_scale=0)
        headers = {"Authorization": f"Bearer {sandbox.api_key}"}
        # Find a prompt whose GET body has its middle byte inside a 3-byte character (the fault cuts there).
        for pad in range(3):
            body = {"user_prompt": "a" * pad + "猫" * 1000, "image_url": "https://example.com/" + "x" * 4000}
            gen_id = requests.post(
                f"{sandbox.url}/luma/generations", json=body, headers=headers, timeout=10
            ).json()["id"]
            raw = requests.get(
                f"{sandbox.url}/luma/generations/{gen_id}", headers=headers, timeout=10
            ).content
            try:
                raw[: len(raw) // 2].decode("utf-8")
            except UnicodeDecodeError:
                break
        else:
            pytest.fail("no prompt split a character")
        sandbox.add_fault(route="get", kind="truncated_json", times=1)
        assert hook.get_generation(gen_id).state == LumaState.COMPLETED  # sync: retried and recovered

        sandbox.add_fault(route="get", kind="truncated_json", times=1)
        gen = run_async(hook, lambda: hook.aget_generation(gen_id))  # async: UnicodeDecodeError
        assert gen.state == LumaState.COMPLETED


# ----------------------------------------------------------------------------- connection & polling


class TestConnectionAndPolling:
    @pytest.mark.parametrize(
        ("conn", "path_start"),
        [
            ({"extra": {"path_prefix": "pro"}}, "/pro/luma/generations/"),
            ({"extra": {"path_prefix": "/vip/"}}, "/vip/luma/generations/"),
            ({"host_suffix": "/luma/"}, "/luma/generations/"),
            ({"split_port": True}, "/luma/generations/"),
        ],
        ids=["prefix-pro", "prefix-vip", "host-ends-in-luma", "port-field"],
    )
    def test_connection_forms(self, sandbox, monkeypatch, conn, path_start):
        (gen_id,) = completed_ids(sandbox, 1)
        data: dict[str, Any] = {
            "conn_type": "luma",
            "host": sandbox.url + conn.get("host_suffix", ""),
            "password": sandbox.api_key,
            "extra": conn.get("extra", {}),
        }
        if conn.get("split_port"):
            data.update(host="http://127.0.0.1", port=sandbox.port)
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", json.dumps(data))

        assert LumaHook().get_generation(gen_id).state == LumaState.COMPLETED
        assert sandbox.stats()["recent"][-1]["path"] == f"{path_start}{gen_id}"

    def test_connection_with_server_error(self, sandbox, hook):
        sandbox.add_fault(route="get", kind="status", status=500, times=100)
        ok, message = hook.test_connection()
        assert ok is False
        assert message.startswith("Gateway answered HTTP 500: upstream error: status 500")
        assert by_route(sandbox, "get") == 1  # the probe is not retried

    def test_wait_reports_failure_reason(self, hook):
        gen = hook.submit_generation("a cat #fail:too many cats")
        with pytest.raises(LumaGenerationFailed) as info:
            hook.wait_for_generations([gen.id], poll_interval=0.1, timeout=10)
        assert (info.value.generation_id, info.value.failure_reason) == (gen.id, "too many cats")

    def test_wait_times_out(self, sandbox, hook):
        sandbox.configure(queue_seconds=30)
        gen = hook.submit_generation("a slow cat")
        with pytest.raises(LumaTimeoutError, match=gen.id):
            hook.wait_for_generations([gen.id], poll_interval=0.1, timeout=0.3)

    def test_unknown_state_is_not_terminal(self, sandbox, hook):
        (gen_id,) = completed_ids(sandbox, 1)
        sandbox.add_fault(route="get", kind="unknown_state", times=1)
        gen = hook.get_generation(gen_id)
        assert (gen.state, gen.raw_state, gen.is_terminal) == (LumaState.UNKNOWN, "weird_new_state", False)
        assert hook.get_generation(gen_id).state == LumaState.COMPLETED

    def test_empty_download_url_on_first_completed_poll(self, sandbox, hook, tmp_path):
        sandbox.configure(time_scale=0)
        gen_id = submit_direct(sandbox, "a cat #nourl")
        gen = hook.get_generation(gen_id)  # first completed poll: video.download_url == ""
        assert gen.video_url == f"{sandbox.url}/media/{gen_id}.mp4"
        hook.download_video(gen, tmp_path)
        assert_mp4(tmp_path / f"{gen_id}.mp4", gen_id)

    def test_no_ids_no_request(self, sandbox, hook):
        assert hook.get_generations([]) == []
        assert sandbox.stats()["requests"] == 0


# ----------------------------------------------------------------------------- 9. validation


class TestValidationBeforeHttp:
    @pytest.mark.parametrize(
        ("call", "field"),
        [
            (lambda h: h.submit_generation(""), "prompt"),
            (lambda h: h.submit_generation("   "), "prompt"),
            (lambda h: h.submit_generation("x" * 5001), "prompt"),
            (lambda h: h.submit_generation("a cat", aspect_ratio="21:9"), "aspect_ratio"),
            (lambda h: h.submit_generation("a cat", model="ray-9"), "model"),
            (lambda h: h.submit_generation("a cat", image_url="file:///etc/passwd"), "image_url"),
            (
                lambda h: h.submit_generation("a cat", image_end_url="data:image/png;base64,@@@"),
                "image_end_url",
            ),
            (lambda h: h.submit_generation("a cat", loop="maybe"), "loop"),
            (lambda h: h.submit_generation("a cat", user_prompt="sneaky"), "extra"),
            (lambda h: h.get_generation("../../etc/passwd"), "generation_id"),
            (lambda h: h.get_generation(""), "generation_id"),
            (lambda h: h.get_download_url("a b"), "generation_id"),
            (lambda h: h.extend_generation("bad id!", "more"), "generation_id"),
            (lambda h: h.extend_generation("ok-id", ""), "prompt"),
            (lambda h: h.get_generations(["ok-id", "bad/id"]), "ids"),
        ],
    )
    def test_rejected_without_request(self, sandbox, hook, call, field):
        with pytest.raises(LumaValidationError) as info:
            call(hook)
        assert info.value.field == field
        assert f"Invalid {field!r}" in str(info.value)
        assert hook.requests_sent == 0
        assert sandbox.stats()["requests"] == 0

    def test_async_rejected_without_request(self, sandbox, hook):
        async def run() -> None:
            with pytest.raises(LumaValidationError) as info:
                await hook.aget_generation("bad id")
            assert info.value.field == "generation_id"

        asyncio.run(run())
        assert sandbox.stats()["requests"] == 0
