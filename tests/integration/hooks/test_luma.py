"""Integration tests of ``LumaHook``: real HTTP against a real ``LumaSandbox``, in both API flavours.

Nothing is mocked: every test starts a sandbox (``conftest.py``), points the
``luma_default`` connection at it through ``AIRFLOW_CONN_LUMA_DEFAULT`` and checks both
what the hook returns and what the sandbox saw (its request log / stats).

Each test runs once per flavour (``[gateway]`` / ``[official]``, see ``flavours.py`` for what
differs); ``gateway_only`` tests are about the gateway dialect (``/luma/tasks``, response shapes,
``download_video_url``, ...). Official-only behaviour is in ``test_official.py``.
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
from flavours import (
    api_path,
    generation_url,
    is_official,
    probe_route,
    status_route,
    submit_direct,
    submit_status,
    video_url,
)

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
    def test_submit_poll_download(self, sandbox, hook, tmp_path):
        submitted = hook.submit_generation("a red fox in the snow", aspect_ratio="16:9", model="ray-2")
        assert submitted.state == LumaState.QUEUED
        assert submitted.raw_state == RAW_QUEUED[sandbox.config.api_flavour]
        assert sandbox.submissions == 1

        polled = wait_completed(hook, submitted.id)
        assert (polled.id, polled.state) == (submitted.id, LumaState.COMPLETED)
        assert polled.video_url == video_url(sandbox, submitted.id)

        single = hook.get_generation(submitted.id)
        assert (single.id, single.state, single.raw_state) == (submitted.id, LumaState.COMPLETED, "completed")
        assert single.video_url == video_url(sandbox, submitted.id)
        assert single.thumbnail_url == f"{sandbox.url}/media/{submitted.id}.jpg"

        batch = hook.get_generations([submitted.id])
        assert [(g.id, g.state) for g in batch] == [(submitted.id, LumaState.COMPLETED)]

        async def poll_async() -> list[LumaGeneration]:
            async_hook = LumaHook()
            try:
                return await async_hook.aget_generations([submitted.id])
            finally:
                await async_hook.aclose()

        assert [(g.id, g.state) for g in asyncio.run(poll_async())] == [(submitted.id, LumaState.COMPLETED)]

        uri = hook.download_video(submitted.id, tmp_path)
        target = tmp_path / f"{submitted.id}.mp4"
        assert uri == f"file://{target}"
        assert_mp4(target, submitted.id)
        assert by_route(sandbox, "download_url") == 0  # the generation carried its URL
        served = requests.head(f"{sandbox.url}/media/{submitted.id}.mp4", timeout=10)
        assert int(served.headers["Content-Length"]) == target.stat().st_size
        assert files_in(tmp_path) == [f"{submitted.id}.mp4"]

    @pytest.mark.gateway_only("response shapes, tasks shapes and state words are gateway quirks")
    @pytest.mark.parametrize("states", ["gateway", "official"], ids=["gateway-states", "official-states"])
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

    @pytest.mark.gateway_only("the POST /luma/tasks batch route exists only on gateways")
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

    @pytest.mark.gateway_only("the download_video_url route and the Kling shape exist only on gateways")
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
        assert err.status == 404 and err.path == api_path(sandbox, f"/luma/generations/{missing}")

    def test_sync_get_generations_skip_missing(self, sandbox, hook):
        ids = completed_ids(sandbox, 2)
        missing = "11111111-2222-3333-4444-555555555555"
        some = hook.get_generations([ids[0], missing, ids[1]], skip_missing=True)
        assert [g.id for g in some] == ids
        with pytest.raises(LumaNotFoundError):
            hook.get_generations([ids[0], missing])


# ----------------------------------------------------------------------------- 2-3. submit & extend


class TestSubmitAndExtend:
    def test_submit_maps_fields_to_the_dialect_names(self, sandbox, hook):
        options: dict[str, Any] = {
            "aspect_ratio": "9:16",
            "model": "ray-2",
            "loop": True,
            "image_url": "https://example.com/start.jpg",
            "resolution": "720p",
            "duration": "5s",
        }
        if not is_official(sandbox):
            options["expand_prompt"] = "no"  # a gateway-only option (refused by the official flavour)
        gen = hook.submit_generation("  a lighthouse at dusk  ", **options)
        wait_completed(hook, gen.id)
        stored = hook.get_generation(gen.id).raw["request"]  # the sandbox echoes what it stored
        if is_official(sandbox):
            # Sent as prompt/model/keyframes (the official sandbox 422s gateway field names), stripped.
            assert stored == {
                "generation_type": "video",
                "prompt": "a lighthouse at dusk",
                "aspect_ratio": "9:16",
                "model": "ray-2",
                "loop": True,
                "keyframes": {"frame0": {"type": "image", "url": "https://example.com/start.jpg"}},
                "resolution": "720p",
                "duration": "5s",
            }
        else:
            # prompt: sent as user_prompt (the sandbox 400s without it), stripped.
            assert stored == {
                "prompt": "a lighthouse at dusk",
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
        sandbox.configure(submit_status=201)  # a gateway knob; the official API always answers 201
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
        if is_official(sandbox):  # a new video whose first keyframe is the source generation
            assert hook.get_generation(extension.id).raw["request"] == {
                "generation_type": "video",
                "prompt": "the boat sails away",
                "aspect_ratio": "16:9",
                "model": "ray-2",
                "keyframes": {"frame0": {"type": "generation", "id": source.id}},
            }
        else:
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
        if is_official(sandbox):  # the extension is a create whose keyframe is the source
            message = f"keyframes.frame0: generation {source.id} is queued; only a completed generation"
            assert message in str(info.value)
            assert by_route(sandbox, "submit") == 2  # the source + the refused extension: not retried
        else:
            message = f"generation {source.id} is pending; only completed generations can be extended"
            assert message in str(info.value)
            assert by_route(sandbox, "extend") == 1  # a 400 is not retried
        assert sandbox.submissions == 1

    def test_extend_of_unknown_generation(self, sandbox, hook):
        if is_official(sandbox):
            # The official API answers a keyframe naming an unknown generation with 400, not 404.
            with pytest.raises(LumaBadRequestError) as info:
                hook.extend_generation("no-such-generation", "more")
            assert info.value.status == 400
            assert "keyframes.frame0: generation no-such-generation not found" in info.value.message
        else:
            with pytest.raises(LumaNotFoundError) as info:
                hook.extend_generation("no-such-generation", "more")
            assert info.value.status == 404 and info.value.code == "task_not_exist"
        assert sandbox.submissions == 0


# ----------------------------------------------------------------------------- 4. errors


#: Known bug of the official flavour (see the report of the flavour matrix).

#: The sandbox's answer to a wrong key: the gateway's (new-api, in Chinese) and the official API's.
BAD_KEY_MESSAGE = {"gateway": "无效的令牌", "official": "Invalid API key is provided"}


class TestErrors:
    def test_bad_key(self, sandbox, connect):
        hook = connect(sandbox.url, key="sk-wrong-key-9999")
        expected = BAD_KEY_MESSAGE[sandbox.config.api_flavour]

        with pytest.raises(LumaAuthError) as info:
            hook.get_generation("abc")
        assert info.value.status == 401
        assert expected in info.value.message  # the API's own message
        assert by_route(sandbox, "get") == 1  # 401 is not retried

        ok, message = hook.test_connection()
        assert ok is False
        assert message.startswith(f"Bad API key (HTTP 401): {expected}")
        assert [r["auth_ok"] for r in sandbox.stats()["recent"]] == [False, False]
        assert [r["route"] for r in sandbox.stats()["recent"]] == ["get", probe_route(sandbox)]

    def test_connection_unreachable(self, flavour, connect, closed_port_url, request):
        hook = connect(closed_port_url)
        ok, message = hook.test_connection()
        assert ok is False
        assert message.startswith("API unreachable: " if flavour == "official" else "Gateway unreachable: ")
        assert hook.requests_sent == 1  # the probe is never retried

    def test_connection_works(self, sandbox, hook):
        if is_official(sandbox):  # GET /credits: authenticated, free, and it tells the balance
            expected = (True, "Connection works: credit balance 100000 (USD cents).")
            probe_answer = ("credits", 200, True)
        else:  # a GET of an id that cannot exist: 404 with a valid key
            expected = (True, "Connection works: the gateway accepted the API key.")
            probe_answer = ("get", 404, True)
        assert hook.test_connection() == expected
        (probe,) = sandbox.stats()["recent"]
        assert (probe["route"], probe["status"], probe["auth_ok"]) == probe_answer

    def test_quota_exhausted(self, sandbox, hook):
        sandbox.configure(quota_exhausted=True)
        if is_official(sandbox):  # the official API: 400 "Insufficient credits", no error code
            with pytest.raises(LumaBadRequestError) as info:
                hook.submit_generation("a cat")
            assert (info.value.status, info.value.code) == (400, None)
            assert "Insufficient credits: this generation costs" in info.value.message
        else:
            with pytest.raises(LumaAuthError) as info:
                hook.submit_generation("a cat")
            assert (info.value.status, info.value.code) == (403, "insufficient_user_quota")
            assert "user quota is not enough" in info.value.message
        assert by_route(sandbox, "submit") == 1 and sandbox.submissions == 0

    def test_unknown_id(self, sandbox, hook):
        with pytest.raises(LumaNotFoundError) as info:
            hook.get_generation("unknown-id-1")
        assert info.value.status == 404
        # new-api's 404 envelope carries a code; the official {"detail": ...} has none.
        assert info.value.code == (None if is_official(sandbox) else "task_not_exist")
        assert by_route(sandbox, "get") == 1  # not retried

    @pytest.mark.gateway_only("not_found_style (a 400 task_not_exist body) is a gateway quirk")
    def test_unknown_id_task_not_exist_style(self, sandbox, hook):
        sandbox.configure(not_found_style="task_not_exist")
        with pytest.raises(LumaNotFoundError) as info:
            hook.get_generation("unknown-id-1")
        assert info.value.status == 400
        assert info.value.code == "task_not_exist"
        assert by_route(sandbox, "get") == 1  # not retried

    def test_unknown_id_in_batch(self, sandbox, hook):
        (known,) = completed_ids(sandbox, 1)
        with pytest.raises(LumaNotFoundError):
            hook.get_generations([known, "unknown-id-2"])

    @pytest.mark.gateway_only("not_found_style (a 400 task_not_exist body) is a gateway quirk")
    def test_unknown_id_in_batch_task_not_exist_style(self, sandbox, hook):
        (known,) = completed_ids(sandbox, 1)
        sandbox.configure(not_found_style="task_not_exist")
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
            ("submit", submit_status(sandbox)),
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
        assert [r["status"] for r in sandbox.stats()["recent"]] == [503, submit_status(sandbox)]
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

    def test_submit_connection_refused_is_retried(self, flavour, connect, closed_port_url):
        hook = connect(closed_port_url, extra={"max_retries": 1})
        with pytest.raises(LumaTransportError) as info:
            hook.submit_generation("a cat")
        assert not isinstance(info.value, LumaAmbiguousSubmitError)
        assert info.value.sent is False
        assert f"POST {api_path(flavour, '/luma/generations')}" in str(info.value)
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
        assert gen.video_url == video_url(sandbox, gen_id)
        assert hook.requests_sent == 2
        assert settled(sandbox)["by_route"]["get"] == 2
        assert settled(sandbox)["faults_applied"] == {fault["kind"]: 1}

    def test_get_unparseable_body_error_message(self, sandbox, hook, fast_backoff):
        sandbox.add_fault(route="get", kind="html", times=10)
        path = api_path(sandbox, "/luma/generations/abc")
        with pytest.raises(LumaTransportError, match=rf"GET {path}: HTTP 200 body is not JSON"):
            hook.get_generation("abc")
        assert by_route(sandbox, "get") == 3


# ----------------------------------------------------------------------------- 6. secrets


SECRET = "sk-SECRET-abc123"


class TestSecrets:
    def test_key_never_in_errors_logs_or_repr(self, flavour, connect, caplog):
        with LumaSandbox(port=0, api_key=SECRET, api_flavour=flavour) as sb:
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
        flavour = sandbox.config.api_flavour
        with LumaSandbox(port=0, api_key=sandbox.api_key, api_flavour=flavour, time_scale=0) as cdn:
            cdn_id = submit_direct(cdn)  # same key, other port
            before = len(cdn.stats()["recent"])

            # A real MP4 from the other origin downloads fine ...
            video = {"id": cdn_id, "state": "completed", "video_url": f"{cdn.url}/media/{cdn_id}.mp4"}
            hook.download_video(video, tmp_path)
            assert_mp4(tmp_path / f"{cdn_id}.mp4", cdn_id)

            # ... and an auth-checked path there proves no Bearer header came along.
            probe = {"id": "probe", "state": "completed", "video_url": generation_url(cdn, cdn_id)}
            with pytest.raises(LumaDownloadError, match=r"video URL was refused .* \(HTTP 401\)"):
                hook.download_video(probe, tmp_path)
            last = cdn.stats()["recent"][-1]
            assert (last["route"], last["status"], last["auth_ok"]) == ("get", 401, False)
            assert len(cdn.stats()["recent"]) - before == 2

        # The same path on the gateway's own origin gets the key.
        own = {"id": "own", "state": "completed", "video_url": generation_url(sandbox, gen_id)}
        hook.download_video(own, tmp_path)
        last = sandbox.stats()["recent"][-1]
        assert (last["route"], last["status"], last["auth_ok"]) == ("get", 200, True)
        assert b'"id": "%s"' % gen_id.encode() in (tmp_path / "own.mp4").read_bytes()

    def test_authorization_dropped_on_redirect_to_another_origin(self, sandbox, hook, tmp_path):
        (gen_id,) = completed_ids(sandbox, 1)
        flavour = sandbox.config.api_flavour
        with LumaSandbox(port=0, api_key=sandbox.api_key, api_flavour=flavour, time_scale=0) as cdn:
            cdn_id = submit_direct(cdn)
            sandbox.add_fault(
                route="media",
                kind="status",
                status=302,
                body="",
                headers={"Location": generation_url(cdn, cdn_id)},
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


def status_requests(sb: LumaSandbox, unique_ids: int, batch_size: int) -> list[str]:
    """Routes a status lookup of ``unique_ids`` sends: batches of ``batch_size`` on ``/luma/tasks``
    (gateway), or one GET per id (official: it has no batch route)."""
    if is_official(sb):
        return ["get"] * unique_ids
    return ["tasks"] * -(-unique_ids // batch_size)


class TestChunking:
    def test_batches_of_two_dedup_and_order(self, sandbox, connect):
        ids = completed_ids(sandbox, 5)
        hook = connect(sandbox.url, extra={"batch_size": 2})
        before = len(sandbox.stats()["recent"])
        asked = [ids[3], ids[0], ids[3], ids[4], ids[1], ids[0], ids[2]]

        result = hook.get_generations(asked)

        assert [g.id for g in result] == [ids[3], ids[0], ids[4], ids[1], ids[2]]
        assert all(g.state == LumaState.COMPLETED for g in result)
        assert routes(sandbox)[before:] == status_requests(sandbox, 5, 2)  # each id asked once
        if is_official(sandbox):  # one GET per distinct id (they may run concurrently: any order)
            paths = [r["path"] for r in sandbox.stats()["recent"][before:]]
            assert sorted(paths) == sorted(f"/dream-machine/v1/generations/{i}" for i in ids)

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
        assert routes(sandbox)[before:] == status_requests(sandbox, 5, 2)


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
        sandbox.add_fault(route=status_route(sandbox), times=1, **fault)

        result = run_async(hook, lambda: hook.aget_generations(ids))

        assert [(g.id, g.state) for g in result] == [(i, LumaState.COMPLETED) for i in ids]
        if is_official(sandbox):
            # One GET per id + one retry of the broken one. aiohttp itself resends an idempotent GET
            # once when the connection is reset, so the hook then sent only the two GETs.
            assert hook.requests_sent == (2 if fault["kind"] == "reset" else 3)
            assert settled(sandbox)["by_route"]["get"] == 3
        else:
            assert hook.requests_sent == 2  # one batch + its retry
        assert settled(sandbox)["faults_applied"] == {fault["kind"]: 1}

    def test_persistent_reset_gives_transport_error(self, sandbox, hook, fast_backoff):
        sandbox.add_fault(route="get", kind="reset", times=100)
        with pytest.raises(LumaTransportError) as info:
            run_async(hook, lambda: hook.aget_generation("abc"))
        assert info.value.sent is True
        assert f"GET {api_path(sandbox, '/luma/generations/abc')}" in str(info.value)
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
        # The official body echoes the prompt once (a gateway's twice): a shorter URL keeps the middle
        # byte inside the prompt, and each pad moves it by half a byte only.
        url_length = 2000 if is_official(sandbox) else 4000
        for pad in range(6):
            gen_id = submit_direct(
                sandbox, "a" * pad + "猫" * 1000, image_url="https://example.com/" + "x" * url_length
            )
            raw = requests.get(generation_url(sandbox, gen_id), headers=headers, timeout=10).content
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
    @pytest.mark.gateway_only(
        "/pro, /vip prefixes and a host ending in /luma are gateway forms (official: test_official.py)"
    )
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

    def test_connection_with_server_error(self, sandbox, hook, request):
        sandbox.add_fault(route=probe_route(sandbox), kind="status", status=500, times=100)
        ok, message = hook.test_connection()
        assert ok is False
        if is_official(sandbox):
            assert message.startswith("API answered HTTP 500: Internal Server Error")
        else:
            assert message.startswith("Gateway answered HTTP 500: upstream error: status 500")
        assert by_route(sandbox, probe_route(sandbox)) == 1  # the probe is not retried

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

    @pytest.mark.gateway_only("#nourl (an empty video.download_url on the first poll) is a gateway quirk")
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


UNKNOWN_RATIO = {"gateway": "21:9", "official": "2:1"}


def download_url_of_bad_id(hook: LumaHook) -> Any:
    return hook.get_download_url("a b")


class TestValidationBeforeHttp:
    @pytest.mark.parametrize(
        ("call", "field"),
        [
            (lambda h: h.submit_generation(""), "prompt"),
            (lambda h: h.submit_generation("   "), "prompt"),
            (lambda h: h.submit_generation("x" * 5001), "prompt"),
            # 21:9 is an official ratio, not a gateway one; 2:1 is neither.
            (
                lambda h: h.submit_generation("a cat", aspect_ratio=UNKNOWN_RATIO[h.settings.api_flavour]),
                "aspect_ratio",
            ),
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
            (download_url_of_bad_id, "generation_id"),
            (lambda h: h.extend_generation("bad id!", "more"), "generation_id"),
            (lambda h: h.extend_generation("ok-id", ""), "prompt"),
            (lambda h: h.get_generations(["ok-id", "bad/id"]), "ids"),
        ],
    )
    def test_rejected_without_request(self, sandbox, hook, call, field, request):
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
