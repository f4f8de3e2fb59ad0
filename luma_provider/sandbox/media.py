"""Sample media served by the fake CDN.

The ``media/`` folder holds a few tiny real H.264 MP4 clips (320x180, 3 s, made with
ffmpeg's lavfi test sources) and matching JPEG thumbnails / last frames. A clip is
picked by a stable hash of the generation id, so a gallery of several generations
does not show the same video everywhere.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources

CLIP_COUNT = 4
BLOB_CHUNK = 256 * 1024
MAX_BLOB_SIZE = 4 * 1024**3


def clip_index(gen_id: str) -> int:
    """Stable (process-independent, unlike ``hash()``) clip choice for an id."""
    return hashlib.sha1(gen_id.encode()).digest()[0] % CLIP_COUNT


@lru_cache(maxsize=None)
def _read(name: str) -> bytes:
    # Files are small (< 50 KB each), so keeping them in memory is cheaper than disk reads.
    return resources.files(__package__).joinpath("media", name).read_bytes()


def video_bytes(gen_id: str) -> bytes:
    return _read(f"sample_{clip_index(gen_id)}.mp4")


def thumbnail_bytes(gen_id: str) -> bytes:
    return _read(f"thumb_{clip_index(gen_id)}.jpg")


def last_frame_bytes(gen_id: str) -> bytes:
    return _read(f"last_{clip_index(gen_id)}.jpg")


@lru_cache(maxsize=1)
def blob_chunk() -> bytes:
    """A reusable chunk of non-trivial bytes, so blobs stream without building them in memory."""
    seed = hashlib.sha256(b"luma-sandbox").digest()
    return (seed * (BLOB_CHUNK // len(seed) + 1))[:BLOB_CHUNK]
