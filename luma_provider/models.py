"""The normalized Luma generation and the parsing of every response shape gateways send.

Pure functions, no I/O: the hook's sync and async transports both call ``parse_generations``,
so there is exactly one place that knows the shapes:

* the Luma-native object, or a one-element array of it (``POST/GET /luma/generations``);
* the Kling-style wrapper ``{code, message, request_id, data{task_id, task_status}}``;
* ``POST /luma/tasks``: a plain array, or the new-api wrapper
  ``{code: "success", data: [{task_id, status, fail_reason, data: {...native...}}]}``;
* the official Dream Machine ``Generation`` (``queued``/``dreaming``, ``assets.video``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

#: Every generation id, going in or coming back: it names files, so no '/', '\\', '..' or NUL.
GENERATION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
#: Largest plausible media dimension / duration / timestamp; beyond is hostile or broken.
_MAX_NUMBER = 1e12
MAX_TEXT = 4000
MAX_URL = 8192


def is_generation_id(value: Any) -> bool:
    """True for a string that is safe as a generation id, a URL path part and a file name."""
    return isinstance(value, str) and GENERATION_ID_RE.match(value) is not None and ".." not in value


class LumaState(StrEnum):
    """Normalized generation state; ``UNKNOWN`` means "not recognised, keep waiting"."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in (LumaState.COMPLETED, LumaState.FAILED)


# Every state word seen in gateway, official, new-api and Kling replies.
_STATE_WORDS: dict[str, LumaState] = {
    "pending": LumaState.QUEUED,
    "queued": LumaState.QUEUED,
    "not_start": LumaState.QUEUED,
    "submitted": LumaState.QUEUED,
    "processing": LumaState.RUNNING,
    "dreaming": LumaState.RUNNING,
    "in_progress": LumaState.RUNNING,
    "completed": LumaState.COMPLETED,
    "success": LumaState.COMPLETED,
    "succeed": LumaState.COMPLETED,
    "failed": LumaState.FAILED,
    "failure": LumaState.FAILED,
}

# When a new-api task row and its embedded native object disagree, the more advanced wins;
# a failure anywhere wins outright (the gateway may fail a task whose snapshot is stale).
_PROGRESS = {LumaState.UNKNOWN: 0, LumaState.QUEUED: 1, LumaState.RUNNING: 2, LumaState.COMPLETED: 3}


def normalize_state(raw: Any) -> LumaState:
    """Map any raw state string to a ``LumaState`` (``UNKNOWN`` when unrecognised)."""
    if not isinstance(raw, str):
        return LumaState.UNKNOWN
    return _STATE_WORDS.get(raw.strip().lower(), LumaState.UNKNOWN)


