"""Generation store and lazy, time-based state progression.

No background tasks: a generation's state is computed from its creation time each
time it is read, which keeps thousands of concurrent jobs free (no timers) and makes
the sandbox deterministic enough for tests that use small durations.

Prompt directives (case-insensitive, anywhere in ``user_prompt``):

* ``#fail`` / ``#fail:<reason>`` - end ``failed`` (default reason
  ``"Advanced prompt moderation failed"``; the custom reason runs to end of line or next ``#``);
* ``#slow`` - queue and processing take 5x longer;
* ``#unknown`` - report the raw state ``"mystery_state"`` while processing;
* ``#nourl`` - the first completed poll has ``video.download_url == ""``.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from luma_provider.sandbox import media
from luma_provider.sandbox.config import SandboxConfig

PENDING, PROCESSING, COMPLETED, FAILED = "pending", "processing", "completed", "failed"
DEFAULT_FAILURE = "Advanced prompt moderation failed"
UNKNOWN_PROCESSING_STATE = "mystery_state"

_OFFICIAL_STATES = {PENDING: "queued", PROCESSING: "dreaming"}
_NEWAPI_STATUS = {PENDING: "SUBMITTED", PROCESSING: "IN_PROGRESS", COMPLETED: "SUCCESS", FAILED: "FAILURE"}
_KLING_STATUS = {PENDING: "submitted", PROCESSING: "processing", COMPLETED: "succeed", FAILED: "failed"}
_FAIL_RE = re.compile(r"#fail(?::([^#\n]*))?", re.IGNORECASE)


@dataclass
class Generation:
    """One submitted job; everything else is derived from these fields on read."""

    id: str
    seq: int
    prompt: str
    request: dict[str, Any]
    created_wall: float
    created_mono: float
    queue_s: float
    process_s: float
    failure_reason: str | None = None
    unknown_state: bool = False
    no_url_once: bool = False
    completed_polls: int = 0
    extend_of: str | None = None
    #: Official flavour only (see :mod:`.official`): ``video`` | ``image``, the model, the
    #: callback URL, the base URL of media links (for callbacks, which have no request).
    kind: str = "video"
    model: str | None = None
    official: bool = False
    callback_url: str | None = None
    base_url: str = ""

    def phase(self, now: float | None = None) -> tuple[str, float]:
        """Current base state and the seconds left until the job is terminal."""
        elapsed = (time.monotonic() if now is None else now) - self.created_mono
        total = self.queue_s + self.process_s
        if elapsed < self.queue_s:
            return PENDING, total - elapsed
        if elapsed < total:
            return PROCESSING, total - elapsed
        return (FAILED if self.failure_reason else COMPLETED), 0.0

    @property
    def state(self) -> str:
        return self.phase()[0]


@dataclass
class GenerationStore:
    """In-memory generations, keyed by id; only touched from the server's event loop."""

    generations: dict[str, Generation] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def create(self, body: dict[str, Any], config: SandboxConfig, extend_of: str | None = None) -> Generation:
        prompt = str(body.get("user_prompt", ""))
        queue_s, process_s, failure_reason = directives(prompt, config)
        request = {
            "prompt": prompt,
            "aspect_ratio": body.get("aspect_ratio") or "16:9",
        }
        for key in (
            "model_name",
            "resolution",
            "duration",
            "loop",
            "expand_prompt",
            "image_url",
            "image_end_url",
        ):
            if body.get(key) is not None:
                request[key] = body[key]
        if extend_of:
            request["extend_of"] = extend_of
        gen = Generation(
            id=str(uuid.uuid4()),
            seq=next(self._seq),
            prompt=prompt,
            request=request,
            created_wall=time.time(),
            created_mono=time.monotonic(),
            queue_s=queue_s,
            process_s=process_s,
            failure_reason=failure_reason,
            unknown_state="#unknown" in prompt.lower(),
            no_url_once="#nourl" in prompt.lower(),
            extend_of=extend_of,
        )
        self.generations[gen.id] = gen
        return gen

    def get(self, gen_id: str) -> Generation | None:
        return self.generations.get(gen_id)

    def next_seq(self) -> int:
        return next(self._seq)

    def add(self, gen: Generation) -> Generation:
        self.generations[gen.id] = gen
        return gen

    def delete(self, gen_id: str) -> Generation | None:
        return self.generations.pop(gen_id, None)

    def clear(self) -> None:
        self.generations.clear()
        self._seq = itertools.count(1)

    def __len__(self) -> int:
        return len(self.generations)


def directives(prompt: str, config: SandboxConfig) -> tuple[float, float, str | None]:
    """Queue and processing seconds and the failure reason a prompt's directives ask for."""
    slow = 5.0 if "#slow" in prompt.lower() else 1.0
    scale = config.time_scale * slow
    fail = _FAIL_RE.search(prompt)
    reason = ((fail.group(1) or "").strip() or DEFAULT_FAILURE) if fail else None
    return config.queue_seconds * scale, config.process_seconds * scale, reason


