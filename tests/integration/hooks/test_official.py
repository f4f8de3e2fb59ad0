"""LumaHook in the official flavour against the sandbox's official mode, over real HTTP.

Only what the gateway dialect has no counterpart for: behaviour common to both flavours (submit,
status, errors, retries, downloads, ...) runs in both from ``test_luma.py`` (``[official]`` ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from luma_provider.exceptions import (
    LumaError,
    LumaGenerationFailed,
    LumaNotFoundError,
    LumaValidationError,
)
from luma_provider.hooks.luma import LumaHook
from luma_provider.models import LumaState
from luma_provider.sandbox import LumaSandbox

KEY = "sk-official-hook-tests-01"


@pytest.fixture
def official(monkeypatch: pytest.MonkeyPatch) -> Iterator[LumaSandbox]:
    """An official-flavour sandbox (jobs done in ~0.3 s); ``luma_default`` points at its API base."""
    with LumaSandbox(
        port=0, api_key=KEY, api_flavour="official", queue_seconds=0.1, process_seconds=0.2
    ) as sb:
        conn = {
            "conn_type": "luma",
            "host": sb.api_base_url,
            "password": KEY,
            "extra": {"max_retries": 1, "allow_private_downloads": True},
        }
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", json.dumps(conn))
        yield sb


def routes(sb: LumaSandbox) -> dict[str, int]:
    return dict(sb.stats()["by_route"])


def test_the_host_path_selects_the_official_flavour(official):
    assert LumaHook().settings.api_flavour == "official"


@pytest.mark.parametrize(
    ("conn", "host_suffix"),
    [
        ({}, "/dream-machine/v1"),  # no api_flavour: the host's path selects the flavour
        ({}, "/dream-machine/v1/"),
        ({"extra": {"api_flavour": "official"}}, ""),  # the server root: the hook adds the base path
        ({"extra": {"api_flavour": "official"}, "split_port": True}, ""),
    ],
    ids=["host-is-api-base", "api-base-with-slash", "extra-flavour", "port-field"],
)
def test_connection_forms(official, monkeypatch: pytest.MonkeyPatch, conn, host_suffix):
    """The official counterpart of the gateway's connection forms (test_luma.py)."""
    gen_id = LumaHook().submit_generation("a cat").id
    data = {
        "conn_type": "luma",
        "host": official.url + host_suffix,
        "password": KEY,
        "extra": conn.get("extra", {}),
    }
    if conn.get("split_port"):
        data.update(host="http://127.0.0.1", port=official.port)
    monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", json.dumps(data))

    hook = LumaHook()
    assert hook.settings.api_flavour == "official"
    assert hook.get_generation(gen_id).id == gen_id
    assert official.stats()["recent"][-1]["path"] == f"/dream-machine/v1/generations/{gen_id}"


def test_submit_wait_download(official, tmp_path: Path):
    hook = LumaHook()
    gen = hook.submit_generation("a lighthouse in fog", aspect_ratio="21:9", resolution="720p", duration=5)
    assert (gen.state, gen.generation_type, gen.model) == (LumaState.QUEUED, "video", "ray-2")
    (done,) = hook.wait_for_generations([gen.id], poll_interval=0.1, timeout=20)
    assert done.state == LumaState.COMPLETED
    assert done.video_url and done.thumbnail_url
    request = done.raw["request"]
    assert (request["prompt"], request["model"], request["aspect_ratio"], request["duration"]) == (
        "a lighthouse in fog",
        "ray-2",
        "21:9",
        "5s",
    )
    path = hook.download_video(done, tmp_path)
    assert path.endswith(f"{done.id}.mp4")
    assert (tmp_path / f"{done.id}.mp4").read_bytes()[4:8] == b"ftyp"


def test_async_status_works_without_sync_settings_first(official):
    ids = [LumaHook().submit_generation("a cat").id]

    async def look() -> list[str]:
        hook = LumaHook()  # fresh: nothing loaded on the sync side
        try:
            return [g.id for g in await hook.aget_generations(ids)]
        finally:
            await hook.aclose()

    assert asyncio.run(look()) == ids


def test_extend_reverse_and_interpolate_use_generation_keyframes(official):
    hook = LumaHook()
    first, second = (hook.submit_generation(p).id for p in ("dawn", "dusk"))
    hook.wait_for_generations([first, second], poll_interval=0.1, timeout=20)
    ext = hook.extend_generation(first, "the sun rises")
    rev = hook.extend_generation(first, "before dawn", reverse=True)
    mid = hook.interpolate_generations(first, second, "the day passes")
    keyframes = {
        name: hook.get_generation(gen.id).raw["request"]["keyframes"]
        for name, gen in (("ext", ext), ("rev", rev), ("mid", mid))
    }
    assert keyframes == {
        "ext": {"frame0": {"type": "generation", "id": first}},
        "rev": {"frame1": {"type": "generation", "id": first}},
        "mid": {
            "frame0": {"type": "generation", "id": first},
            "frame1": {"type": "generation", "id": second},
        },
    }


