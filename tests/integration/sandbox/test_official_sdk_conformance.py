"""The official-flavour sandbox driven by Luma's own ``lumaai`` 1.21.0 SDK, over real HTTP.

Every field of the SDK's models is Optional and extra fields are allowed, so a response that
merely parses proves nothing: each test checks the fields it gets one by one.
"""

from __future__ import annotations

import itertools
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import lumaai
import pytest
import requests
from lumaai.types import Generation

from luma_provider.sandbox import LumaSandbox, media, official

KEY = "sandbox-key"


@pytest.fixture
def client(official_sb: LumaSandbox) -> Iterator[lumaai.LumaAI]:
    with lumaai.LumaAI(
        auth_token=KEY, base_url=f"{official_sb.url}/dream-machine/v1", max_retries=0, timeout=10
    ) as luma:
        yield luma


def wait_state(client: lumaai.LumaAI, gen_id: str, state: str, timeout: float = 5.0) -> Generation:
    deadline = time.monotonic() + timeout
    while True:
        gen = client.generations.get(gen_id)
        if gen.state == state:
            return gen
        assert gen.state in ("queued", "dreaming"), gen
        assert time.monotonic() < deadline, f"{gen_id} still {gen.state}"
        time.sleep(0.03)


def completed_video(client: lumaai.LumaAI, prompt: str = "a red fox in snow", **params: Any) -> Generation:
    created = client.generations.create(model="ray-2", prompt=prompt, **params)
    assert created.id is not None
    return wait_state(client, created.id, "completed")


def assert_recent(created_at: datetime | None) -> None:
    assert isinstance(created_at, datetime) and created_at.tzinfo is not None
    assert abs(datetime.now(UTC) - created_at) < timedelta(minutes=1)


def fetch(url: str | None) -> requests.Response:
    assert isinstance(url, str) and url.startswith("http://127.0.0.1:")
    resp = requests.get(url, timeout=5)
    assert resp.status_code == 200, url
    return resp


def assert_mp4(url: str | None, gen_id: str) -> None:
    resp = fetch(url)
    assert resp.headers["Content-Type"] == "video/mp4"
    assert resp.content[4:8] == b"ftyp"  # the first box of an ISO BMFF file
    # the served clip is the real sample clip, whose own headers media.py reads
    assert media.parse_mp4_info(resp.content) == media.video_info(gen_id)


def assert_jpeg(url: str | None) -> None:
    resp = fetch(url)
    assert resp.headers["Content-Type"] == "image/jpeg"
    assert resp.content[:3] == b"\xff\xd8\xff" and resp.content[-2:] == b"\xff\xd9"


def assert_png(url: str | None) -> tuple[int, int]:
    """A served PNG, checked chunk by chunk (CRCs, IHDR, the pixel data's size); its size."""
    assert isinstance(url, str) and url.endswith(".png")
    resp = fetch(url)
    assert resp.headers["Content-Type"] == "image/png"
    data = resp.content
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind, payload = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", data, offset + 8 + length)
        assert crc == zlib.crc32(kind + payload), kind
        chunks.append((kind, payload))
        offset += 12 + length
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour = struct.unpack_from(">IIBB", chunks[0][1])
    assert (depth, colour) == (8, 2)  # 8-bit RGB
    assert len(zlib.decompress(chunks[1][1])) == height * (1 + 3 * width)
    return width, height


# --------------------------------------------------------------------------- ping, credits, concepts


def test_ping_check(client) -> None:
    pong = client.ping.check()
    assert pong.message == "pong"


def test_concepts_list_is_a_list_of_keys(client) -> None:
    concepts = client.generations.concepts.list()
    assert isinstance(concepts, list) and len(concepts) > 5
    assert all(isinstance(key, str) and key for key in concepts)
    assert "dolly_zoom" in concepts and len(set(concepts)) == len(concepts)


def test_credits_decrease_with_each_generation(client) -> None:
    start = client.credits.get().credit_balance
    assert isinstance(start, float) and start > 0
    client.generations.create(model="ray-2", prompt="a", resolution="540p", duration="5s")
    after_small = client.credits.get().credit_balance
    client.generations.create(model="ray-2", prompt="b", resolution="1080p", duration="9s")
    after_big = client.credits.get().credit_balance
    client.generations.image.create(model="photon-flash-1", prompt="c")
    after_image = client.credits.get().credit_balance
    assert start > after_small > after_big > after_image
    # a longer, sharper video costs more than a short 540p one; an image costs little
    assert start - after_small < after_small - after_big
    assert 0 < after_big - after_image < start - after_small


