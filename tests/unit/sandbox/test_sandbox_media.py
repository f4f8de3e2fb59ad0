"""The size and duration the sandbox reports are those of the file it serves (issue case 19)."""

from __future__ import annotations

import struct

import pytest
import requests

from luma_provider.sandbox import media


def box(kind: bytes, payload: bytes, *, large: bool = False) -> bytes:
    if large:  # size 1 = a 64-bit size follows the type
        return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mvhd_v1(timescale: int, units: int) -> bytes:
    return box(b"mvhd", b"\x01\0\0\0" + struct.pack(">QQIQ", 0, 0, timescale, units) + bytes(80))


def tkhd_v0(width: float, height: float) -> bytes:
    # version/flags, times, track id, reserved, duration, reserved, layer..volume, matrix, then 16.16 size
    fixed = struct.pack(">II", int(width * 65536), int(height * 65536))
    return box(b"tkhd", b"\0\0\0\x03" + bytes(4 * 5 + 8 + 8 + 36) + fixed)


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


def test_parser_reads_mvhd_and_the_first_sized_tkhd() -> None:
    audio, video = box(b"trak", tkhd_v0(0, 0)), box(b"trak", tkhd_v0(640.5, 360))
    data = (box(b"ftyp", b"isom\0\0\2\0") + box(b"moov", mvhd_v1(600, 1501) + audio + video)
            + box(b"mdat", b"\0" * 32, large=True))
    assert media.parse_mp4_info(data) == media.ClipInfo(width=640, height=360, duration=2.501667)


@pytest.mark.parametrize("data", [b"", box(b"ftyp", b"isom"), box(b"moov", mvhd_v1(600, 60))[:-4]])
def test_parser_rejects_what_is_not_a_sized_mp4(data: bytes) -> None:
    with pytest.raises(ValueError):
        media.parse_mp4_info(data)


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