def test_cancel_deletes_and_the_id_then_404s(official):
    hook = LumaHook()
    gen = hook.submit_generation("a slow glacier #slow")
    assert hook.cancel_generation(gen.id) is None
    with pytest.raises(LumaNotFoundError):
        hook.get_generation(gen.id)
    recent = official.stats()["recent"]
    assert any(r["method"] == "DELETE" and r["status"] == 204 for r in recent)


def test_list_generations_walks_every_page(official):
    hook = LumaHook()
    ids = {hook.submit_generation(f"prompt {n}").id for n in range(5)}
    listed = [g.id for g in hook.list_generations(limit=2)]
    assert set(listed) == ids and len(listed) == 5
    assert routes(official)["list"] == 3  # 2 + 2 + 1


def test_credits_decrease_and_test_connection_reports_them(official):
    hook = LumaHook()
    before = hook.get_credits()
    hook.submit_generation("a red fox", resolution="1080p")
    after = hook.get_credits()
    assert 0 < after < before
    ok, message = hook.test_connection()
    assert ok is True and f"{after:g}" in message


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_image_generation_completes_without_a_video_and_downloads(official, tmp_path: Path):
    hook = LumaHook()
    gen = hook.submit_image_generation("a teapot", aspect_ratio="1:1", format="png")
    (done,) = hook.wait_for_generations([gen.id], poll_interval=0.1, timeout=20)
    assert (done.is_image, done.video_url) == (True, None)
    assert done.image_url and done.result_url == done.image_url
    path = hook.download_video(done, tmp_path)
    # a png request downloads as a real PNG named .png
    assert path.endswith(f"{done.id}.png")
    assert (tmp_path / f"{done.id}.png").read_bytes()[:8] == PNG_SIGNATURE


def test_upscale_and_audio(official):
    hook = LumaHook()
    source = hook.submit_generation("a kite").id
    hook.wait_for_generations([source], poll_interval=0.1, timeout=20)
    upscaled = hook.upscale_generation(source, "1080p")
    audio = hook.add_audio(source, "wind and gulls", negative_prompt="music")
    done = hook.wait_for_generations([upscaled.id, audio.id], poll_interval=0.1, timeout=20)
    assert [g.state for g in done] == [LumaState.COMPLETED, LumaState.COMPLETED]
    assert done[0].raw["request"]["resolution"] == "1080p"
    assert done[1].raw["request"]["prompt"] == "wind and gulls"


SOURCE_VIDEO = "https://cdn.example/source.mp4"


def test_modify_and_reframe_video_complete_with_a_video(official, tmp_path: Path):
    hook = LumaHook()
    before = hook.get_credits()
    modified = hook.modify_video(
        SOURCE_VIDEO,
        "the same street in neon",
        mode="reimagine_2",
        first_frame_url="https://cdn.example/f.jpg",
    )
    reframed = hook.reframe_video(
        SOURCE_VIDEO, "9:16", model="ray-flash-2", prompt="more sky", resized_width=540, y_start=0, y_end=960
    )
    for gen in (modified, reframed):
        assert (gen.state, gen.generation_type, gen.is_image) == (LumaState.QUEUED, "video", False)
    assert (modified.model, reframed.model) == ("ray-2", "ray-flash-2")
    assert routes(official)["modify"] == 1 and routes(official)["reframe_video"] == 1
    assert hook.get_credits() < before

    done = hook.wait_for_generations([modified.id, reframed.id], poll_interval=0.1, timeout=20)
    assert [g.state for g in done] == [LumaState.COMPLETED, LumaState.COMPLETED]
    assert all(g.result_url == g.video_url and g.video_url.endswith(f"{g.id}.mp4") for g in done)
    assert done[0].raw["request"] == {
        "generation_type": "modify_video",
        "media": {"url": SOURCE_VIDEO},
        "mode": "reimagine_2",
        "model": "ray-2",
        "first_frame": {"url": "https://cdn.example/f.jpg"},
        "prompt": "the same street in neon",
    }
    assert done[1].raw["request"] == {
        "generation_type": "reframe_video",
        "media": {"url": SOURCE_VIDEO},
        "aspect_ratio": "9:16",
        "model": "ray-flash-2",
        "prompt": "more sky",
        "resized_width": 540,
        "y_start": 0,
        "y_end": 960,
    }
    path = hook.download_video(done[1], tmp_path)
    assert path.endswith(f"{reframed.id}.mp4")
    assert (tmp_path / f"{reframed.id}.mp4").read_bytes()[4:8] == b"ftyp"


