"""The sandbox's MP4 parser on hand-built boxes (the served files are checked in
tests/integration/sandbox/test_sandbox_media.py)."""

from __future__ import annotations

import struct

import pytest

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


def test_parser_reads_mvhd_and_the_first_sized_tkhd() -> None:
    audio, video = box(b"trak", tkhd_v0(0, 0)), box(b"trak", tkhd_v0(640.5, 360))
    data = (
        box(b"ftyp", b"isom\0\0\2\0")
        + box(b"moov", mvhd_v1(600, 1501) + audio + video)
        + box(b"mdat", b"\0" * 32, large=True)
    )
    assert media.parse_mp4_info(data) == media.ClipInfo(width=640, height=360, duration=2.501667)


@pytest.mark.parametrize("data", [b"", box(b"ftyp", b"isom"), box(b"moov", mvhd_v1(600, 60))[:-4]])
def test_parser_rejects_what_is_not_a_sized_mp4(data: bytes) -> None:
    with pytest.raises(ValueError):
        media.parse_mp4_info(data)