# --------------------------------------------------------------------------- video create / get


def test_text_to_video_progression_and_fields(client, official_sb) -> None:
    created = client.generations.create(
        model="ray-2", prompt="a tiger walking in snow", aspect_ratio="9:16", resolution="720p", duration="5s"
    )
    assert isinstance(created, Generation)
    uuid.UUID(created.id)
    assert created.state == "queued"
    assert created.generation_type == "video" and created.model == "ray-2"
    assert created.failure_reason is None and created.assets is None
    assert_recent(created.created_at)
    request = created.request
    assert isinstance(request, lumaai.types.generation.RequestGenerationRequest)
    assert request.model == "ray-2" and request.prompt == "a tiger walking in snow"
    assert (request.aspect_ratio, request.resolution, request.duration) == ("9:16", "720p", "5s")
    assert request.generation_type == "video"
    assert request.model_extra == {}  # no gateway-dialect keys leak into the echo

    dreaming = wait_state(client, created.id, "dreaming")
    assert dreaming.assets is not None and dreaming.assets.video is None
    assert_mp4(dreaming.assets.progress_video, created.id)

    done = wait_state(client, created.id, "completed")
    assert done.id == created.id and done.created_at == created.created_at
    assert done.failure_reason is None and done.model == "ray-2" and done.generation_type == "video"
    assert done.assets is not None
    assert_mp4(done.assets.video, created.id)
    image = fetch(done.assets.image)
    assert image.headers["Content-Type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"
    assert done.request == request


def test_image_keyframe_loop_and_concepts(client) -> None:
    frame_url = "https://example.com/start.jpg"
    created = client.generations.create(
        model="ray-flash-2",
        prompt="the camera flies over a lake",
        keyframes={"frame0": {"type": "image", "url": frame_url}},
        concepts=[{"key": "dolly_zoom"}, {"key": "aerial"}],
        loop=True,
    )
    request = created.request
    assert isinstance(request, lumaai.types.generation.RequestGenerationRequest)
    assert request.model == "ray-flash-2" and request.loop is True
    assert request.keyframes is not None and request.keyframes.frame1 is None
    frame0 = request.keyframes.frame0
    assert isinstance(frame0, lumaai.types.generation.RequestGenerationRequestKeyframesFrame0ImageReference)
    assert frame0.url == frame_url
    assert [c.key for c in request.concepts or []] == ["dolly_zoom", "aerial"]
    done = wait_state(client, created.id, "completed")
    assert done.model == "ray-flash-2" and done.assets is not None and done.assets.video


def test_extend_and_reverse_extend_via_generation_keyframes(client) -> None:
    source = completed_video(client)
    extended = client.generations.create(
        model="ray-2",
        prompt="and then it runs",
        keyframes={"frame0": {"type": "generation", "id": source.id}},
    )
    reverse = client.generations.create(
        model="ray-2", prompt="before that", keyframes={"frame1": {"type": "generation", "id": source.id}}
    )
    assert extended.id != source.id and reverse.id not in (source.id, extended.id)
    gen_ref = lumaai.types.generation.RequestGenerationRequestKeyframesFrame0GenerationReference
    assert extended.request.keyframes is not None
    assert isinstance(extended.request.keyframes.frame0, gen_ref)
    assert extended.request.keyframes.frame0.id == source.id
    assert reverse.request.keyframes is not None and reverse.request.keyframes.frame0 is None
    assert reverse.request.keyframes.frame1 is not None and reverse.request.keyframes.frame1.id == source.id
    assert wait_state(client, extended.id, "completed").assets.video


def test_extend_of_unfinished_or_unknown_generation_is_rejected(client, official_sb) -> None:
    official_sb.configure(process_seconds=30)  # still dreaming at the next call, however loaded the machine
    pending = client.generations.create(model="ray-2", prompt="not done yet")
    with pytest.raises(lumaai.BadRequestError) as info:
        client.generations.create(
            model="ray-2", prompt="x", keyframes={"frame0": {"type": "generation", "id": pending.id}}
        )
    assert info.value.status_code == 400
    assert "keyframes.frame0" in info.value.body["detail"] and "queued" in info.value.body["detail"]
    with pytest.raises(lumaai.BadRequestError) as info:
        client.generations.create(
            model="ray-2", prompt="x", keyframes={"frame1": {"type": "generation", "id": str(uuid.uuid4())}}
        )
    assert "not found" in info.value.body["detail"]


def test_failed_generation(client) -> None:
    created = client.generations.create(model="ray-2", prompt="a bad one #fail:content policy")
    failed = wait_state(client, created.id, "failed")
    assert failed.failure_reason == "content policy"
    assert failed.assets is None


# --------------------------------------------------------------------------- list, delete


def test_list_paginates_newest_first(client) -> None:
    ids = [client.generations.create(model="ray-2", prompt=f"clip {n}").id for n in range(5)]
    first = client.generations.list(limit=2)
    assert (first.count, first.has_more, first.limit, first.offset) == (2, True, 2, 0)
    seen: list[str] = []
    offset = 0
    while True:
        page = client.generations.list(limit=2, offset=offset)
        assert page.offset == offset and page.limit == 2
        assert page.count == len(page.generations)
        for gen in page.generations:
            assert isinstance(gen, Generation) and gen.state in ("queued", "dreaming", "completed")
            assert gen.generation_type == "video" and gen.model == "ray-2"
            assert_recent(gen.created_at)
        seen += [gen.id for gen in page.generations]
        if not page.has_more:
            break
        offset += page.count
    assert seen == ids[::-1]
    assert client.generations.list().count == 5  # default limit (100) takes all


def test_delete_then_get_is_not_found(client) -> None:
    gen = client.generations.create(model="ray-2", prompt="short-lived")
    assert client.generations.delete(gen.id) is None
    with pytest.raises(lumaai.NotFoundError) as info:
        client.generations.get(gen.id)
    assert info.value.status_code == 404 and "not found" in info.value.body["detail"]
    assert gen.id not in [g.id for g in client.generations.list().generations]
    with pytest.raises(lumaai.NotFoundError):
        client.generations.delete(gen.id)


# --------------------------------------------------------------------------- image, upscale, audio


def test_image_create(client, official_sb) -> None:
    created = client.generations.image.create(
        model="photon-1",
        prompt="a lighthouse at dusk",
        aspect_ratio="1:1",
        format="png",
        image_ref=[{"url": "https://example.com/ref.jpg", "weight": 0.8}],
    )
    assert created.state == "queued" and created.generation_type == "image" and created.model == "photon-1"
    request = created.request
    assert isinstance(request, lumaai.types.generation.RequestImageGenerationRequest)
    assert (request.prompt, request.aspect_ratio, request.format) == ("a lighthouse at dusk", "1:1", "png")
    assert request.image_ref is not None and request.image_ref[0].weight == 0.8
    done = wait_state(client, created.id, "completed")
    assert done.assets is not None and done.assets.video is None and done.assets.progress_video is None
    # format="png" is a real PNG under a .png URL, not the JPEG of a jpg image
    assert done.assets.image == f"{official_sb.url}/media/{created.id}.png"
    assert assert_png(done.assets.image) == media.PNG_SIZE
    assert requests.get(f"{official_sb.url}/media/{created.id}.jpg", timeout=5).status_code == 404


@pytest.mark.parametrize("params", [{}, {"format": "jpg"}])
def test_image_create_without_png_is_a_jpeg(client, official_sb, params) -> None:
    gen = client.generations.image.create(model="photon-flash-1", prompt="a jpeg", sync=True, **params)
    assert gen.state == "completed" and gen.assets is not None
    assert gen.assets.image == f"{official_sb.url}/media/{gen.id}.jpg"
    assert_jpeg(gen.assets.image)
    assert requests.get(f"{official_sb.url}/media/{gen.id}.png", timeout=5).status_code == 404


def test_a_video_has_no_png(client, official_sb) -> None:
    done = completed_video(client)
    assert requests.get(f"{official_sb.url}/media/{done.id}.png", timeout=5).status_code == 404


def test_image_create_sync_answers_completed(client) -> None:
    gen = client.generations.image.create(model="photon-flash-1", prompt="a quick one", sync=True)
    assert gen.state == "completed" and gen.assets is not None and gen.assets.image


def test_upscale_and_audio_make_new_video_generations(client) -> None:
    source = completed_video(client, duration="9s")
    upscaled = client.generations.upscale(source.id, resolution="1080p")
    assert upscaled.id != source.id and upscaled.state == "queued"
    assert upscaled.generation_type == "video" and upscaled.model == "ray-2"
    assert isinstance(upscaled.request, lumaai.types.generation.RequestUpscaleVideoGenerationRequest)
    assert upscaled.request.resolution == "1080p" and upscaled.request.generation_type == "upscale_video"

    voiced = client.generations.audio(source.id, prompt="waves and gulls", negative_prompt="music")
    assert voiced.id not in (source.id, upscaled.id) and voiced.generation_type == "video"
    assert isinstance(voiced.request, lumaai.types.generation.RequestAudioGenerationRequest)
    assert (voiced.request.prompt, voiced.request.negative_prompt) == ("waves and gulls", "music")
    assert voiced.request.generation_type == "add_audio"

    for gen in (upscaled, voiced):
        done = wait_state(client, gen.id, "completed")
        assert done.assets is not None
        assert_mp4(done.assets.video, gen.id)


def test_upscale_needs_a_completed_existing_video(client, official_sb) -> None:
    with pytest.raises(lumaai.NotFoundError):
        client.generations.upscale(str(uuid.uuid4()), resolution="4k")
    official_sb.configure(process_seconds=30)  # still dreaming at the next call
    pending = client.generations.create(model="ray-2", prompt="not yet")
    official_sb.configure(process_seconds=0.3)
    with pytest.raises(lumaai.BadRequestError) as info:
        client.generations.audio(pending.id, prompt="x")
    assert "completed" in info.value.body["detail"]
    image = client.generations.image.create(model="photon-1", prompt="still", sync=True)
    with pytest.raises(lumaai.BadRequestError) as info:
        client.generations.upscale(image.id, resolution="4k")
    assert "image" in info.value.body["detail"]


# --------------------------------------------------------------------------- modify, reframe

SOURCE_VIDEO = "https://cdn.example/source.mp4"
SOURCE_IMAGE = "https://cdn.example/source.jpg"
FIRST_FRAME = "https://cdn.example/first.jpg"
REFRAME_GEOMETRY = {
    "grid_position_x": 160,
    "grid_position_y": 0,
    "resized_width": 960,
    "resized_height": 540,
    "x_start": 0,
    "x_end": 1280,
    "y_start": 0,
    "y_end": 720,
}


def assert_created(created: Generation, generation_type: str, model: str) -> None:
    """The fields of a fresh create's answer (any create: they all start queued)."""
    assert isinstance(created, Generation)
    uuid.UUID(created.id)
    assert (created.state, created.generation_type, created.model) == ("queued", generation_type, model)
    assert created.failure_reason is None and created.assets is None
    assert_recent(created.created_at)
    assert created.model_extra == {}


def test_video_modify(client, official_sb, callback_receiver) -> None:
    receiver = callback_receiver()
    created = client.generations.video.modify(
        generation_type="modify_video",
        media={"url": SOURCE_VIDEO},
        mode="reimagine_2",
        model="ray-flash-2",
        prompt="the same street, in neon",
        first_frame={"url": FIRST_FRAME},
        callback_url=receiver.url,
    )
    assert_created(created, "video", "ray-flash-2")
    request = created.request
    assert isinstance(request, lumaai.types.generation.RequestModifyVideoRequest)
    assert (request.generation_type, request.mode, request.model) == (
        "modify_video",
        "reimagine_2",
        "ray-flash-2",
    )
    assert request.media.url == SOURCE_VIDEO
    assert request.first_frame is not None and request.first_frame.url == FIRST_FRAME
    assert (request.prompt, request.callback_url) == ("the same street, in neon", receiver.url)
    assert request.model_extra == {}
    assert official_sb.submissions == 1

    dreaming = wait_state(client, created.id, "dreaming")
    assert dreaming.assets is not None and dreaming.assets.video is None
    assert_mp4(dreaming.assets.progress_video, created.id)
    done = wait_state(client, created.id, "completed")
    assert (done.id, done.created_at, done.generation_type, done.model) == (
        created.id,
        created.created_at,
        "video",
        "ray-flash-2",
    )
    assert done.failure_reason is None and done.assets is not None
    assert_mp4(done.assets.video, created.id)
    assert_jpeg(done.assets.image)  # the thumbnail
    assert done.request == request
    # callbacks work as for every create: dreaming, then completed, each the Generation JSON
    bodies = wait_for_posts(receiver, 2)
    assert [b["state"] for b in bodies] == ["dreaming", "completed"]
    assert all(b["id"] == created.id and b["request"]["generation_type"] == "modify_video" for b in bodies)


def test_video_modify_minimal_body(client) -> None:
    created = client.generations.video.modify(
        generation_type="modify_video", media={"url": SOURCE_VIDEO}, mode="adhere_1", model="ray-2"
    )
    request = created.request
    assert isinstance(request, lumaai.types.generation.RequestModifyVideoRequest)
    assert (request.mode, request.model, request.media.url) == ("adhere_1", "ray-2", SOURCE_VIDEO)
    assert (request.prompt, request.first_frame, request.callback_url) == (None, None, None)
    assert wait_state(client, created.id, "completed").assets.video


def test_video_reframe(client) -> None:
    created = client.generations.video.reframe(
        generation_type="reframe_video",
        media={"url": SOURCE_VIDEO},
        aspect_ratio="9:21",
        model="ray-2",
        prompt="more sky above",
        first_frame={"url": FIRST_FRAME},
        **REFRAME_GEOMETRY,
    )
    assert_created(created, "video", "ray-2")
    request = created.request
    assert isinstance(request, lumaai.types.generation.RequestReframeVideoRequest)
    assert (request.generation_type, request.aspect_ratio, request.model) == (
        "reframe_video",
        "9:21",
        "ray-2",
    )
    assert request.media.url == SOURCE_VIDEO and request.prompt == "more sky above"
    assert request.first_frame is not None and request.first_frame.url == FIRST_FRAME
    assert {name: getattr(request, name) for name in REFRAME_GEOMETRY} == REFRAME_GEOMETRY
    assert request.callback_url is None and request.model_extra == {}
    done = wait_state(client, created.id, "completed")
    assert done.generation_type == "video" and done.assets is not None
    assert_mp4(done.assets.video, created.id)
    assert done.request == request


@pytest.mark.parametrize(("fmt", "suffix"), [("png", ".png"), ("jpg", ".jpg"), (None, ".jpg")])
def test_image_reframe(client, official_sb, fmt, suffix) -> None:
    params: dict[str, Any] = {"format": fmt} if fmt else {}
    created = client.generations.image.reframe(
        generation_type="reframe_image",
        media={"url": SOURCE_IMAGE},
        aspect_ratio="1:1",
        model="photon-flash-1",
        prompt="a wider beach",
        x_start=10,
        x_end=20,
        **params,
    )
    assert_created(created, "image", "photon-flash-1")
    request = created.request
    assert isinstance(request, lumaai.types.generation.RequestReframeImageRequest)
    assert (request.generation_type, request.aspect_ratio, request.model, request.format) == (
        "reframe_image",
        "1:1",
        "photon-flash-1",
        fmt,
    )
    assert (request.media.url, request.prompt, request.x_start, request.x_end) == (
        SOURCE_IMAGE,
        "a wider beach",
        10,
        20,
    )
    assert request.y_start is None and request.model_extra == {}
    done = wait_state(client, created.id, "completed")
    assert done.generation_type == "image" and done.assets is not None
    assert done.assets.video is None and done.assets.progress_video is None
    assert done.assets.image == f"{official_sb.url}/media/{created.id}{suffix}"
    if suffix == ".png":
        assert_png(done.assets.image)
    else:
        assert_jpeg(done.assets.image)
    assert done.request == request


def test_modify_and_reframe_are_charged(client) -> None:
    balance = client.credits.get().credit_balance
    creates = [
        (
            lambda: client.generations.video.modify(
                generation_type="modify_video", media={"url": SOURCE_VIDEO}, mode="flex_2", model="ray-2"
            ),
            official.COSTS["MODIFY_VIDEO"]["ray-2"],
        ),
        (
            lambda: client.generations.video.reframe(
                generation_type="reframe_video",
                media={"url": SOURCE_VIDEO},
                aspect_ratio="1:1",
                model="ray-flash-2",
            ),
            official.COSTS["REFRAME_VIDEO"]["ray-flash-2"],
        ),
        (
            lambda: client.generations.image.reframe(
                generation_type="reframe_image",
                media={"url": SOURCE_IMAGE},
                aspect_ratio="1:1",
                model="photon-1",
            ),
            official.COSTS["REFRAME_IMAGE"]["photon-1"],
        ),
    ]
    for create, price in creates:
        create()
        after = client.credits.get().credit_balance
        assert after == pytest.approx(balance - price) and price > 0
        balance = after


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        # generation_type is required on these routes (optional on video/image create)
        (
            "/generations/video/modify",
            {"media": {"url": SOURCE_VIDEO}, "mode": "flex_1", "model": "ray-2"},
            422,
            "'generation_type' is required",
        ),
        (
            "/generations/video/modify",
            {
                "generation_type": "reframe_video",
                "media": {"url": SOURCE_VIDEO},
                "mode": "flex_1",
                "model": "ray-2",
            },
            422,
            "'generation_type' must be 'modify_video'",
        ),
        (
            "/generations/video/modify",
            {"generation_type": "modify_video", "media": {"url": SOURCE_VIDEO}, "model": "ray-2"},
            422,
            "'mode' is required; one of adhere_1",
        ),
        (
            "/generations/video/modify",
            {
                "generation_type": "modify_video",
                "media": {"url": SOURCE_VIDEO},
                "mode": "wild",
                "model": "ray-2",
            },
            422,
            "'mode' must be one of adhere_1, adhere_2, adhere_3, flex_1",
        ),
        (
            "/generations/video/modify",
            {"generation_type": "modify_video", "media": {"url": SOURCE_VIDEO}, "mode": "flex_1"},
            422,
            "'model' is required; one of ray-2, ray-flash-2",
        ),
        (
            "/generations/video/modify",
            {"generation_type": "modify_video", "mode": "flex_1", "model": "ray-2"},
            422,
            "'media' is required",
        ),
        (
            "/generations/video/modify",
            {"generation_type": "modify_video", "media": SOURCE_VIDEO, "mode": "flex_1", "model": "ray-2"},
            422,
            "'media' must be an object",
        ),
        (
            "/generations/video/modify",
            {
                "generation_type": "modify_video",
                "media": {"url": "ftp://a/b"},
                "mode": "flex_1",
                "model": "ray-2",
            },
            422,
            "'media.url' must be an http(s) URL",
        ),
        (
            "/generations/video/modify",
            {
                "generation_type": "modify_video",
                "media": {"url": SOURCE_VIDEO},
                "mode": "flex_1",
                "model": "ray-2",
                "first_frame": {"url": "nope"},
            },
            422,
            "'first_frame.url'",
        ),
        (
            "/generations/video/modify",
            {
                "generation_type": "modify_video",
                "media": {"url": SOURCE_VIDEO},
                "mode": "flex_1",
                "model": "ray-2",
                "user_prompt": "x",
            },
            422,
            "'user_prompt' is not a field",
        ),
        (
            "/generations/video/reframe",
            {"generation_type": "reframe_video", "media": {"url": SOURCE_VIDEO}, "model": "ray-2"},
            422,
            "'aspect_ratio' is required",
        ),
        (
            "/generations/video/reframe",
            {
                "generation_type": "reframe_video",
                "media": {"url": SOURCE_VIDEO},
                "aspect_ratio": "2:1",
                "model": "ray-2",
            },
            422,
            "'aspect_ratio' must be one of",
        ),
        (
            "/generations/video/reframe",
            {
                "generation_type": "reframe_video",
                "media": {"url": SOURCE_VIDEO},
                "aspect_ratio": "1:1",
                "model": "photon-1",
            },
            422,
            "'model' must be one of ray-2, ray-flash-2",
        ),
        (
            "/generations/video/reframe",
            {
                "generation_type": "reframe_video",
                "media": {"url": SOURCE_VIDEO},
                "aspect_ratio": "1:1",
                "model": "ray-2",
                "resized_width": "960",
            },
            422,
            "'resized_width' must be an integer",
        ),
        (
            "/generations/video/reframe",
            {
                "generation_type": "reframe_video",
                "media": {"url": SOURCE_VIDEO},
                "aspect_ratio": "1:1",
                "model": "ray-2",
                "y_start": 50,
                "y_end": 10,
            },
            422,
            "'y_end' must be greater than 'y_start'",
        ),
        (
            "/generations/image/reframe",
            {
                "generation_type": "reframe_image",
                "media": {"url": SOURCE_IMAGE},
                "aspect_ratio": "1:1",
                "model": "ray-2",
            },
            422,
            "'model' must be one of photon-1, photon-flash-1",
        ),
        (
            "/generations/image/reframe",
            {
                "generation_type": "reframe_image",
                "media": {"url": SOURCE_IMAGE},
                "aspect_ratio": "1:1",
                "model": "photon-1",
                "format": "gif",
            },
            422,
            "'format' must be one of jpg, png",
        ),
        (
            "/generations/image/reframe",
            {
                "generation_type": "reframe_video",
                "media": {"url": SOURCE_IMAGE},
                "aspect_ratio": "1:1",
                "model": "photon-1",
            },
            422,
            "'generation_type' must be 'reframe_image'",
        ),
    ],
)
def test_modify_and_reframe_bodies_are_validated(client, official_sb, path, body, status, needle) -> None:
    # the SDK's types would stop most of these; a client that ignores them sends this JSON
    with pytest.raises(lumaai.APIStatusError) as info:
        client.post(path, body=body, cast_to=Generation)
    assert info.value.status_code == status
    assert needle in info.value.body["detail"]
    assert official_sb.submissions == 0
    assert client.credits.get().credit_balance == official_sb.stats()["config"]["starting_credits"]