def test_modify_a_completed_generation_by_its_video_url(official):
    hook = LumaHook()
    source = hook.submit_generation("a kite over dunes")
    (source,) = hook.wait_for_generations([source.id], poll_interval=0.1, timeout=20)
    assert source.video_url
    gen = hook.modify_video(source.video_url, "a kite over snow", mode="adhere_1")
    (done,) = hook.wait_for_generations([gen.id], poll_interval=0.1, timeout=20)
    assert done.id != source.id and done.raw["request"]["media"] == {"url": source.video_url}
    assert done.raw["request"]["mode"] == "adhere_1" and done.video_url


@pytest.mark.parametrize(
    ("fmt", "suffix", "magic"), [("png", ".png", PNG_SIGNATURE), ("jpg", ".jpg", b"\xff\xd8")]
)
def test_reframe_image_completes_with_an_image_in_its_format(official, tmp_path: Path, fmt, suffix, magic):
    hook = LumaHook()
    gen = hook.reframe_image("https://cdn.example/a.jpg", "21:9", format=fmt, x_start=0, x_end=320)
    assert (gen.state, gen.generation_type, gen.model, gen.is_image) == (
        LumaState.QUEUED,
        "image",
        "photon-1",
        True,
    )
    (done,) = hook.wait_for_generations([gen.id], poll_interval=0.1, timeout=20)
    assert (done.state, done.video_url) == (LumaState.COMPLETED, None)
    assert done.result_url == done.image_url and done.image_url.endswith(f"{gen.id}{suffix}")
    assert done.raw["request"]["format"] == fmt and done.raw["request"]["generation_type"] == "reframe_image"
    path = hook.download_video(done, tmp_path)
    assert path.endswith(f"{gen.id}{suffix}")
    assert (tmp_path / f"{gen.id}{suffix}").read_bytes().startswith(magic)


def test_a_failed_modify_raises_with_its_reason(official):
    hook = LumaHook()
    gen = hook.modify_video(SOURCE_VIDEO, "nope #fail:source video unreadable")
    with pytest.raises(LumaGenerationFailed, match="source video unreadable"):
        hook.wait_for_generations([gen.id], poll_interval=0.1, timeout=20)


@pytest.mark.parametrize(
    ("call", "field", "allowed"),
    [
        (
            lambda h: h.modify_video(SOURCE_VIDEO, "x", mode="wild"),
            "mode",
            "adhere_1, adhere_2, adhere_3, flex_1",
        ),
        (lambda h: h.modify_video(SOURCE_VIDEO, "x", model="photon-1"), "model", "ray-2, ray-flash-2"),
        (lambda h: h.modify_video("", "x"), "media_url", "is required"),
        (
            lambda h: h.modify_video(SOURCE_VIDEO, "x", aspect_ratio="1:1"),
            "aspect_ratio",
            "not a modify option",
        ),
        (lambda h: h.reframe_video(SOURCE_VIDEO, None), "aspect_ratio", "one of 1:1, 4:3"),
        (lambda h: h.reframe_video(SOURCE_VIDEO, "2:1"), "aspect_ratio", "21:9, 9:21"),
        (lambda h: h.reframe_video(SOURCE_VIDEO, "1:1", model="photon-1"), "model", "ray-2, ray-flash-2"),
        (lambda h: h.reframe_video(SOURCE_VIDEO, "1:1", x_start=5, x_end=1), "x_end", "greater than x_start"),
        (lambda h: h.reframe_video(SOURCE_VIDEO, "1:1", zoom=2), "zoom", "not a reframe option"),
        (lambda h: h.reframe_image("ftp://a/b.jpg", "1:1"), "media_url", "plain http(s) URL"),
        (lambda h: h.reframe_image(SOURCE_VIDEO, "1:1", model="ray-2"), "model", "photon-1, photon-flash-1"),
        (lambda h: h.reframe_image(SOURCE_VIDEO, "1:1", format="webp"), "format", "jpg, png"),
    ],
)
def test_modify_and_reframe_refuse_bad_input_before_any_request(official, call, field, allowed):
    with pytest.raises(LumaValidationError) as info:
        call(LumaHook())
    assert info.value.field == field and allowed in str(info.value)
    assert official.stats()["requests"] == 0


def test_official_only_options_fail_before_any_request_in_the_wrong_flavour(official):
    hook = LumaHook()
    with pytest.raises(LumaValidationError, match="expand_prompt"):
        hook.submit_generation("a cat", expand_prompt=True)
    with pytest.raises(LumaValidationError, match=r"model.*ray-2, ray-flash-2"):
        hook.submit_generation("a cat", model="ray-1-6")
    assert official.stats()["requests"] == 0


