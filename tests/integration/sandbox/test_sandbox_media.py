"""The size and duration the sandbox reports are those of the file it serves (issue case 19)."""

from __future__ import annotations

import struct

import requests

from luma_provider.sandbox import media


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from the JPEG's start-of-frame segment."""
    offset = 2
    while offset < len(data):
        marker, length = data[offset + 1], struct.unpack_from(">H", data, offset + 2)[0]
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack_from(">HH", data, offset + 5)
            return width, height
        offset += 2 + length
    raise AssertionError("no SOF segment")


def test_completed_generation_reports_the_served_clips_size_and_duration(instant, api, submit) -> None:
    ids: dict[int, str] = {}
    while len(ids) < media.CLIP_COUNT:  # one generation per clip: ~8 submissions on average
        gen_id = submit(instant, aspect_ratio="9:16")
        ids.setdefault(media.clip_index(gen_id), gen_id)
    batch = {g["id"]: g for g in api(instant, "POST", "/luma/tasks", json={"ids": list(ids.values())}).json()}
    for gen_id in ids.values():
        body = api(instant, "GET", f"/luma/generations/{gen_id}").json()
        assert body["state"] == "completed"
        served = requests.get(body["video"]["url"], timeout=5).content
        clip = media.parse_mp4_info(served)
        for source in (body, batch[gen_id]):
            for key in ("video", "video_raw"):
                assert (source[key]["width"], source[key]["height"]) == (clip.width, clip.height)
            assert source["video_raw"]["duration"] == clip.duration
            assert source["artifact"]["video_raw"]["duration"] == clip.duration
        for key in ("thumbnail", "last_frame"):
            image = requests.get(body[key]["url"], timeout=5).content
            assert (body[key]["width"], body[key]["height"]) == jpeg_size(image)
    # what the shipped ffmpeg clips really are
    assert {media.clip_info(i) for i in range(media.CLIP_COUNT)} == {media.ClipInfo(320, 180, 3.0)}
