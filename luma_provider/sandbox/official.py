"""Luma's official Dream Machine API, as the ``lumaai`` 1.21.0 SDK defines it (``api_flavour="official"``).

All routes live under ``/dream-machine/v1`` and need ``Authorization: Bearer <api_key>``:

* ``GET /ping`` -> ``{"message": "pong"}``;
* ``GET /credits`` -> ``{"credit_balance": <USD cents>}``, lowered by every create (see :data:`COSTS`);
* ``POST /generations/video`` (and the older ``POST /generations``) -> 201 ``Generation``;
* ``POST /generations/image`` -> 201 ``Generation`` (photon models, result in ``assets.image``;
  ``sync: true`` answers once the image is done, at most ``sync_timeout`` seconds later);
* ``POST /generations/{id}/upscale`` and ``POST /generations/{id}/audio`` -> 201, a new video
  generation made from a completed video;
* ``POST /generations/video/modify``, ``POST /generations/video/reframe`` -> 201, a new video
  generation made from ``media.url``; ``POST /generations/image/reframe`` -> 201, a new image
  (these bodies *require* ``generation_type``: ``modify_video``, ``reframe_video``, ``reframe_image``);
* ``GET /generations/{id}``; ``DELETE /generations/{id}`` -> 204 without a body (the id then 404s);
* ``GET /generations?limit=&offset=`` -> ``{generations, count, has_more, limit, offset}``, newest first;
* ``GET /generations/concepts/list`` -> the concept keys (:data:`CONCEPTS`).

A ``Generation`` is ``queued`` for ``queue_seconds``, ``dreaming`` for ``process_seconds`` (both
times ``time_scale``; ``#slow`` and ``#fail`` work as in the gateway flavour), then ``completed``
or ``failed``. While dreaming, a video has ``assets.progress_video``; when completed
``assets.video`` (an MP4 of the fake CDN) and ``assets.image`` (its thumbnail), an image just
``assets.image`` (a JPEG, or a PNG with a ``.png`` URL when the body asked for ``format: png``).
``request`` echoes the create body in the official field names.

Bodies are validated like the real API: wrong shapes, types and enum values are 422, references
that do not work (an unknown generation or concept, a source that is not a completed video) are
400, unknown ids 404 - always ``{"detail": "<message naming the field>"}``. Fields of the gateway
dialect (``user_prompt``, ``model_name``, ``expand_prompt``, ``image_url``, ``image_end_url``)
are rejected with 422 so a client that mixes the dialects up finds out at once; other unknown
fields are ignored, as pydantic does by default.

``callback_url``: the Generation JSON is POSTed to it when the generation is dreaming and when it
is completed or failed (no ``queued`` call). A delivery that does not get a 200 is retried 3
times, 100 ms apart, each try with a 5 s timeout (Luma's changelog "Callbacks & Credits
Balance"). Every attempt is recorded in ``stats()["callbacks"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from luma_provider.sandbox.breakage import json_response
from luma_provider.sandbox.state import (
    COMPLETED,
    FAILED,
    PENDING,
    PROCESSING,
    Generation,
    GenerationStore,
    directives,
    iso,
)

if TYPE_CHECKING:
    from luma_provider.sandbox.config import SandboxConfig
    from luma_provider.sandbox.server import SandboxState

VIDEO_MODELS = ("ray-2", "ray-flash-2")
IMAGE_MODELS = ("photon-1", "photon-flash-1")
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21")
RESOLUTIONS = ("540p", "720p", "1080p", "4k")
DURATIONS = ("5s", "9s")
IMAGE_FORMATS = ("jpg", "png")
MODIFY_MODES = tuple(f"{kind}_{level}" for kind in ("adhere", "flex", "reimagine") for level in (1, 2, 3))
#: The optional integer fields of a reframe body.
REFRAME_GEOMETRY = (
    "grid_position_x",
    "grid_position_y",
    "resized_width",
    "resized_height",
    "x_start",
    "x_end",
    "y_start",
    "y_end",
)
#: Camera-motion concepts ``GET /generations/concepts/list`` offers.
CONCEPTS = (
    "aerial",
    "aerial_drone",
    "bolt_cam",
    "crane_down",
    "crane_up",
    "dolly_zoom",
    "elevator_doors",
    "handheld",
    "orbit_left",
    "orbit_right",
    "pan_left",
    "pan_right",
    "pedestal_down",
    "pedestal_up",
    "pull_out",
    "push_in",
    "static",
    "tilt_down",
    "tilt_up",
    "truck_left",
    "truck_right",
    "zoom_in",
    "zoom_out",
)
STATES = {PENDING: "queued", PROCESSING: "dreaming", COMPLETED: "completed", FAILED: "failed"}

INVALID_KEY = "Invalid API key is provided"
#: Fields of the gateway dialect, and what the official API calls them.
GATEWAY_ONLY_FIELDS = {
    "user_prompt": "use 'prompt'",
    "model_name": "use 'model' (ray-2, ray-flash-2)",
    "expand_prompt": "the official API does not expand prompts",
    "image_url": "use keyframes.frame0 = {'type': 'image', 'url': ...}",
    "image_end_url": "use keyframes.frame1 = {'type': 'image', 'url': ...}",
}

# --------------------------------------------------------------------------- costs
#: What a create costs, in USD cents (plausible figures in the spirit of Luma's API price list,
#: not a quote). A video costs ``VIDEO_5S_540P[model] * RESOLUTION_FACTOR * DURATION_FACTOR``
#: (the factors follow the pixel count and the length); an image ``IMAGE[model]``; an upscale
#: ``UPSCALE[resolution] * DURATION_FACTOR[source duration]``; adding audio ``AUDIO``; a modify
#: or reframe ``MODIFY_VIDEO`` / ``REFRAME_VIDEO`` / ``REFRAME_IMAGE`` of the model (the source is
#: a URL, so its length is unknown).
COSTS: dict[str, Any] = {
    "VIDEO_5S_540P": {"ray-2": 40.0, "ray-flash-2": 14.0},
    "RESOLUTION_FACTOR": {"540p": 1.0, "720p": 2.0, "1080p": 4.5, "4k": 18.0},
    "DURATION_FACTOR": {"5s": 1.0, "9s": 1.8},
    "IMAGE": {"photon-1": 1.5, "photon-flash-1": 0.4},
    "UPSCALE": {"540p": 5.0, "720p": 10.0, "1080p": 25.0, "4k": 90.0},
    "AUDIO": 10.0,
    "MODIFY_VIDEO": {"ray-2": 60.0, "ray-flash-2": 20.0},
    "REFRAME_VIDEO": {"ray-2": 50.0, "ray-flash-2": 18.0},
    "REFRAME_IMAGE": {"photon-1": 2.0, "photon-flash-1": 0.6},
}
DEFAULT_RESOLUTION = "720p"
DEFAULT_DURATION = "5s"

# --------------------------------------------------------------------------- callbacks
CALLBACK_RETRIES = 3
CALLBACK_RETRY_DELAY = 0.1
CALLBACK_TIMEOUT = 5.0


class OfficialError(Exception):
    """An error answer: ``{"detail": message}`` with ``status``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def response(self) -> web.Response:
        return detail_response(self.detail, self.status)