def test_gateway_flavour_says_what_it_lacks(monkeypatch: pytest.MonkeyPatch):
    with LumaSandbox(port=0, api_key=KEY, time_scale=0) as gateway:
        conn = {"conn_type": "luma", "host": gateway.url, "password": KEY}
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", json.dumps(conn))
        hook = LumaHook()
        for call in (
            lambda: hook.cancel_generation("g1"),
            lambda: hook.get_credits(),
            lambda: list(hook.list_generations()),
            lambda: hook.submit_image_generation("x"),
            lambda: hook.modify_video(SOURCE_VIDEO, "x"),
            lambda: hook.reframe_video(SOURCE_VIDEO, "1:1"),
            lambda: hook.reframe_image("https://cdn.example/a.jpg", "1:1"),
        ):
            with pytest.raises(LumaError, match="needs Luma's official API"):
                call()
        assert gateway.stats()["requests"] == 0


def test_the_trigger_finishes_an_image_generation(official):
    from luma_provider.triggers.luma import LumaTrigger

    official.configure(queue_seconds=0, process_seconds=0)  # already completed at the first look
    gen = LumaHook().submit_image_generation("a teapot")
    trigger = LumaTrigger([gen.id], poll_interval=0.2)

    async def first() -> dict[str, object]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(first())
    assert event["status"] == "success", event
    # One look, not three more "completed but no video URL yet" polls: an image has no video.
    assert routes(official)["get"] == 1


def _wait_deferred_then_kill(trigger, seconds: float = 0.5) -> None:
    """Run ``trigger`` as the triggerer would, cancel it after ``seconds``, then call ``on_kill``."""

    async def scenario() -> None:
        task = asyncio.ensure_future(anext(aiter(trigger.run())))
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await trigger.on_kill()

    asyncio.run(scenario())


def test_on_kill_cancels_what_is_still_rendering(official):
    from luma_provider.triggers.luma import LumaTrigger

    hook = LumaHook()
    done = hook.submit_generation("a quick one").id
    hook.wait_for_generations([done], poll_interval=0.1, timeout=20)
    slow = hook.submit_generation("a slow glacier #slow").id
    _wait_deferred_then_kill(LumaTrigger([done, slow], poll_interval=0.2, cancel_on_kill=True))
    deletes = [r["path"] for r in official.stats()["recent"] if r["method"] == "DELETE"]
    assert deletes == [f"/dream-machine/v1/generations/{slow}"]  # the completed one is left alone
    with pytest.raises(LumaNotFoundError):
        hook.get_generation(slow)


def test_on_kill_without_the_option_cancels_nothing(official):
    from luma_provider.triggers.luma import LumaTrigger

    slow = LumaHook().submit_generation("a slow glacier #slow").id
    _wait_deferred_then_kill(LumaTrigger([slow], poll_interval=0.2))
    assert [r for r in official.stats()["recent"] if r["method"] == "DELETE"] == []
    assert LumaHook().get_generation(slow).state in (LumaState.QUEUED, LumaState.RUNNING)


def test_a_worker_side_kill_cancels_too(official):
    from luma_provider.operators.luma import LumaGenerateOperator
    from luma_provider.sensors.luma import LumaTaskSensor

    hook = LumaHook()
    first, second = (hook.submit_generation(f"slow {n} #slow").id for n in (1, 2))
    LumaTaskSensor(task_id="wait", generation_id=[first], deferrable=False).on_kill()
    operator = LumaGenerateOperator(task_id="submit", prompt="x", cancel_on_kill=True)
    operator._submitted_id = second  # what execute() records after its submit
    operator.on_kill()
    deletes = sorted(r["path"] for r in official.stats()["recent"] if r["method"] == "DELETE")
    assert deletes == sorted(f"/dream-machine/v1/generations/{i}" for i in (first, second))


def test_the_gateway_flavour_cancels_nothing_and_says_so(monkeypatch: pytest.MonkeyPatch):
    with LumaSandbox(port=0, api_key=KEY, queue_seconds=30) as gateway:
        conn = {"conn_type": "luma", "host": gateway.url, "password": KEY}
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", json.dumps(conn))
        gen_id = LumaHook().submit_generation("a slow one").id

        async def cancel() -> list[str]:
            hook = LumaHook()
            try:
                return await hook.acancel_unfinished([gen_id])
            finally:
                await hook.aclose()

        assert asyncio.run(cancel()) == []
        assert [r["method"] for r in gateway.stats()["recent"]] == ["POST"]
