"""LumaHook in the official flavour against the sandbox's official mode, over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from luma_provider.exceptions import LumaError, LumaNotFoundError, LumaValidationError
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


def test_status_of_many_ids_is_one_get_each(official):
    hook = LumaHook()
    ids = [hook.submit_generation(f"prompt {n}").id for n in range(3)]
    before = routes(official).get("get", 0)
    gens = hook.get_generations(ids)
    assert [g.id for g in gens] == ids
    assert routes(official).get("get", 0) - before == 3
    assert "tasks" not in routes(official)


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


def test_image_generation_completes_without_a_video_and_downloads(official, tmp_path: Path):
    hook = LumaHook()
    gen = hook.submit_image_generation("a teapot", aspect_ratio="1:1", format="png")
    (done,) = hook.wait_for_generations([gen.id], poll_interval=0.1, timeout=20)
    assert (done.is_image, done.video_url) == (True, None)
    assert done.image_url and done.result_url == done.image_url
    path = hook.download_video(done, tmp_path)
    assert Path(path.removeprefix("file://")).stat().st_size > 0


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