def test_modify_and_reframe_with_the_sdks_own_bad_values(client) -> None:
    with pytest.raises(lumaai.UnprocessableEntityError) as info:
        client.generations.video.modify(
            generation_type="modify_video",
            media={"url": SOURCE_VIDEO},
            mode="flex_4",  # type: ignore[arg-type]
            model="ray-2",
        )
    assert "reimagine_3" in info.value.body["detail"]
    with pytest.raises(lumaai.UnprocessableEntityError) as info:
        client.generations.image.reframe(
            generation_type="reframe_image",
            media={"url": SOURCE_IMAGE},
            aspect_ratio="5:4",  # type: ignore[arg-type]
            model="photon-1",
        )
    assert "aspect_ratio" in info.value.body["detail"]


# --------------------------------------------------------------------------- errors


def test_bad_key_is_authentication_error(official_sb) -> None:
    with lumaai.LumaAI(auth_token="wrong", base_url=official_sb.api_base_url, max_retries=0) as bad:
        with pytest.raises(lumaai.AuthenticationError) as info:
            bad.generations.list()
    assert info.value.status_code == 401
    assert info.value.body == {"detail": "Invalid API key is provided"}


def test_missing_model_is_unprocessable(client, official_sb) -> None:
    with pytest.raises(lumaai.UnprocessableEntityError) as info:
        # the SDK types model as required; a client that forgets it sends this body
        client.post("/generations/video", body={"prompt": "x"}, cast_to=Generation)
    assert "model" in info.value.body["detail"]
    assert official_sb.submissions == 0


