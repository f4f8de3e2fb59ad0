"""Sample media served by the fake CDN.

The ``media/`` folder holds a few tiny real H.264 MP4 clips (320x180, 3 s, made with
ffmpeg's lavfi test sources) and matching JPEG thumbnails / last frames. A clip is
picked by a stable hash of the generation id, so a gallery of several generations
does not show the same video everywhere. Image generations that ask for ``png`` get a real
PNG (:func:`png_bytes`), drawn here rather than shipped.

The width, height and duration the gateway reports are read from the clip's own MP4
headers (:func:`clip_info`), so they stay true if the clips are ever replaced.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

CLIP_COUNT = 4
BLOB_CHUNK = 256 * 1024
MAX_BLOB_SIZE = 4 * 1024**3


def clip_index(gen_id: str) -> int:
    """Stable (process-independent, unlike ``hash()``) clip choice for an id."""
    return hashlib.sha1(gen_id.encode()).digest()[0] % CLIP_COUNT


@cache
def _read(name: str) -> bytes:
    # Files are small (< 50 KB each), so keeping them in memory is cheaper than disk reads.
    return resources.files(__package__).joinpath("media", name).read_bytes()


def video_bytes(gen_id: str) -> bytes:
    return _read(f"sample_{clip_index(gen_id)}.mp4")


@dataclass(frozen=True)
class ClipInfo:
    width: int
    height: int
    duration: float  # seconds


def video_info(gen_id: str) -> ClipInfo:
    """Size and duration of the clip served for ``gen_id``."""
    return clip_info(clip_index(gen_id))


@cache
def clip_info(index: int) -> ClipInfo:
    return parse_mp4_info(_read(f"sample_{index}.mp4"))


_CONTAINERS = {b"moov", b"trak"}


def parse_mp4_info(data: bytes) -> ClipInfo:
    """Duration from ``moov/mvhd``, size from the first ``moov/trak/tkhd`` with a non-zero one.

    Only what the sandbox's own clips need: ISO BMFF boxes, mvhd/tkhd versions 0 and 1.
    """
    duration: float | None = None
    size: tuple[int, int] | None = None
    for box, start, end in _walk(data, 0, len(data)):
        if box == b"mvhd":
            # after version+flags and the creation/modification times: timescale, duration
            if data[start] == 1:
                timescale, units = struct.unpack_from(">IQ", data, start + 20)
            else:
                timescale, units = struct.unpack_from(">II", data, start + 12)
            duration = round(units / timescale, 6)
        elif box == b"tkhd" and size is None:
            # width and height close the box, fixed-point 16.16
            width, height = struct.unpack_from(">II", data, end - 8)
            if width and height:  # audio tracks are 0x0
                size = (width >> 16, height >> 16)
    if duration is None or size is None:
        raise ValueError("not an MP4 with an mvhd box and a sized tkhd box")
    return ClipInfo(width=size[0], height=size[1], duration=duration)


def _walk(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """``(type, payload start, payload end)`` of the boxes in ``data[start:end]``, moov/trak opened."""
    offset = start
    while offset + 8 <= end:
        size, box = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:  # 64-bit size follows the type
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:  # runs to the end of its parent
            size = end - offset
        if size < header or offset + size > end:
            raise ValueError(f"malformed MP4 box {box!r} at offset {offset}")
        if box in _CONTAINERS:
            yield from _walk(data, offset + header, offset + size)
        else:
            yield box, offset + header, offset + size
        offset += size


def thumbnail_bytes(gen_id: str) -> bytes:
    return _read(f"thumb_{clip_index(gen_id)}.jpg")


def last_frame_bytes(gen_id: str) -> bytes:
    return _read(f"last_{clip_index(gen_id)}.jpg")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Size of the PNG images served, the clips' own 320x180.
PNG_SIZE = (320, 180)


def png_bytes(gen_id: str) -> bytes:
    """A real PNG (8-bit RGB, 320x180) for an image generation that asked for ``format: png``."""
    return _png(clip_index(gen_id))


@cache
def _png(index: int) -> bytes:
    # A gradient tinted per clip index: different images for different ids, all valid PNGs.
    width, height = PNG_SIZE
    red = bytes(x * 255 // (width - 1) for x in range(width))
    rows = bytearray()
    for y in range(height):
        green, blue = y * 255 // (height - 1), (index * 64 + 32) % 256
        rows.append(0)  # filter type 0 (None) for every scanline
        for r in red:
            rows += bytes((r, green, blue))
    return encode_png(width, height, bytes(rows))


def encode_png(width: int, height: int, scanlines: bytes) -> bytes:
    """PNG file bytes for 8-bit RGB ``scanlines`` (each row: a filter byte, then ``width`` pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # depth 8, colour type 2 (RGB)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines, 9))
        + chunk(b"IEND", b"")
    )


@lru_cache(maxsize=1)
def blob_chunk() -> bytes:
    """A reusable chunk of non-trivial bytes, so blobs stream without building them in memory."""
    seed = hashlib.sha256(b"luma-sandbox").digest()
    return (seed * (BLOB_CHUNK // len(seed) + 1))[:BLOB_CHUNK]