def iso(ts: float, *, micro: bool = True) -> str:
    """``2024-12-22T13:38:40.139409Z``: the gateway's ISO format."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def media_urls(base: str, gen_id: str) -> dict[str, str]:
    return {
        "video": f"{base}/media/{gen_id}.mp4",
        "download": f"{base}/media/{gen_id}.mp4?raw=1",
        "thumbnail": f"{base}/media/{gen_id}.jpg",
        "last_frame": f"{base}/media/{gen_id}_last_frame.jpg",
    }


def render_native(
    gen: Generation, config: SandboxConfig, base: str, *, fresh: bool = False
) -> dict[str, Any]:
    """The Luma-native object (gateway or official state vocabulary).

    ``fresh`` renders the submit/extend response, which real gateways send with an
    empty ``prompt`` and without ``request``.
    """
    state, remaining = gen.phase()
    if fresh:  # the submit answer is always "pending", even with time_scale=0
        state, remaining = PENDING, gen.queue_s + gen.process_s
    raw_state = state
    if state == PROCESSING and gen.unknown_state:
        raw_state = UNKNOWN_PROCESSING_STATE
    elif config.states == "official":
        raw_state = _OFFICIAL_STATES.get(state, state)
    obj: dict[str, Any] = {
        "id": gen.id,
        "prompt": "" if fresh or state == PENDING else gen.prompt,
        "state": raw_state,
        "queue_state": None,
        "created_at": iso(gen.created_wall),
        "batch_id": "",
        "video": None,
        "video_raw": None,
        "liked": None,
        "estimate_wait_seconds": None if state in (COMPLETED, FAILED) else round(remaining, 1),
        "thumbnail": None,
        "last_frame": None,
    }
    if not fresh and state != PENDING:
        obj["request"] = dict(gen.request)
    if state == FAILED:
        obj["failure_reason"] = gen.failure_reason
    if state == COMPLETED:
        gen.completed_polls += 1
        _fill_completed(obj, gen, base, hide_download=gen.no_url_once and gen.completed_polls == 1)
    if config.states == "official":
        obj["failure_reason"] = gen.failure_reason if state == FAILED else None
        obj["assets"] = (
            {"video": obj["video"]["url"], "image": obj["thumbnail"]["url"]} if state == COMPLETED else None
        )
    return obj


def _fill_completed(obj: dict[str, Any], gen: Generation, base: str, *, hide_download: bool) -> None:
    # The served clip's real size and length (whatever the aspect ratio asked for), so
    # clients that trust these numbers agree with the file they download.
    clip = media.video_info(gen.id)
    width, height = clip.width, clip.height
    urls = media_urls(base, gen.id)
    video = {"url": urls["video"], "width": width, "height": height, "download_url": urls["download"]}
    if hide_download:  # reference §A.9: "sometimes completed but no link" on the first poll
        video["download_url"] = ""
    video_raw = {
        "url": urls["download"],
        "width": width,
        "height": height,
        "duration": clip.duration,
        "media_type": "video",
    }
    thumbnail = {
        "url": urls["thumbnail"],
        "width": width,
        "height": height,
        "palette": None,
        "media_type": "image",
    }
    last_frame = {
        "url": urls["last_frame"],
        "width": width,
        "height": height,
        "palette": None,
        "media_type": "image",
    }
    obj.update(video=video, video_raw=video_raw, thumbnail=thumbnail, last_frame=last_frame)
    obj["artifact"] = {
        "video": dict(video),
        "thumbnail": dict(thumbnail),
        "video_raw": dict(video_raw),
        "last_frame": dict(last_frame),
        "created_at": "0001-01-01T00:00:00Z",  # Go zero time, as the real gateway sends
    }


def render_kling(gen: Generation, *, fresh: bool = False) -> dict[str, Any]:
    """Kling's envelope (reference §A.10): ids and status only, no video URLs."""
    state = PENDING if fresh else gen.phase()[0]
    created_ms = int(gen.created_wall * 1000)
    data: dict[str, Any] = {
        "task_id": gen.id,
        "task_status": _KLING_STATUS[state],
        "created_at": created_ms,
        "updated_at": int(_last_transition(gen, state) * 1000),
    }
    if state == FAILED:
        data["task_status_msg"] = gen.failure_reason  # Kling's name for the failure reason
    return {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()), "data": data}


def render_newapi_task(gen: Generation, config: SandboxConfig, base: str) -> dict[str, Any]:
    """One entry of the new-api task wrapper used by ``POST /luma/tasks`` (§A.6 flavour 2)."""
    state, remaining = gen.phase()
    total = gen.queue_s + gen.process_s
    start = gen.created_wall + gen.queue_s
    finish = gen.created_wall + total
    if state == PENDING:
        progress = "0%"
    elif state == PROCESSING:
        done = 1.0 - remaining / gen.process_s if gen.process_s else 1.0
        progress = f"{min(99, max(1, int(done * 100)))}%"
    else:
        progress = "100%"
    return {
        "id": gen.seq,
        "created_at": iso(gen.created_wall),
        "updated_at": iso(_last_transition(gen, state)),
        "task_id": gen.id,
        "platform": "luma",
        "action": "LUMA_VIDEO",
        "status": _NEWAPI_STATUS[state],
        "fail_reason": gen.failure_reason if state == FAILED else "",
        "submit_time": int(gen.created_wall),
        "start_time": int(start) if state != PENDING else 0,
        "finish_time": int(finish) if state in (COMPLETED, FAILED) else 0,
        "progress": progress,
        "data": render_native(gen, config, base),
    }


def _last_transition(gen: Generation, state: str) -> float:
    if state == PENDING:
        return gen.created_wall
    if state == PROCESSING:
        return gen.created_wall + gen.queue_s
    return gen.created_wall + gen.queue_s + gen.process_s