def detail_response(detail: str, status: int) -> web.Response:
    return json_response({"detail": detail}, status)


def error_body_for_status(status: int) -> dict[str, Any]:
    """The body of an injected ``status`` fault in the official flavour."""
    if status == 401:
        return {"detail": INVALID_KEY}
    if status == 404:
        return {"detail": "Not Found"}
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return {"detail": phrase}


# --------------------------------------------------------------------------- rendering


def image_format(gen: Generation) -> str:
    """The file format of an image generation's result: ``png`` when asked for, else ``jpg``."""
    return "png" if gen.kind == "image" and gen.request.get("format") == "png" else "jpg"


def render(gen: Generation, *, state: str | None = None) -> dict[str, Any]:
    """The official ``Generation`` object; ``state`` (a base state) overrides the clock."""
    base_state = state or gen.phase()[0]
    assets: dict[str, str] | None = None
    media = f"{gen.base_url}/media/{gen.id}"
    if base_state == PROCESSING and gen.kind == "video":
        assets = {"progress_video": f"{media}_progress.mp4"}
    elif base_state == COMPLETED and gen.kind == "video":
        assets = {"video": f"{media}.mp4", "image": f"{media}.jpg"}  # the image is the thumbnail
    elif base_state == COMPLETED:
        assets = {"image": f"{media}.{image_format(gen)}"}
    return {
        "id": gen.id,
        "generation_type": gen.kind,
        "state": STATES[base_state],
        "failure_reason": gen.failure_reason if base_state == FAILED else None,
        "created_at": iso(gen.created_wall),
        "assets": assets,
        "model": gen.model,
        "request": dict(gen.request),
    }