@pytest.mark.parametrize("field", ["user_prompt", "model_name", "expand_prompt"])
def test_gateway_fields_are_rejected(client, official_sb, field) -> None:
    with pytest.raises((lumaai.BadRequestError, lumaai.UnprocessableEntityError)) as info:
        client.generations.create(model="ray-2", prompt="x", extra_body={field: "ray-v2"})
    assert field in info.value.body["detail"]
    assert official_sb.submissions == 0


def test_bad_enum_values_are_rejected(client) -> None:
    with pytest.raises(lumaai.UnprocessableEntityError) as info:
        client.generations.create(model="ray-2", prompt="x", aspect_ratio="2:1")  # type: ignore[arg-type]
    assert "aspect_ratio" in info.value.body["detail"]
    with pytest.raises(lumaai.UnprocessableEntityError) as info:
        client.generations.create(model="ray-1-6", prompt="x")  # type: ignore[arg-type]
    assert "ray-2" in info.value.body["detail"]
    with pytest.raises(lumaai.BadRequestError) as info:
        client.generations.create(model="ray-2", prompt="x", concepts=[{"key": "moonwalk"}])
    assert "moonwalk" in info.value.body["detail"]


# --------------------------------------------------------------------------- callbacks


def wait_for_posts(receiver: Any, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(receiver.posts) < count:
        assert time.monotonic() < deadline, f"only {len(receiver.posts)} callback(s) arrived"
        time.sleep(0.02)
    return receiver.bodies()


def test_callbacks_on_dreaming_and_completed(
    client, official_sb, callback_receiver: Callable[..., Any]
) -> None:
    receiver = callback_receiver()
    created = client.generations.create(model="ray-2", prompt="with a hook", callback_url=receiver.url)
    assert created.request.callback_url == receiver.url
    bodies = wait_for_posts(receiver, 2)
    time.sleep(0.2)  # nothing more arrives: no queued call, one per state
    assert len(receiver.posts) == 2
    assert [b["state"] for b in bodies] == ["dreaming", "completed"]
    assert all(p["content_type"] == "application/json" and p["path"] == "/hook" for p in receiver.posts)
    for body in bodies:
        gen = Generation.model_validate(body)  # the body is the Generation JSON
        assert gen.id == created.id and gen.model == "ray-2" and gen.generation_type == "video"
        assert gen.request.prompt == "with a hook"
        assert_recent(gen.created_at)
    assert bodies[0]["assets"]["progress_video"].endswith("_progress.mp4")
    assert_mp4(bodies[1]["assets"]["video"], created.id)
    # the callback body agrees with what GET says
    assert client.generations.get(created.id).model_dump(mode="json") == Generation.model_validate(
        bodies[1]
    ).model_dump(mode="json")
    callbacks = official_sb.stats()["callbacks"]
    assert [(c["state"], c["attempt"], c["status"]) for c in callbacks] == [
        ("dreaming", 1, 200),
        ("completed", 1, 200),
    ]


def test_callback_on_failed(client, callback_receiver) -> None:
    receiver = callback_receiver()
    client.generations.image.create(model="photon-1", prompt="nope #fail", callback_url=receiver.url)
    bodies = wait_for_posts(receiver, 2)
    assert [b["state"] for b in bodies] == ["dreaming", "failed"]
    assert bodies[1]["failure_reason"] == "Advanced prompt moderation failed"
    assert bodies[1]["generation_type"] == "image"


def test_callback_receiver_answering_500_gets_one_try_and_three_retries(
    client, official_sb, callback_receiver
) -> None:
    receiver = callback_receiver(status=500)
    created = client.generations.create(model="ray-2", prompt="flaky receiver", callback_url=receiver.url)
    wait_for_posts(receiver, 8)  # dreaming x4, completed x4
    time.sleep(0.3)
    assert len(receiver.posts) == 8
    states = [p["body"]["state"] for p in receiver.posts]
    assert states == ["dreaming"] * 4 + ["completed"] * 4
    dreaming_times = [p["time"] for p in receiver.posts[:4]]
    gaps = [b - a for a, b in itertools.pairwise(dreaming_times)]
    assert all(gap >= 0.09 for gap in gaps), gaps  # 100 ms between tries
    stats = official_sb.stats()
    assert stats["callback_attempts"] == 8
    attempts = [(c["generation_id"], c["state"], c["attempt"], c["status"]) for c in stats["callbacks"]]
    assert attempts == [(created.id, "dreaming", n, 500) for n in (1, 2, 3, 4)] + [
        (created.id, "completed", n, 500) for n in (1, 2, 3, 4)
    ]


def test_unreachable_callback_is_recorded_as_an_error(client, official_sb) -> None:
    official_sb.configure(time_scale=0)
    client.generations.create(model="ray-2", prompt="nobody home", callback_url="http://127.0.0.1:9/hook")
    deadline = time.monotonic() + 5
    while official_sb.stats()["callback_attempts"] < 8:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    callbacks = official_sb.stats()["callbacks"]
    assert all(c["status"] is None and c["error"] for c in callbacks)
    assert [c["attempt"] for c in callbacks] == [1, 2, 3, 4] * 2