@dataclasses.dataclass(frozen=True)
class LumaGeneration:
    """One video generation, the same whatever shape or API flavour it came from.

    Instances are JSON-serializable through ``to_dict`` / ``from_dict`` (fit for XCom).
    """

    id: str
    state: LumaState
    raw_state: str | None = None
    video_url: str | None = None
    #: Inline-playable URL (``video.url``); ``video_url`` prefers the download URL.
    playable_url: str | None = None
    thumbnail_url: str | None = None
    last_frame_url: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    failure_reason: str | None = None
    prompt: str | None = None
    created_at: str | None = None
    estimate_wait_seconds: float | None = None
    #: ``video`` or ``image`` (official API); None where a gateway does not say.
    generation_type: str | None = None
    model: str | None = None
    #: An image generation's result (official ``assets.image`` of a ``generation_type: image``).
    image_url: str | None = None
    #: The in-progress preview while dreaming (official ``assets.progress_video``).
    progress_video_url: str | None = None
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def is_image(self) -> bool:
        """An image generation: complete with ``image_url`` and without a video."""
        return self.generation_type == "image"

    @property
    def result_url(self) -> str | None:
        """What a completed generation produced: the image, or the video."""
        return self.image_url if self.is_image else self.video_url

    def to_dict(self) -> dict[str, Any]:
        """The normalized fields only: the raw reply can be huge and never goes to XCom."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "raw"}
        data["state"] = self.state.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LumaGeneration:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if not is_generation_id(values.get("id")):
            raise LumaResponseShapeError(f"not a generation id: {_show(values.get('id'))}")
        try:
            values["state"] = LumaState(values.get("state", LumaState.UNKNOWN))
        except ValueError:
            values["state"] = LumaState.UNKNOWN
        return cls(**values)


class LumaResponseShapeError(ValueError):
    """A 2xx body that matches none of the known shapes."""


def parse_generation(payload: Any) -> LumaGeneration:
    """Parse a submit / extend / get response into one generation."""
    generations = parse_generations(payload)
    if len(generations) != 1:
        raise LumaResponseShapeError(f"expected one generation, got {len(generations)}")
    return generations[0]


def parse_generations(payload: Any) -> list[LumaGeneration]:
    """Parse any known response shape into a list of generations."""
    if isinstance(payload, list):
        return [_parse_item(item) for item in payload]
    if not isinstance(payload, dict):
        raise LumaResponseShapeError(f"expected a JSON object or array, got {type(payload).__name__}")
    data = payload.get("data")
    if isinstance(data, list) and "code" in payload:  # new-api task wrapper
        return [_parse_item(item) for item in data]
    if isinstance(data, dict) and "task_id" in data:  # Kling-style wrapper
        return [_parse_kling(payload, data)]
    return [_parse_item(payload)]


def _parse_item(item: Any) -> LumaGeneration:
    if not isinstance(item, dict):
        raise LumaResponseShapeError(f"expected a generation object, got {type(item).__name__}")
    if "task_id" in item and ("status" in item or isinstance(item.get("data"), dict)):
        return _parse_task_row(item)
    return _parse_native(item)


def _parse_native(obj: dict[str, Any]) -> LumaGeneration:
    gen_id = obj.get("id")
    _require_id(gen_id, "generation object")
    raw_state = obj.get("state")
    video = _dict(obj.get("video"))
    video_raw = _dict(obj.get("video_raw"))
    artifact = _dict(obj.get("artifact"))
    art_video = _dict(artifact.get("video"))
    art_raw = _dict(artifact.get("video_raw"))
    assets = _dict(obj.get("assets"))
    request = _dict(obj.get("request"))
    sized = next((d for d in (video, video_raw, art_video, art_raw) if d.get("width")), {})
    generation_type = _text(obj.get("generation_type"))
    is_image = generation_type == "image"
    return LumaGeneration(
        id=str(gen_id),
        state=normalize_state(raw_state),
        raw_state=raw_state if isinstance(raw_state, str) else None,
        playable_url=_first_url(video.get("url"), assets.get("video"), art_video.get("url")),
        video_url=_first_url(
            video.get("download_url"),
            video.get("url"),
            video_raw.get("url"),
            art_video.get("url"),
            assets.get("video"),
        ),
        thumbnail_url=_first_url(
            _dict(obj.get("thumbnail")).get("url"),
            video.get("thumbnail"),
            _dict(artifact.get("thumbnail")).get("url"),
            None if is_image else assets.get("image"),
        ),
        last_frame_url=_first_url(
            _dict(obj.get("last_frame")).get("url"),
            _dict(artifact.get("last_frame")).get("url"),
        ),
        width=_int(sized.get("width")),
        height=_int(sized.get("height")),
        duration=_duration(
            video_raw.get("duration"), art_raw.get("duration"), video.get("duration"), request.get("duration")
        ),
        failure_reason=_text(obj.get("failure_reason")) or _text(obj.get("fail_reason")),
        prompt=_text(obj.get("prompt")) or _text(request.get("prompt")) or _text(obj.get("user_prompt")),
        created_at=_timestamp(obj.get("created_at")),
        estimate_wait_seconds=_float(obj.get("estimate_wait_seconds")),
        generation_type=generation_type[:40] if generation_type else None,
        model=(_text(obj.get("model")) or "")[:80] or None,
        image_url=_first_url(assets.get("image")) if is_image else None,
        progress_video_url=_first_url(assets.get("progress_video")),
        raw=obj,
    )


def _parse_task_row(row: dict[str, Any]) -> LumaGeneration:
    """A new-api task row: ``{task_id, status, fail_reason, data: {native}}``."""
    _require_id(row.get("task_id"), "task row")
    inner = _dict(row.get("data"))
    base = (
        _parse_native({"id": row["task_id"], **inner})
        if inner
        else LumaGeneration(id=str(row["task_id"]), state=LumaState.UNKNOWN)
    )
    row_state = normalize_state(row.get("status"))
    if LumaState.FAILED in (row_state, base.state):
        state = LumaState.FAILED
    else:
        state = max(base.state, row_state, key=_PROGRESS.__getitem__)
    raw_state = base.raw_state if state == base.state else row.get("status")
    return dataclasses.replace(
        base,
        id=str(row["task_id"]),
        state=state,
        raw_state=raw_state,
        failure_reason=base.failure_reason or _text(row.get("fail_reason")),
        created_at=base.created_at or _timestamp(row.get("submit_time") or row.get("created_at")),
        raw=row,
    )


def _parse_kling(payload: dict[str, Any], data: dict[str, Any]) -> LumaGeneration:
    _require_id(data.get("task_id"), "wrapper data")
    raw_state = data.get("task_status")
    return LumaGeneration(
        id=str(data["task_id"]),
        state=normalize_state(raw_state),
        raw_state=raw_state if isinstance(raw_state, str) else None,
        failure_reason=_text(data.get("task_status_msg")) or _text(data.get("fail_reason")),
        created_at=_timestamp(data.get("created_at")),
        raw=payload,
    )


def _require_id(value: Any, where: str) -> None:
    # Ids that come back are checked like ids that go in: they become file names and URL paths.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**40:
        value = str(value)
    if not is_generation_id(value):
        raise LumaResponseShapeError(f"{where} has no usable id: {_show(value)}")


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= limit else f"{text[:limit]}..."


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    # Bounded: these fields reach XCom, logs and manifests.
    if not isinstance(value, str) or not value.strip():
        return None
    return value if len(value) <= MAX_TEXT else f"{value[: MAX_TEXT - 1]}…"


def _first_url(*candidates: Any) -> str | None:
    # download_url is sometimes "" on the first completed poll, so skip empties.
    return next((c for c in candidates if isinstance(c, str) and c.strip() and len(c) <= MAX_URL), None)


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _float(value: Any) -> float | None:
    """A finite, plausible number or None: NaN, Infinity, 1e300 and 400-digit ints are dropped."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, str) and len(value) > 40:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and abs(number) <= _MAX_NUMBER * 1000 else None


def _duration(*candidates: Any) -> float | None:
    for value in candidates:
        if isinstance(value, str):  # official requests say "5s"
            value = value.strip().rstrip("s")
        number = _float(value)
        if number is not None:
            return number
    return None


def _timestamp(value: Any) -> str | None:
    """ISO strings pass through; Unix seconds or milliseconds (task wrappers) become ISO."""
    if isinstance(value, str):
        return value[:64] or None
    number = _float(value)
    if not number or number < 0:
        return None
    if number > 1e11:  # milliseconds (Kling-style wrapper)
        number /= 1000
    try:
        return dt.datetime.fromtimestamp(number, tz=dt.UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):  # beyond year 9999
        return None