# --------------------------------------------------------------------------- validation


def _reject_gateway_fields(body: dict[str, Any]) -> None:
    for name, hint in GATEWAY_ONLY_FIELDS.items():
        if name in body:
            raise OfficialError(
                422, f"'{name}' is not a field of the Dream Machine API (a gateway-only field): {hint}"
            )


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise OfficialError(422, "body: the request body must be a JSON object")
    _reject_gateway_fields(body)
    return body


def _choice(
    body: dict[str, Any], name: str, allowed: tuple[str, ...], *, required: bool = False
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise OfficialError(422, f"'{name}' is required; one of {', '.join(allowed)}")
        return None
    if value not in allowed:
        raise OfficialError(422, f"'{name}' must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def _string(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise OfficialError(422, f"'{name}' is required and must be a non-empty string")
    return value


def _url(value: Any, name: str) -> str:
    if (
        not isinstance(value, str)
        or urlsplit(value).scheme not in ("http", "https")
        or not urlsplit(value).netloc
    ):
        raise OfficialError(422, f"'{name}' must be an http(s) URL; got {value!r}")
    return value


def _generation_type(body: dict[str, Any], expected: str) -> None:
    value = body.get("generation_type")
    if value is not None and value != expected:
        raise OfficialError(422, f"'generation_type' must be {expected!r} on this route; got {value!r}")


def _callback(body: dict[str, Any]) -> str | None:
    value = body.get("callback_url")
    return None if value is None else _url(value, "callback_url")


def source_video(store: GenerationStore, gen_id: str, what: str) -> Generation:
    """A generation another request builds on: it must exist, be a video and be completed."""
    source = store.get(gen_id)
    if source is None or not source.official:
        raise OfficialError(
            400 if what.startswith("keyframes") else 404, f"{what}: generation {gen_id} not found"
        )
    if source.kind != "video":
        raise OfficialError(400, f"{what}: generation {gen_id} is an image, not a video")
    state = source.phase()[0]
    if state != COMPLETED:
        raise OfficialError(
            400, f"{what}: generation {gen_id} is {STATES[state]}; only a completed generation can be used"
        )
    return source


def _keyframes(value: Any, store: GenerationStore) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise OfficialError(422, "'keyframes' must be an object with frame0 and/or frame1")
    unknown = sorted(set(value) - {"frame0", "frame1"})
    if unknown:
        raise OfficialError(422, f"'keyframes.{unknown[0]}' is not a keyframe; use frame0 and/or frame1")
    frames: dict[str, Any] = {}
    for name, frame in value.items():
        where = f"keyframes.{name}"
        if not isinstance(frame, dict):
            raise OfficialError(422, f"'{where}' must be an object with 'type' image or generation")
        kind = frame.get("type")
        if kind == "image":
            frames[name] = {"type": "image", "url": _url(frame.get("url"), f"{where}.url")}
        elif kind == "generation":
            gen_id = frame.get("id")
            if not isinstance(gen_id, str) or not gen_id:
                raise OfficialError(422, f"'{where}.id' is required for a generation keyframe")
            source_video(store, gen_id, where)
            frames[name] = {"type": "generation", "id": gen_id}
        else:
            raise OfficialError(422, f"'{where}.type' must be 'image' or 'generation'; got {kind!r}")
    return frames


def _concepts(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not all(
        isinstance(c, dict) and isinstance(c.get("key"), str) for c in value
    ):
        raise OfficialError(422, "'concepts' must be a list of {'key': <concept key>} objects")
    for concept in value:
        if concept["key"] not in CONCEPTS:
            raise OfficialError(
                400,
                f"'concepts': unknown concept key {concept['key']!r} (see GET /generations/concepts/list)",
            )
    return [{"key": c["key"]} for c in value]


def validate_video(body: Any, store: GenerationStore) -> dict[str, Any]:
    """The ``request`` echo of a valid video create body (raises :class:`OfficialError`)."""
    body = _object(body)
    _generation_type(body, "video")
    request: dict[str, Any] = {
        "generation_type": "video",
        "model": _choice(body, "model", VIDEO_MODELS, required=True),
        "prompt": _string(body, "prompt", required=True),
        "aspect_ratio": _choice(body, "aspect_ratio", ASPECT_RATIOS) or "16:9",
    }
    for name, allowed in (("resolution", RESOLUTIONS), ("duration", DURATIONS)):
        if body.get(name) is not None:
            request[name] = _choice(body, name, allowed)
    if body.get("loop") is not None:
        if not isinstance(body["loop"], bool):
            raise OfficialError(422, f"'loop' must be a boolean; got {body['loop']!r}")
        request["loop"] = body["loop"]
    if body.get("keyframes") is not None:
        request["keyframes"] = _keyframes(body["keyframes"], store)
    if body.get("concepts") is not None:
        request["concepts"] = _concepts(body["concepts"])
    callback = _callback(body)
    if callback:
        request["callback_url"] = callback
    return request


def _refs(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = body[name]
    if not isinstance(value, list) or not value:
        raise OfficialError(422, f"'{name}' must be a non-empty list of {{url, weight}} objects")
    return [_ref(item, f"{name}[{i}]") for i, item in enumerate(value)]


def _ref(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise OfficialError(422, f"'{where}' must be a {{url, weight}} object")
    ref: dict[str, Any] = {"url": _url(item.get("url"), f"{where}.url")}
    weight = item.get("weight")
    if weight is not None:
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
            raise OfficialError(422, f"'{where}.weight' must be a number between 0 and 1; got {weight!r}")
        ref["weight"] = weight
    return ref


def validate_image(body: Any) -> dict[str, Any]:
    """The ``request`` echo of a valid image create body."""
    body = _object(body)
    _generation_type(body, "image")
    request: dict[str, Any] = {
        "generation_type": "image",
        "model": _choice(body, "model", IMAGE_MODELS, required=True),
        "prompt": _string(body, "prompt", required=True),
        "aspect_ratio": _choice(body, "aspect_ratio", ASPECT_RATIOS) or "16:9",
    }
    if body.get("format") is not None:
        request["format"] = _choice(body, "format", IMAGE_FORMATS)
    for name in ("image_ref", "style_ref"):
        if body.get(name) is not None:
            request[name] = _refs(body, name)
    if body.get("modify_image_ref") is not None:
        request["modify_image_ref"] = _ref(body["modify_image_ref"], "modify_image_ref")
    if body.get("character_ref") is not None:
        character = body["character_ref"]
        images = character.get("identity0", {}).get("images") if isinstance(character, dict) else None
        if not isinstance(images, list) or not images:
            raise OfficialError(422, "'character_ref' must be {'identity0': {'images': [<url>, ...]}}")
        request["character_ref"] = {
            "identity0": {
                "images": [_url(u, f"character_ref.identity0.images[{i}]") for i, u in enumerate(images)]
            }
        }
    if body.get("sync") is not None:
        if not isinstance(body["sync"], bool):
            raise OfficialError(422, f"'sync' must be a boolean; got {body['sync']!r}")
        request["sync"] = body["sync"]
    if body.get("sync_timeout") is not None:
        timeout = body["sync_timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600:
            raise OfficialError(
                422, f"'sync_timeout' must be a number of seconds in (0, 600]; got {timeout!r}"
            )
        request["sync_timeout"] = timeout
    callback = _callback(body)
    if callback:
        request["callback_url"] = callback
    return request


def validate_upscale(body: Any) -> dict[str, Any]:
    body = _object(body if body is not None else {})
    _generation_type(body, "upscale_video")
    request: dict[str, Any] = {
        "generation_type": "upscale_video",
        "resolution": _choice(body, "resolution", RESOLUTIONS, required=True),
    }
    callback = _callback(body)
    if callback:
        request["callback_url"] = callback
    return request


def validate_audio(body: Any) -> dict[str, Any]:
    body = _object(body if body is not None else {})
    _generation_type(body, "add_audio")
    request: dict[str, Any] = {"generation_type": "add_audio"}
    for name in ("prompt", "negative_prompt"):
        value = _string(body, name)
        if value is not None:
            request[name] = value
    callback = _callback(body)
    if callback:
        request["callback_url"] = callback
    return request


def _required_type(body: dict[str, Any], expected: str) -> None:
    # Unlike the video/image creates, the modify and reframe bodies require generation_type.
    if body.get("generation_type") is None:
        raise OfficialError(422, f"'generation_type' is required; it must be {expected!r} on this route")
    _generation_type(body, expected)


def _media(body: dict[str, Any], name: str, *, required: bool = False) -> dict[str, str] | None:
    value = body.get(name)
    if value is None:
        if required:
            raise OfficialError(422, f"'{name}' is required: an object {{'url': <http(s) URL>}}")
        return None
    if not isinstance(value, dict) or "url" not in value:
        raise OfficialError(422, f"'{name}' must be an object {{'url': <http(s) URL>}}; got {value!r}")
    return {"url": _url(value["url"], f"{name}.url")}


def _optional_prompt(body: dict[str, Any], request: dict[str, Any]) -> None:
    if body.get("prompt") is not None:
        request["prompt"] = _string(body, "prompt", required=True)


def validate_modify(body: Any) -> dict[str, Any]:
    """The ``request`` echo of a valid ``POST /generations/video/modify`` body."""
    body = _object(body)
    _required_type(body, "modify_video")
    request: dict[str, Any] = {
        "generation_type": "modify_video",
        "media": _media(body, "media", required=True),
        "mode": _choice(body, "mode", MODIFY_MODES, required=True),
        "model": _choice(body, "model", VIDEO_MODELS, required=True),
    }
    first_frame = _media(body, "first_frame")
    if first_frame:
        request["first_frame"] = first_frame
    _optional_prompt(body, request)
    callback = _callback(body)
    if callback:
        request["callback_url"] = callback
    return request


def validate_reframe(body: Any, kind: str) -> dict[str, Any]:
    """The ``request`` echo of a valid reframe body; ``kind`` is ``video`` or ``image``."""
    body = _object(body)
    generation_type = f"reframe_{kind}"
    _required_type(body, generation_type)
    request: dict[str, Any] = {
        "generation_type": generation_type,
        "media": _media(body, "media", required=True),
        "aspect_ratio": _choice(body, "aspect_ratio", ASPECT_RATIOS, required=True),
        "model": _choice(body, "model", VIDEO_MODELS if kind == "video" else IMAGE_MODELS, required=True),
    }
    if kind == "video":
        first_frame = _media(body, "first_frame")
        if first_frame:
            request["first_frame"] = first_frame
    elif body.get("format") is not None:
        request["format"] = _choice(body, "format", IMAGE_FORMATS)
    _optional_prompt(body, request)
    for name in REFRAME_GEOMETRY:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise OfficialError(422, f"'{name}' must be an integer; got {value!r}")
        request[name] = value
    for axis in ("x", "y"):
        start, end = request.get(f"{axis}_start"), request.get(f"{axis}_end")
        if start is not None and end is not None and end <= start:
            raise OfficialError(422, f"'{axis}_end' must be greater than '{axis}_start'; got {start}..{end}")
    callback = _callback(body)
    if callback:
        request["callback_url"] = callback
    return request


def cost(request: dict[str, Any], source: Generation | None = None) -> float:
    """USD cents a create costs (see :data:`COSTS`)."""
    kind = request["generation_type"]
    if kind == "image":
        return float(COSTS["IMAGE"][request["model"]])
    if kind in ("modify_video", "reframe_video", "reframe_image"):
        return float(COSTS[kind.upper()][request["model"]])
    if kind == "add_audio":
        return float(COSTS["AUDIO"])
    if kind == "upscale_video":
        duration = (source.request.get("duration") if source else None) or DEFAULT_DURATION
        return float(COSTS["UPSCALE"][request["resolution"]] * COSTS["DURATION_FACTOR"][duration])
    return float(
        COSTS["VIDEO_5S_540P"][request["model"]]
        * COSTS["RESOLUTION_FACTOR"][request.get("resolution") or DEFAULT_RESOLUTION]
        * COSTS["DURATION_FACTOR"][request.get("duration") or DEFAULT_DURATION]
    )


# --------------------------------------------------------------------------- creation


def new_generation(
    store: GenerationStore,
    config: SandboxConfig,
    request: dict[str, Any],
    *,
    kind: str,
    model: str | None,
    prompt: str,
    base_url: str,
    keep: bool = True,
) -> Generation:
    """Build (and unless ``keep`` is false, store) an official generation."""
    queue_s, process_s, failure_reason = directives(prompt, config)
    gen = Generation(
        id=str(uuid.uuid4()),
        seq=store.next_seq(),
        prompt=prompt,
        request=request,
        created_wall=time.time(),
        created_mono=time.monotonic(),
        queue_s=queue_s,
        process_s=process_s,
        failure_reason=failure_reason,
        kind=kind,
        model=model,
        official=True,
        callback_url=request.get("callback_url"),
        base_url=base_url,
    )
    return store.add(gen) if keep else gen


def ghost(config: SandboxConfig, base_url: str) -> Generation:
    """A believable generation that is never stored (for faults that break a create's reply)."""
    request = {"generation_type": "video", "model": "ray-2", "prompt": "ghost", "aspect_ratio": "16:9"}
    return new_generation(
        GenerationStore(),
        config,
        request,
        kind="video",
        model="ray-2",
        prompt="ghost",
        base_url=base_url,
        keep=False,
    )


# --------------------------------------------------------------------------- callbacks


def schedule_callbacks(sb: SandboxState, gen: Generation) -> None:
    """Start the task that POSTs ``gen`` to its callback URL when dreaming and when terminal."""
    if not gen.callback_url:
        return
    task = asyncio.get_running_loop().create_task(_callback_run(sb, gen))
    sb.callback_tasks[gen.id] = task
    task.add_done_callback(
        lambda t: sb.callback_tasks.pop(gen.id, None) if sb.callback_tasks.get(gen.id) is t else None
    )


async def _callback_run(sb: SandboxState, gen: Generation) -> None:
    for state, at in ((PROCESSING, gen.queue_s), (None, gen.queue_s + gen.process_s)):
        delay = gen.created_mono + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if sb.store.get(gen.id) is not gen:  # deleted (or the sandbox was reset)
            return
        await deliver(sb, gen, state or (FAILED if gen.failure_reason else COMPLETED))


async def deliver(sb: SandboxState, gen: Generation, state: str) -> bool:
    """POST the Generation in ``state``: 1 try + :data:`CALLBACK_RETRIES` retries until a 200."""
    assert gen.callback_url is not None
    payload = json.dumps(render(gen, state=state)).encode()
    parts = urlsplit(gen.callback_url)
    logged_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    session = sb.http_session()
    for attempt in range(1, CALLBACK_RETRIES + 2):
        status: int | None = None
        error: str | None = None
        try:
            async with session.post(
                gen.callback_url,
                data=payload,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        sb.stats.record_callback(
            url=logged_url,
            generation_id=gen.id,
            state=STATES[state],
            attempt=attempt,
            status=status,
            error=error,
        )
        if status == 200:
            return True
        if attempt <= CALLBACK_RETRIES:
            await asyncio.sleep(CALLBACK_RETRY_DELAY)
    return False


# --------------------------------------------------------------------------- handlers


def parse_page_params(request: web.Request) -> tuple[int, int]:
    values = []
    for name, default, low, high in (("limit", 100, 1, 1000), ("offset", 0, 0, math.inf)):
        raw = request.query.get(name)
        try:
            value = default if raw in (None, "") else int(raw)
        except ValueError:
            raise OfficialError(422, f"'{name}' must be an integer; got {raw!r}") from None
        if not low <= value <= high:
            raise OfficialError(422, f"'{name}' must be between {low} and {high}; got {value}")
        values.append(value)
    return values[0], values[1]
