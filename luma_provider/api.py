"""The gateway protocol without I/O: validation, request building, error mapping, retry policy.

The hook has a sync transport (requests) and an async one (aiohttp). Everything that is not
"send these bytes, hand back status/headers/body" lives here, once, and both transports use it:

* ``build_generation_body`` validates user input and maps it to gateway field names;
* each operation is a *flow*: a generator that yields ``Request`` objects and is sent the
  parsed result (or has the ``LumaError`` thrown in), so fallbacks such as "batch route
  missing, use single GETs" are written once for both transports;
* ``decode`` turns a raw HTTP answer into a payload or the right exception;
* ``RetryPolicy`` decides what is retried, how long to wait, and when a failed submit is
  ambiguous (the job may exist, so it must not be resubmitted blindly).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import json
import logging
import math
import random
import re
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import urljoin, urlsplit

from luma_provider.connection_fields import (
    API_FLAVOURS,
    CONNECTION_FIELDS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DOWNLOAD_STALL_TIMEOUT,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_STATUS_CONCURRENCY,
    DEFAULT_TIMEOUT,
    OFFICIAL_PATH,
    ConnectionField,
)
from luma_provider.connection_fields import DEFAULT_CONN_ID as DEFAULT_CONN_ID  # re-exported
from luma_provider.exceptions import (
    LumaAmbiguousSubmitError,
    LumaAPIError,
    LumaAuthError,
    LumaBadRequestError,
    LumaConfigError,
    LumaDownloadError,
    LumaError,
    LumaNotFoundError,
    LumaRateLimitError,
    LumaResponseTooLargeError,
    LumaServerError,
    LumaTransportError,
    LumaValidationError,
)
from luma_provider.models import (
    LumaGeneration,
    LumaResponseShapeError,
    is_generation_id,
    parse_generation,
    parse_generations,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

ASPECT_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16")
OFFICIAL_ASPECT_RATIOS = (*ASPECT_RATIOS, "21:9", "9:21")
RESOLUTIONS = ("540p", "720p", "1080p", "4k")
DURATIONS = ("5s", "9s")
# User-facing (official) model names -> the gateway's ``model_name`` values.
MODELS = {"ray-2": "ray-v2", "ray-1-6": "ray-v1", "ray-v1": "ray-v1", "ray-v2": "ray-v2", "ray-v3": "ray-v3"}
#: The official API's video models (the name is sent as it is); ``model`` is required there.
OFFICIAL_MODELS = {"ray-2": "ray-2", "ray-flash-2": "ray-flash-2"}
DEFAULT_OFFICIAL_MODEL = "ray-2"
IMAGE_MODELS = ("photon-1", "photon-flash-1")
MAX_PROMPT_LENGTH = 5000
#: Longest gateway message kept in an exception; longer ones are cut (they reach logs and XCom).
MESSAGE_LIMIT = 1000
#: Longest piece of a low-level error (an HTTP client's exception text) kept in a message.
DETAIL_LIMIT = 300
#: Longest error code or field name kept from a reply.
NAME_LIMIT = 100
#: Of an error reply, only this much is read: enough for any gateway's error envelope.
ERROR_BODY_LIMIT = 8 * 1024
#: Redirects a download may follow; each hop is checked like the first URL.
MAX_REDIRECTS = 5
#: Floor of every poll interval: a typo such as 1e-6 must not hammer the gateway.
MIN_POLL_INTERVAL = 0.1
#: Longest wait accepted (30 days): beyond, a deadline or a timedelta overflows.
MAX_WAIT_SECONDS = 30 * 24 * 3600.0
MAX_RETRY_AFTER = 120.0
# A syntactically valid id that no gateway will have: a free, authenticated probe.
PROBE_ID = "00000000-0000-0000-0000-000000000000"

_DATA_URI_RE = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,(?P<data>.*)$", re.DOTALL)
_OFFICIAL_RESERVED = {
    "prompt",
    "model",
    "aspect_ratio",
    "loop",
    "keyframes",
    "resolution",
    "duration",
    "concepts",
    "callback_url",
    "user_prompt",
    "model_name",
}
_RESERVED_FIELDS = {
    "user_prompt",
    "aspect_ratio",
    "loop",
    "expand_prompt",
    "image_url",
    "image_end_url",
    "model_name",
    "resolution",
    "duration",
}


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook needs from an Airflow ``luma`` connection, validated once."""

    base_url: str
    api_key: str | None = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    batch_size: int = DEFAULT_BATCH_SIZE
    status_concurrency: int = DEFAULT_STATUS_CONCURRENCY
    path_prefix: str = ""
    verify_ssl: bool = True
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    download_stall_timeout: float = DEFAULT_DOWNLOAD_STALL_TIMEOUT
    allow_private_downloads: bool = False
    #: Official API: the credit floor (USD cents) below which tasks do not submit; None: no check.
    min_credits: float | None = None
    #: ``gateway`` (``/luma/...`` routes) or ``official`` (Dream Machine API, base URL with its path).
    api_flavour: str = "gateway"
    #: The host had no scheme and https:// was assumed (a hint for SSL errors).
    scheme_assumed: bool = False

    @property
    def official(self) -> bool:
        return self.api_flavour == "official"

    def url(self, path: str) -> str:
        return f"{self.base_url}{self.path_prefix}{path}"

    def is_gateway_origin(self, url: str) -> bool:
        """Strictly the gateway's origin; URLs the HTTP clients could read differently never are."""
        origin = strict_origin(url)
        return origin is not None and origin == strict_origin(self.base_url)

    def auth_headers_for(self, url: str) -> dict[str, str]:
        """Bearer header, but only for the gateway's own origin: never leak the key to a CDN."""
        if not self.api_key or not self.is_gateway_origin(url):
            return {}
        return {"Authorization": f"Bearer {self.api_key}"}

    def redact(self, text: str) -> str:
        """Remove the key from text, in every form a message can carry it (raw, repr-escaped)."""
        if not self.api_key or not text:
            return text
        for form in _secret_forms(self.api_key):
            text = text.replace(form, "***")
        return text

    def redact_generation(self, gen: LumaGeneration) -> LumaGeneration:
        """Gateway-provided strings may echo the key; they reach XCom, logs and manifests."""
        if not self.api_key:
            return gen
        changes: dict[str, Any] = {
            f.name: self.redact(value)
            for f in dataclasses.fields(gen)
            if type(value := getattr(gen, f.name)) is str and f.name != "id"
        }
        return dataclasses.replace(gen, **changes)


def _secret_forms(secret: str) -> list[str]:
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    return sorted((f for f in forms if f), key=len, reverse=True)


def strict_origin(url: str) -> tuple[str, str, int] | None:
    r"""``(scheme, host, port)`` of an http(s) URL, or None when it is unsafe to reason about.

    urllib3 and ``urlsplit`` disagree on some URLs (``http://a\\@b/`` is host ``a`` to one and
    ``b`` to the other), so anything that could be read two ways is refused: backslashes,
    userinfo, whitespace or control characters, bad ports.
    """
    if (
        not isinstance(url, str)
        or len(url) > 8192
        or "\\" in url
        or any(c <= " " or c == "\x7f" for c in url)
    ):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def settings_from_connection(
    conn_id: str,
    conn_type: str | None,
    host: str | None,
    password: str | None,
    port: int | None,
    extra: Mapping[str, Any],
) -> ConnectionSettings:
    """Validate an Airflow connection's fields; the message names the field that is wrong."""
    if conn_type and conn_type not in ("luma", "http"):
        raise LumaConfigError(f"Connection {conn_id!r} has conn_type {conn_type!r}; expected 'luma'.")
    if not isinstance(extra, Mapping):
        raise LumaConfigError(f"Connection {conn_id!r}: extra must be a JSON object")
    host = (host or "").strip().rstrip("/")
    if not host:
        raise LumaConfigError(
            f"Connection {conn_id!r} has no host; set it to the gateway base URL, "
            "e.g. https://gateway.example"
        )
    scheme_assumed = "://" not in host
    if scheme_assumed:
        host = f"https://{host}"
    if urlsplit(host).scheme not in ("http", "https"):
        raise LumaConfigError(
            f"Connection {conn_id!r}: host must be an http(s) URL, got scheme {urlsplit(host).scheme!r}"
        )
    if host.endswith("/luma"):  # a common paste error: the routes already start with /luma
        host = host[: -len("/luma")]
    parts = urlsplit(host)
    try:
        _ = parts.port  # raises for a bad port
    except ValueError:
        raise LumaConfigError(f"Connection {conn_id!r}: host {host!r} has an invalid port") from None
    if port and not parts.port:
        host = parts._replace(netloc=f"{parts.netloc}:{port}").geturl()
    if strict_origin(host) is None:
        raise LumaConfigError(
            f"Connection {conn_id!r}: host {host!r} is not a plain http(s) URL "
            "(no user:password@, backslashes or spaces)"
        )

    values = {f.name: _extra_value(conn_id, f, extra) for f in CONNECTION_FIELDS}
    prefix = str(values.pop("path_prefix")).strip().rstrip("/")
    path = urlsplit(host).path.rstrip("/")
    flavour = values.pop("api_flavour") or ("official" if path.endswith(OFFICIAL_PATH) else "gateway")
    if flavour == "official" and not path.endswith(OFFICIAL_PATH):
        host = f"{host}{OFFICIAL_PATH}"  # https://api.lumalabs.ai + official -> its versioned base
    return ConnectionSettings(
        base_url=host,
        api_key=_api_key(conn_id, password),
        path_prefix=f"/{prefix.lstrip('/')}" if prefix else "",
        scheme_assumed=scheme_assumed,
        api_flavour=flavour,
        **values,
    )


_CASTS: dict[str, Callable[[Any], Any]] = {
    "number": float,
    "integer": int,
    "string": str,
    "boolean": lambda v: _to_bool(v),
}


def _extra_value(conn_id: str, spec: ConnectionField, extra: Mapping[str, Any]) -> Any:
    """One extra field, cast and bounds-checked; the message names the field."""
    value = extra.get(spec.name, extra.get(f"extra__luma__{spec.name}"))
    if value in (None, ""):
        return spec.default
    try:
        if spec.kind in ("number", "integer") and isinstance(value, bool):
            raise ValueError(value)
        result = _CASTS[spec.kind](value)
    except (TypeError, ValueError, OverflowError):
        raise LumaConfigError(
            f"Connection {conn_id!r}: extra field {spec.name!r} has invalid value {_short(value)}"
        ) from None
    if isinstance(result, float) and not math.isfinite(result):
        raise LumaConfigError(f"Connection {conn_id!r}: extra field {spec.name!r} must be a finite number")
    if spec.choices and result not in spec.choices:
        raise LumaConfigError(
            f"Connection {conn_id!r}: extra field {spec.name!r} must be one of {', '.join(spec.choices)}, "
            f"got {_short(value)}"
        )
    if spec.minimum is not None and result < spec.minimum:
        raise LumaConfigError(
            f"Connection {conn_id!r}: extra field {spec.name!r} must be >= {spec.minimum:g}, "
            f"got {_short(value)}"
        )
    return result


def _api_key(conn_id: str, password: str | None) -> str | None:
    """The key without the whitespace a paste adds.

    A key that cannot be a header is refused without echoing it (HTTP clients put the bad
    header's repr into their exceptions).
    """
    key = (password or "").strip()
    if not key:
        return None
    if any(c <= " " or c == "\x7f" for c in key) or not key.isascii():
        raise LumaConfigError(
            f"Connection {conn_id!r}: the API key (password) contains spaces, control or non-ASCII "
            "characters; paste it again (value not shown)"
        )
    return key


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


# ----------------------------------------------------------------------------- validation
def validate_count(value: Any, name: str, *, low: int = 0, high: int | None = None) -> int:
    """A whole number from ``low`` (up to ``high``), e.g. a concurrency or a budget."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        allowed = f"from {low} to {high}" if high is not None else f">= {low}"
        raise LumaValidationError(name, f"must be a whole number {allowed}, got {value!r}")
    return value


def validate_credits(value: Any, field_name: str) -> float:
    """A credit amount in USD cents: a finite number >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise LumaValidationError(field_name, f"must be a number of USD cents >= 0, got {value!r}")
    return float(value)


def validate_generation_id(generation_id: Any, field_name: str = "generation_id") -> str:
    """A generation id, stripped, or ``LumaValidationError`` naming ``field_name``."""
    value = generation_id.strip() if isinstance(generation_id, str) else generation_id
    if not is_generation_id(value):
        raise LumaValidationError(
            field_name,
            "expected a Luma generation id (up to 128 letters, digits, '-', '_', '.', ':'; "
            f"no '..'), got {_short(generation_id)}",
        )
    return str(value)


def validate_seconds(value: Any, field_name: str, *, minimum: float = MIN_POLL_INTERVAL) -> float:
    """A finite number of seconds in ``[minimum, MAX_WAIT_SECONDS]`` (poll intervals, timeouts)."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number) or not minimum <= number <= MAX_WAIT_SECONDS:
        raise LumaValidationError(
            field_name,
            f"must be a number of seconds between {minimum:g} and {MAX_WAIT_SECONDS:g}, got {_short(value)}",
        )
    return number


def validate_prompt(prompt: Any, field_name: str = "prompt") -> str:
    """A non-empty prompt of at most ``MAX_PROMPT_LENGTH`` characters, stripped."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise LumaValidationError(field_name, "must be a non-empty string")
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise LumaValidationError(
            field_name, f"is {len(prompt)} characters; the maximum is {MAX_PROMPT_LENGTH}"
        )
    return prompt.strip()


def validate_image_url(value: Any, field_name: str) -> str:
    """An http(s) URL or a ``data:image/...;base64,`` URI with valid, non-empty base64."""
    if not isinstance(value, str) or not value.strip():
        raise LumaValidationError(field_name, "must be an http(s) URL or a data:image/...;base64, URI")
    value = value.strip()
    if value.startswith("data:"):
        match = _DATA_URI_RE.match(value)
        if not match:
            raise LumaValidationError(
                field_name, "data URIs must look like data:image/<format>;base64,<data>"
            )
        data = re.sub(r"\s+", "", match["data"])
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise LumaValidationError(field_name, "the data URI does not contain valid base64") from None
        if not decoded:
            raise LumaValidationError(field_name, "the data URI holds no image data")
        return str(value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LumaValidationError(
            field_name,
            "must be an http(s) URL or a data:image/...;base64, URI, "
            f"got scheme {parts.scheme or '(none)'!r}",
        )
    return str(value)


#: The generation options besides the prompt, in the order they are documented everywhere.
#: The generation options besides the prompt, in the order they are documented everywhere.
OPTION_NAMES = (
    "aspect_ratio",
    "loop",
    "expand_prompt",
    "image_url",
    "image_end_url",
    "model",
    "resolution",
    "duration",
    "concepts",
    "callback_url",
)
#: Options one flavour does not have: an error before any HTTP call, not a silently dropped field.
UNSUPPORTED_OPTIONS = {"gateway": ("concepts", "callback_url"), "official": ("expand_prompt",)}


@dataclass(frozen=True)
class GenerationOptions:
    """What a submit or an extend sends, validated once (``build``) and turned into a body once.

    The hook, the operators and prompt files all go through this one type, so an option is
    declared and checked in one place. Values are normalized: ``loop="yes"`` becomes ``True``,
    ``duration=5`` becomes ``"5s"``, empty strings become None. ``flavour`` decides the field
    names and enums (gateway: ``user_prompt``/``model_name``; official: ``prompt``/``model``,
    keyframes, concepts).
    """

    prompt: str
    aspect_ratio: str | None = None
    loop: bool | None = None
    expand_prompt: bool | None = None
    image_url: str | None = None
    image_end_url: str | None = None
    model: str | None = None
    resolution: str | None = None
    duration: str | None = None
    concepts: tuple[str, ...] = ()
    callback_url: str | None = None
    #: Other fields passed through as they are.
    extra: Mapping[str, Any] = field(default_factory=dict)
    flavour: str = "gateway"

    @classmethod
    def build(
        cls,
        prompt: Any,
        *,
        flavour: str = "gateway",
        aspect_ratio: Any = None,
        loop: Any = None,
        expand_prompt: Any = None,
        image_url: Any = None,
        image_end_url: Any = None,
        model: Any = None,
        resolution: Any = None,
        duration: Any = None,
        concepts: Any = None,
        callback_url: Any = None,
        extra: Mapping[str, Any] | None = None,
    ) -> GenerationOptions:
        """Validate user input for ``flavour``; errors name the field and the allowed values."""
        given = dict(expand_prompt=expand_prompt, concepts=concepts, callback_url=callback_url)
        for name in UNSUPPORTED_OPTIONS.get(flavour, ()):
            if given.get(name) not in (None, "", [], ()):
                raise LumaValidationError(name, f"is not available in the {flavour} API flavour")
        official = flavour == "official"
        ratios = OFFICIAL_ASPECT_RATIOS if official else ASPECT_RATIOS
        models: Mapping[str, str] = OFFICIAL_MODELS if official else MODELS
        if extra is not None and not isinstance(extra, Mapping):
            raise LumaValidationError("extra", f"must be a dict, got {type(extra).__name__}")
        passthrough = dict(extra or {})
        reserved = _OFFICIAL_RESERVED if official else _RESERVED_FIELDS
        for key in passthrough:
            if not isinstance(key, str):
                raise LumaValidationError("extra", f"keys must be strings, got {key!r}")
            if key in reserved:
                raise LumaValidationError("extra", f"{key!r} is set through its own parameter, not extra")
        options = cls(
            prompt=validate_prompt(prompt),
            aspect_ratio=_choice("aspect_ratio", aspect_ratio, ratios),
            loop=None if loop in (None, "") else _bool_field("loop", loop),
            expand_prompt=None
            if expand_prompt in (None, "")
            else _bool_field("expand_prompt", expand_prompt),
            image_url=None if image_url in (None, "") else validate_image_url(image_url, "image_url"),
            image_end_url=None
            if image_end_url in (None, "")
            else validate_image_url(image_end_url, "image_end_url"),
            model=_choice("model", model, tuple(models)),
            resolution=_choice("resolution", resolution, RESOLUTIONS),
            duration=_choice("duration", _duration(duration), DURATIONS),
            concepts=_concepts(concepts),
            callback_url=None if callback_url in (None, "") else _http_url("callback_url", callback_url),
            extra=passthrough,
            flavour=_choice("flavour", flavour, API_FLAVOURS) or "gateway",
        )
        try:
            json.dumps(options.body(), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise LumaValidationError(
                "extra", f"must be JSON-serializable, without NaN or Infinity ({err})"
            ) from None
        return options

    def body(self) -> dict[str, Any]:
        """The JSON body in this flavour's field names."""
        body: dict[str, Any]
        if self.flavour == "official":
            body = {"prompt": self.prompt, "model": self.model or DEFAULT_OFFICIAL_MODEL}
            keyframes = {
                frame: {"type": "image", "url": url}
                for frame, url in (("frame0", self.image_url), ("frame1", self.image_end_url))
                if url
            }
            if keyframes:
                body["keyframes"] = keyframes
            if self.concepts:
                body["concepts"] = [{"key": key} for key in self.concepts]
            names: tuple[str, ...] = ("aspect_ratio", "loop", "resolution", "duration", "callback_url")
        else:
            body = {"user_prompt": self.prompt}
            if self.model is not None:
                body["model_name"] = MODELS[self.model]
            names = (
                "aspect_ratio",
                "loop",
                "expand_prompt",
                "image_url",
                "image_end_url",
                "resolution",
                "duration",
            )
        body.update({name: getattr(self, name) for name in names if getattr(self, name) is not None})
        body.update(self.extra)
        return body


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str | None:
    if value in (None, ""):
        return None
    if value not in allowed:
        raise LumaValidationError(name, f"{_short(value)} is not one of {', '.join(allowed)}")
    return str(value)


def _duration(value: Any) -> Any:
    # 5, 5.0, "5" and "5s" all mean "5s" (the API's own spelling).
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return f"{int(value)}s"
    if isinstance(value, str) and value.strip().isdigit():
        return f"{value.strip()}s"
    return value


def _concepts(value: Any) -> tuple[str, ...]:
    if value in (None, "", [], ()):
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) and i.strip() for i in items):
        raise LumaValidationError("concepts", f"must be a list of concept keys, got {_short(value)}")
    return tuple(i.strip() for i in items)


def _http_url(name: str, value: Any) -> str:
    if strict_origin(value) is None:
        raise LumaValidationError(name, f"must be a plain http(s) URL, got {_short(value)}")
    return str(value)


def build_generation_body(prompt: Any, **options: Any) -> dict[str, Any]:
    """Validate the options of a submit/extend and map them to the gateway's JSON body."""
    return GenerationOptions.build(prompt, **options).body()


def _bool_field(name: str, value: Any) -> bool:
    try:
        return _to_bool(value)
    except ValueError:
        raise LumaValidationError(name, f"must be true or false, got {_short(value)}") from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError(value)


# ----------------------------------------------------------------------------- requests & flows
@dataclass(frozen=True)
class Request:
    """One HTTP call, described; the transports send it and retry it per ``RetryPolicy``."""

    name: str
    method: str
    path: str
    json: Any = None
    parse: Callable[[Any], Any] = lambda payload: payload
    #: A submit costs money: retried only where the gateway provably did not take the job.
    idempotent: bool = True
    retry: bool = True
    #: A 204 with no body is the answer (the official API's DELETE), not a broken reply.
    empty_ok: bool = False


Flow = Generator[Request, Any, T]


class _Driver:
    """One flow's state between requests, shared by ``drive`` and ``adrive``."""

    def __init__(self, flow: Flow[Any]) -> None:
        self.flow = flow
        self.result: Any = None
        self.error: LumaError | None = None
        self.value: Any = None

    def next_request(self) -> Request | None:
        """The flow's next request, or None once it returned (its value is in ``value``)."""
        try:
            request = self.flow.throw(self.error) if self.error else self.flow.send(self.result)
        except StopIteration as stop:
            self.value = stop.value
            return None
        self.result, self.error = None, None
        return request


def drive(flow: Flow[T], send: Callable[[Request], Any]) -> T:
    """Run a flow to its result.

    ``send`` answers each request, or raises the ``LumaError`` the flow gets thrown in (so
    fallbacks such as "no batch route" are written once, in the flow).
    """
    state = _Driver(flow)
    while (request := state.next_request()) is not None:
        try:
            state.result = send(request)
        except LumaError as err:
            state.error = err
    return cast(T, state.value)


async def adrive(flow: Flow[T], asend: Callable[[Request], Awaitable[Any]]) -> T:
    """``drive`` for the async transport (same flows)."""
    state = _Driver(flow)
    while (request := state.next_request()) is not None:
        try:
            state.result = await asend(request)
        except LumaError as err:
            state.error = err
    return cast(T, state.value)


def submit_flow(body: dict[str, Any]) -> Flow[LumaGeneration]:
    """``POST /luma/generations``: costs money, so never retried where the job may exist."""
    result = yield Request("submit", "POST", "/luma/generations", body, parse_generation, idempotent=False)
    return cast(LumaGeneration, result)


def extend_flow(generation_id: str, body: dict[str, Any]) -> Flow[LumaGeneration]:
    """``POST /luma/generations/{id}/extend``: a new, paid generation."""
    path = f"/luma/generations/{generation_id}/extend"
    result = yield Request("extend", "POST", path, body, parse_generation, idempotent=False)
    return cast(LumaGeneration, result)


def get_flow(generation_id: str) -> Flow[LumaGeneration]:
    """``GET /luma/generations/{id}``."""
    result = yield Request("get", "GET", f"/luma/generations/{generation_id}", parse=parse_generation)
    return cast(LumaGeneration, result)


def get_if_found_flow(
    generation_id: str, get: Callable[[str], Flow[LumaGeneration]]
) -> Flow[LumaGeneration | None]:
    """One id's status through ``get``; None when it is unknown (the poller serves many waits)."""
    try:
        return (yield from get(generation_id))
    except LumaNotFoundError:
        return None


# ----------------------------------------------------------------------------- official flows
# Luma's own Dream Machine API (paths below the connection's ``.../dream-machine/v1`` base URL).
OFFICIAL_VIDEO_ROUTES = ("/generations/video", "/generations")


def official_submit_flow(body: dict[str, Any], path: str = "/generations/video") -> Flow[LumaGeneration]:
    """``POST /generations/video`` (201), or the older ``POST /generations`` where it 404s.

    A 404 means the route does not exist, so nothing was created and the fallback is safe.
    """
    routes = OFFICIAL_VIDEO_ROUTES if path == OFFICIAL_VIDEO_ROUTES[0] else (path,)
    for number, route in enumerate(routes):
        try:
            result = yield Request("submit", "POST", route, body, parse_generation, idempotent=False)
            return cast(LumaGeneration, result)
        except LumaNotFoundError:
            if number == len(routes) - 1:
                raise
            log.info("POST %s answered 404; trying the older route %s", route, routes[number + 1])
    raise AssertionError("unreachable")  # pragma: no cover


def official_get_flow(generation_id: str) -> Flow[LumaGeneration]:
    """``GET /generations/{id}``."""
    result = yield Request("get", "GET", f"/generations/{generation_id}", parse=parse_generation)
    return cast(LumaGeneration, result)


def official_cancel_flow(generation_id: str) -> Flow[None]:
    """``DELETE /generations/{id}`` (204): stops a queued or dreaming generation."""
    yield Request("cancel", "DELETE", f"/generations/{generation_id}", empty_ok=True)


def official_list_flow(limit: int, offset: int) -> Flow[tuple[list[LumaGeneration], bool]]:
    """One page of ``GET /generations``: the generations and whether more follow."""
    path = f"/generations?limit={int(limit)}&offset={int(offset)}"
    payload = yield Request("list", "GET", path, parse=_parse_page)
    return cast("tuple[list[LumaGeneration], bool]", payload)


def official_credits_flow() -> Flow[float]:
    """``GET /credits``: the balance in USD cents."""
    result = yield Request("credits", "GET", "/credits", parse=_parse_credits)
    return cast(float, result)


def official_post_flow(name: str, path: str, body: dict[str, Any]) -> Flow[LumaGeneration]:
    """A paid official create (image, upscale, audio): never resubmitted where the job may exist."""
    result = yield Request(name, "POST", path, body, parse_generation, idempotent=False)
    return cast(LumaGeneration, result)


IMAGE_FORMATS = ("jpg", "png")
_IMAGE_REFS = ("image_ref", "style_ref", "character_ref", "modify_image_ref")


def image_body(prompt: Any, *, model: Any = None, aspect_ratio: Any = None, **options: Any) -> dict[str, Any]:
    """The body of an official image create (``photon-1`` by default)."""
    body: dict[str, Any] = {
        "prompt": validate_prompt(prompt),
        "model": _choice("model", model, IMAGE_MODELS) or IMAGE_MODELS[0],
    }
    ratio = _choice("aspect_ratio", aspect_ratio, OFFICIAL_ASPECT_RATIOS)
    if ratio:
        body["aspect_ratio"] = ratio
    fmt = _choice("format", options.pop("format", None), IMAGE_FORMATS)
    if fmt:
        body["format"] = fmt
    callback = options.pop("callback_url", None)
    if callback:
        body["callback_url"] = _http_url("callback_url", callback)
    for name in _IMAGE_REFS:
        ref = options.pop(name, None)
        if ref is not None:
            body[name] = ref
    if options:
        raise LumaValidationError(
            sorted(options)[0],
            "is not an image option; allowed: model, aspect_ratio, format, callback_url, "
            f"{', '.join(_IMAGE_REFS)}",
        )
    return _json_checked(body)


def upscale_body(resolution: Any, *, callback_url: Any = None) -> dict[str, Any]:
    """The body of an official upscale."""
    body: dict[str, Any] = {
        "generation_type": "upscale_video",
        "resolution": _choice("resolution", resolution, RESOLUTIONS),
    }
    if not body["resolution"]:
        raise LumaValidationError("resolution", f"is required; one of {', '.join(RESOLUTIONS)}")
    if callback_url:
        body["callback_url"] = _http_url("callback_url", callback_url)
    return body


def audio_body(prompt: Any, *, negative_prompt: Any = None, callback_url: Any = None) -> dict[str, Any]:
    """The body of an official add-audio."""
    body: dict[str, Any] = {"generation_type": "add_audio", "prompt": validate_prompt(prompt)}
    if negative_prompt not in (None, ""):
        body["negative_prompt"] = validate_prompt(negative_prompt, "negative_prompt")
    if callback_url:
        body["callback_url"] = _http_url("callback_url", callback_url)
    return body


#: ``mode`` of ``POST /generations/video/modify``: how closely the result follows the source
#: video (``adhere``), loosens it (``flex``) or re-imagines it (``reimagine``), 1 = least change.
MODIFY_MODES = tuple(f"{kind}_{level}" for kind in ("adhere", "flex", "reimagine") for level in (1, 2, 3))
DEFAULT_MODIFY_MODE = "flex_1"
#: The optional integer geometry of a reframe: where the source sits in the new frame
#: (``grid_position_x/y``), its resized size (``resized_width/height``) and crop bounds.
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
#: The longest side, in pixels, a reframe geometry value may name (a typo guard, not an API limit).
MAX_REFRAME_PIXELS = 16384


def modify_video_body(
    media_url: Any,
    prompt: Any = None,
    *,
    mode: Any = DEFAULT_MODIFY_MODE,
    model: Any = None,
    first_frame_url: Any = None,
    callback_url: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """The body of an official video modify (``POST /generations/video/modify``).

    :param media_url: http(s) URL of the video to modify (``media.url``).
    :param prompt: what the modified video should show (optional, as in the API).
    :param mode: one of :data:`MODIFY_MODES` (``flex_1`` when empty).
    :param model: ``ray-2`` (default) or ``ray-flash-2``.
    :param first_frame_url: http(s) URL of an image the result starts from (``first_frame.url``).
    :param callback_url: where Luma POSTs the generation when dreaming, completed or failed.
    """
    if options:
        raise LumaValidationError(
            sorted(options)[0],
            "is not a modify option; allowed: prompt, mode, model, first_frame_url, callback_url",
        )
    body: dict[str, Any] = {
        "generation_type": "modify_video",
        "media": {"url": _required_url("media_url", media_url)},
        "mode": _choice("mode", mode, MODIFY_MODES) or DEFAULT_MODIFY_MODE,
        "model": _choice("model", model, tuple(OFFICIAL_MODELS)) or DEFAULT_OFFICIAL_MODEL,
    }
    _add_common_edit_fields(body, prompt=prompt, first_frame_url=first_frame_url, callback_url=callback_url)
    return body


def reframe_video_body(
    media_url: Any,
    aspect_ratio: Any,
    *,
    prompt: Any = None,
    model: Any = None,
    first_frame_url: Any = None,
    callback_url: Any = None,
    **geometry: Any,
) -> dict[str, Any]:
    """The body of an official video reframe (``POST /generations/video/reframe``).

    :param media_url: http(s) URL of the video to reframe (``media.url``).
    :param aspect_ratio: the new aspect ratio (required): ``1:1``, ``4:3``, ``3:4``, ``16:9``,
        ``9:16``, ``21:9``, ``9:21``.
    :param prompt: what the added areas should show (optional).
    :param model: ``ray-2`` (default) or ``ray-flash-2``.
    :param first_frame_url: http(s) URL of an image the result starts from (``first_frame.url``).
    :param callback_url: where Luma POSTs the generation when dreaming, completed or failed.
    :param geometry: the integer fields of :data:`REFRAME_GEOMETRY`, in pixels.
    """
    body = _reframe_body("reframe_video", media_url, aspect_ratio, model, OFFICIAL_MODELS, geometry)
    _add_common_edit_fields(body, prompt=prompt, first_frame_url=first_frame_url, callback_url=callback_url)
    return body


def reframe_image_body(
    media_url: Any,
    aspect_ratio: Any,
    *,
    prompt: Any = None,
    model: Any = None,
    format: Any = None,
    callback_url: Any = None,
    **geometry: Any,
) -> dict[str, Any]:
    """The body of an official image reframe (``POST /generations/image/reframe``).

    :param media_url: http(s) URL of the image to reframe (``media.url``).
    :param aspect_ratio: the new aspect ratio (required), as in :func:`reframe_video_body`.
    :param prompt: what the added areas should show (optional).
    :param model: ``photon-1`` (default) or ``photon-flash-1``.
    :param format: ``jpg`` or ``png``.
    :param callback_url: where Luma POSTs the generation when it is done.
    :param geometry: the integer fields of :data:`REFRAME_GEOMETRY`, in pixels.
    """
    body = _reframe_body("reframe_image", media_url, aspect_ratio, model, IMAGE_MODELS, geometry)
    fmt = _choice("format", format, IMAGE_FORMATS)
    if fmt:
        body["format"] = fmt
    _add_common_edit_fields(body, prompt=prompt, first_frame_url=None, callback_url=callback_url)
    return body


def _reframe_body(
    generation_type: str,
    media_url: Any,
    aspect_ratio: Any,
    model: Any,
    models: Iterable[str],
    geometry: dict[str, Any],
) -> dict[str, Any]:
    allowed = tuple(models)
    ratio = _choice("aspect_ratio", aspect_ratio, OFFICIAL_ASPECT_RATIOS)
    if ratio is None:
        raise LumaValidationError("aspect_ratio", f"is required; one of {', '.join(OFFICIAL_ASPECT_RATIOS)}")
    unknown = sorted(set(geometry) - set(REFRAME_GEOMETRY))
    if unknown:
        extra = "first_frame_url, " if generation_type == "reframe_video" else "format, "
        raise LumaValidationError(
            unknown[0],
            f"is not a reframe option; allowed: prompt, model, {extra}callback_url, "
            f"{', '.join(REFRAME_GEOMETRY)}",
        )
    body: dict[str, Any] = {
        "generation_type": generation_type,
        "media": {"url": _required_url("media_url", media_url)},
        "aspect_ratio": ratio,
        "model": _choice("model", model, allowed) or allowed[0],
    }
    for name in REFRAME_GEOMETRY:  # documented order, whatever order they were given in
        value = geometry.get(name)
        if value not in (None, ""):
            body[name] = _pixels(name, value)
    for axis in ("x", "y"):
        start, end = body.get(f"{axis}_start"), body.get(f"{axis}_end")
        if start is not None and end is not None and end <= start:
            raise LumaValidationError(
                f"{axis}_end", f"must be greater than {axis}_start ({start}), got {end}"
            )
    for name in ("resized_width", "resized_height"):
        if body.get(name) == 0:
            raise LumaValidationError(name, "must be at least 1 pixel, got 0")
    return body


def _pixels(name: str, value: Any) -> int:
    """A whole number of pixels: an int, or a string of one (templated values); no bools or floats."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,6}\s*", value):
        number = int(value)
    minimum = -MAX_REFRAME_PIXELS if name.startswith("grid_position") else 0
    if number is None or not minimum <= number <= MAX_REFRAME_PIXELS:
        raise LumaValidationError(
            name,
            f"must be a whole number of pixels from {minimum} to {MAX_REFRAME_PIXELS}, got {_short(value)}",
        )
    return number


def _required_url(name: str, value: Any) -> str:
    if value in (None, ""):
        raise LumaValidationError(name, "is required: the http(s) URL of the source media")
    return _http_url(name, value.strip() if isinstance(value, str) else value)


def _add_common_edit_fields(
    body: dict[str, Any], *, prompt: Any, first_frame_url: Any, callback_url: Any
) -> None:
    """``prompt``, ``first_frame`` and ``callback_url`` of a modify/reframe, when given."""
    if prompt not in (None, ""):
        body["prompt"] = validate_prompt(prompt)
    if first_frame_url not in (None, ""):
        url = first_frame_url.strip() if isinstance(first_frame_url, str) else first_frame_url
        body["first_frame"] = {"url": _http_url("first_frame_url", url)}
    if callback_url not in (None, ""):
        body["callback_url"] = _http_url("callback_url", callback_url)


def _json_checked(body: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise LumaValidationError(
            "options", f"must be JSON-serializable, without NaN or Infinity ({err})"
        ) from None
    return body


def _parse_page(payload: Any) -> tuple[list[LumaGeneration], bool]:
    if not isinstance(payload, dict) or not isinstance(payload.get("generations"), list):
        raise LumaResponseShapeError("expected {generations: [...]} from GET /generations")
    return parse_generations(payload["generations"]), payload.get("has_more") is True


def _parse_credits(payload: Any) -> float:
    balance = payload.get("credit_balance") if isinstance(payload, dict) else None
    if isinstance(balance, bool) or not isinstance(balance, (int, float)) or not math.isfinite(balance):
        raise LumaResponseShapeError(f"expected {{credit_balance: number}}, got {_short(payload)}")
    return float(balance)


def official_probe_flow() -> Flow[tuple[bool, str]]:
    """``GET /credits``: authenticated, free, and it tells the balance."""
    try:
        # Not retried, like the gateway probe: "Test connection" must answer at once.
        balance = cast(float, (yield Request("probe", "GET", "/credits", parse=_parse_credits, retry=False)))
    except LumaAuthError as err:
        return False, f"Bad API key (HTTP {err.status}): {err.message}"
    except LumaTransportError as err:
        return False, f"API unreachable: {err}"
    except LumaAPIError as err:
        return False, f"API answered HTTP {err.status}: {err.message}"
    return True, f"Connection works: credit balance {balance:g} (USD cents)."


def official_extend_body(
    options: GenerationOptions, source_id: str, *, reverse: bool = False, end_id: str | None = None
) -> dict[str, Any]:
    """An official body whose keyframes continue ``source_id`` (or lead into it, ``reverse``).

    With ``end_id`` it interpolates: ``source_id`` -> ``end_id``.
    """
    body = options.body()
    frames = dict(body.get("keyframes") or {})
    wanted = {"frame1" if reverse else "frame0": source_id}
    if end_id:
        wanted["frame1"] = end_id
    for frame, gen_id in wanted.items():
        if frame in frames:
            raise LumaValidationError(
                "image_end_url" if frame == "frame1" else "image_url",
                f"{frame} is already the extended generation; give no image for it",
            )
        frames[frame] = {"type": "generation", "id": validate_generation_id(gen_id)}
    body["keyframes"] = frames
    return body


@dataclass
class BatchSupport:
    """Remembers, per hook, whether the gateway has ``POST /luma/tasks`` (None = not yet known)."""

    available: bool | None = None


def get_many_flow(
    ids: Iterable[str],
    batch_size: int,
    support: BatchSupport,
    *,
    skip_missing: bool = False,
    get: Callable[[str], Flow[LumaGeneration]] | None = None,
) -> Flow[list[LumaGeneration]]:
    """Batch status in chunks via ``/luma/tasks``; single GETs for ids it lacks or when it is absent.

    :param skip_missing: leave unknown ids out of the result instead of raising
        ``LumaNotFoundError`` (the shared poller serves many triggers from one call).
    :param get: the single-id flow (the official API has no batch route: pass a ``support``
        that says so, and ``official_get_flow``).
    """
    get = get or get_flow
    wanted = list(dict.fromkeys(ids))
    found: dict[str, LumaGeneration] = {}
    for start in range(0, len(wanted), batch_size):
        chunk = wanted[start : start + batch_size]
        if support.available is not False:
            try:
                for gen in (yield Request("tasks", "POST", "/luma/tasks", {"ids": chunk}, parse_generations)):
                    found[gen.id] = gen
                support.available = True
            except LumaAPIError as err:
                if err.status not in (404, 405) or err.code == "task_not_exist":
                    raise
                log.info(
                    "Gateway has no batch status route (HTTP %s); using one GET per generation.", err.status
                )
                support.available = False
        for gen_id in chunk:
            if gen_id not in found:
                try:
                    found[gen_id] = yield from get(gen_id)
                except LumaNotFoundError:
                    if not skip_missing:
                        raise
    return [found[gen_id] for gen_id in wanted if gen_id in found]


def download_url_flow(generation_id: str) -> Flow[str | None]:
    """The watermark-free URL route is optional on gateways: 404/405 means "not offered"."""
    path = f"/luma/generations/{generation_id}/download_video_url"
    try:
        payload = yield Request("download_url", "GET", path)
    except LumaAPIError as err:
        if err.status in (404, 405):
            return None
        raise
    url = payload.get("url") if isinstance(payload, dict) else None
    return url if isinstance(url, str) and url else None


def probe_flow() -> Flow[tuple[bool, str]]:
    """One cheap authenticated call: a status lookup of an id that cannot exist."""
    try:
        yield Request("probe", "GET", f"/luma/generations/{PROBE_ID}", retry=False)
    except LumaAuthError as err:
        return False, f"Bad API key (HTTP {err.status}): {err.message}"
    except LumaNotFoundError:
        pass
    except LumaTransportError as err:
        return False, f"Gateway unreachable: {err}"
    except LumaAPIError as err:
        return False, f"Gateway answered HTTP {err.status}: {err.message}"
    return True, "Connection works: the gateway accepted the API key."


# ----------------------------------------------------------------------------- responses
def decode(
    request: Request, status: int, headers: Mapping[str, str], text: str, settings: ConnectionSettings
) -> Any:
    """Raw HTTP answer -> parsed result of ``request.parse``, or the matching ``LumaError``.

    Hostile bodies (NaN, 1e400, 100k-deep nesting, odd shapes) end as ``LumaTransportError``,
    never as a bare Python exception.
    """
    if status >= 400:
        raise error_for_status(request, status, headers, text, settings)
    if status == 204 and request.empty_ok:  # the official API's DELETE: no body by design
        return None
    if not text.strip():
        raise LumaTransportError(f"{request.method} {request.path}: HTTP {status} with an empty body")
    try:
        payload = loads(text)
    except (ValueError, RecursionError):
        raise LumaTransportError(
            f"{request.method} {request.path}: HTTP {status} body is not JSON: {_excerpt(text, settings)!r}"
        ) from None
    _raise_for_error_envelope(request, status, payload, settings)
    try:
        result = request.parse(payload)
    except (
        LumaResponseShapeError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        OverflowError,
        RecursionError,
    ) as err:
        raise LumaTransportError(
            f"{request.method} {request.path}: unexpected response shape "
            f"({settings.redact(str(err))[:DETAIL_LIMIT]}): {_excerpt(text, settings)!r}"
        ) from None
    if isinstance(result, LumaGeneration):
        return settings.redact_generation(result)
    if isinstance(result, list):
        return [settings.redact_generation(g) if isinstance(g, LumaGeneration) else g for g in result]
    return result


def loads(text: str) -> Any:
    """Strict JSON: NaN, Infinity and numbers that overflow a float are not JSON here."""

    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    def finite_float(literal: str) -> float:
        number = float(literal)
        if not math.isfinite(number):
            raise ValueError(f"number out of range: {literal[:20]}")
        return number

    return json.loads(text, parse_constant=reject_constant, parse_float=finite_float)


def _raise_for_error_envelope(
    request: Request, status: int, payload: Any, settings: ConnectionSettings
) -> None:
    # Some new-api forks answer 200 with an error envelope instead of an error status.
    if not isinstance(payload, dict) or "id" in payload:
        return
    code = payload.get("code")
    if isinstance(payload.get("error"), dict) or (
        isinstance(code, str) and code not in ("success", "") and payload.get("data") is None
    ):
        message, err_code = error_message(payload, "")
        cls = LumaNotFoundError if err_code == "task_not_exist" else LumaAPIError
        raise cls(
            status,
            settings.redact(message),
            code=err_code and settings.redact(err_code),
            method=request.method,
            path=request.path,
        )


def error_for_status(  # noqa: D103 - documented by its return type and the mapping below
    request: Request, status: int, headers: Mapping[str, str], text: str, settings: ConnectionSettings
) -> LumaAPIError:
    try:
        payload = loads(text) if text.strip() else None
    except (ValueError, RecursionError):
        payload = None
    message, code = error_message(payload, _excerpt(text, settings) or "(empty body)")
    kwargs: dict[str, Any] = dict(
        code=code and settings.redact(code), method=request.method, path=request.path
    )
    message = settings.redact(message)
    if status == 429:
        return LumaRateLimitError(status, message, retry_after=retry_after_seconds(headers), **kwargs)
    if status in (401, 403):
        return LumaAuthError(status, message, **kwargs)
    if status == 404 or code == "task_not_exist":
        return LumaNotFoundError(status, message, **kwargs)
    if status in (400, 422):
        return LumaBadRequestError(status, message, **kwargs)
    if status >= 500:
        return LumaServerError(status, message, retry_after=retry_after_seconds(headers), **kwargs)
    return LumaAPIError(status, message, **kwargs)


def error_message(payload: Any, fallback: str) -> tuple[str, str | None]:
    """The gateway's message, in the order ``error.message``, ``message``, ``detail``, ``detail.reason``."""
    if not isinstance(payload, dict):
        return fallback, None
    error = payload.get("error")
    detail = payload.get("detail")
    code = None
    if isinstance(error, dict):
        code = error.get("code")
    code = code or payload.get("code")
    candidates = [
        error.get("message") if isinstance(error, dict) else error,
        payload.get("message"),
        detail if isinstance(detail, str) else None,
        detail.get("reason") if isinstance(detail, dict) else None,
        _validation_detail(detail),
    ]
    message = next((c for c in candidates if isinstance(c, str) and c.strip()), fallback)
    code_text = str(code)[:NAME_LIMIT] if isinstance(code, (str, int)) and code not in ("", 0) else None
    return message[:MESSAGE_LIMIT], code_text


def _validation_detail(detail: Any) -> str | None:
    # FastAPI 422: {"detail": [{"loc": [...], "msg": "..."}]}; anything else in there is skipped.
    if not isinstance(detail, list):
        return None
    parts = []
    for item in detail[:20]:
        if not isinstance(item, dict):
            continue
        loc = item.get("loc")
        where = ".".join(str(p) for p in loc) if isinstance(loc, list) else str(loc or "")
        parts.append(f"{where[:NAME_LIMIT]}: {str(item.get('msg'))[:DETAIL_LIMIT]}")
    return "; ".join(parts) or None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` hint in seconds, capped; None when absent, a date, NaN or infinite."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP date: rare here, fall back to our own backoff
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _excerpt(text: str, settings: ConnectionSettings, limit: int = 200) -> str:
    # Strip before cutting: a key cut in two at the window's end must stay far past ``limit``,
    # where the final cut drops it (stripping afterwards would pull it into view).
    text = settings.redact(text.lstrip()[: limit * 4]).strip()
    return text if len(text) <= limit else f"{text[:limit]}..."


# ----------------------------------------------------------------------------- bodies & URLs
class BodyReader:
    """Bounded, incrementally decoded response body, shared by every transport.

    Feed it the bytes read off the wire (``decode_content=False`` / ``auto_decompress=False``);
    it decodes gzip/deflate itself, a bounded piece at a time, so neither a huge body nor a
    small gzip bomb can grow memory past ``limit``.

    :param content_encoding: the response's ``Content-Encoding`` header.
    :param limit: most decoded bytes accepted.
    :param truncate: stop quietly at ``limit`` (error bodies) instead of raising.
    """

    PIECE = 256 * 1024

    def __init__(
        self, content_encoding: str | None, limit: int, *, truncate: bool = False, what: str = "reply"
    ):
        encoding = (content_encoding or "").strip().lower()
        self._decoder: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            raise LumaTransportError(f"{what}: unsupported Content-Encoding {encoding[:40]!r}")
        self.limit = limit
        self.truncate = truncate
        self.what = what
        self.wire_bytes = 0
        self.size = 0
        self.full = False

    @classmethod
    def for_reply(
        cls, request: Request, status: int, headers: Mapping[str, str], settings: ConnectionSettings
    ) -> BodyReader:
        """The reader of an API reply: capped at ``max_response_bytes``; errors cut at 8 KiB."""
        error = status >= 400
        return cls(
            headers.get("Content-Encoding"),
            ERROR_BODY_LIMIT if error else settings.max_response_bytes,
            truncate=error,
            what=f"{request.method} {request.path}",
        )

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decoded pieces of ``data`` (each at most ``PIECE`` bytes)."""
        self.wire_bytes += len(data)
        if self._decoder is None:
            yield from self._accept(data)
            return
        try:
            while data and not self.full:
                piece = self._decoder.decompress(data, self.PIECE)
                data = self._decoder.unconsumed_tail
                yield from self._accept(piece)
        except zlib.error as err:
            raise LumaTransportError(f"{self.what}: corrupt compressed body ({err})") from None

    def finish(self) -> Iterator[bytes]:
        if self._decoder is not None and not self.full:
            try:
                yield from self._accept(self._decoder.flush(self.PIECE))
            except zlib.error as err:
                raise LumaTransportError(f"{self.what}: corrupt compressed body ({err})") from None

    def _accept(self, piece: bytes) -> Iterator[bytes]:
        room = self.limit - self.size
        if len(piece) > room:
            if not self.truncate:
                raise LumaResponseTooLargeError(
                    f"{self.what} is larger than the {self.limit}-byte cap (decoded); refused"
                )
            piece, self.full = piece[:room], True
        self.size += len(piece)
        if piece:
            yield piece


#: The content type of each file the provider writes, so a browser plays or shows it straight
#: from a bucket (the gallery's videos, posters and page).
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
}


def storage_write_options(protocol: str | Sequence[str], name: str) -> dict[str, Any]:
    """Keyword arguments for ``ObjectStoragePath.open`` (write) that set the object's content type.

    S3 and GCS keep the type given at upload and serve it; fsspec's ``s3fs``/``gcsfs`` guess it
    only when uploading a local file, so a streamed write is ``binary/octet-stream`` otherwise
    and a gallery opened from the bucket is downloaded instead of shown. Other stores: nothing.
    """
    content_type = CONTENT_TYPES.get(name[name.rfind(".") :].lower()) if "." in name else None
    protocols = {protocol} if isinstance(protocol, str) else set(protocol)
    if content_type is None:
        return {}
    if protocols & {"s3", "s3a"}:
        return {"ContentType": content_type}
    if protocols & {"gs", "gcs"}:
        return {"content_type": content_type}
    return {}


def check_download_url(url: Any, settings: ConnectionSettings) -> tuple[str, str, int]:
    """A video/thumbnail URL (or redirect target) safe to fetch, or ``LumaDownloadError``."""
    origin = strict_origin(url)
    if origin is None:
        raise LumaDownloadError(
            f"Refusing to download from {_short(url)}: not a plain http(s) URL "
            "(userinfo, backslashes, spaces or a bad port are not accepted)"
        )
    return origin


def refused_address(host: str, addresses: Iterable[str]) -> str | None:
    """The first loopback/private/link-local/reserved address among ``addresses``, if any."""
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return text
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            return str(address)
    return None


def redirect_target(current: str, location: Any) -> str:
    """The absolute URL a redirect points to (checked again before it is fetched)."""
    if not isinstance(location, str) or not location.strip():
        raise LumaDownloadError("Download redirect without a Location header")
    return urljoin(current, location.strip())


# ----------------------------------------------------------------------------- retries
class RateGate:
    """A back-off shared by every request of one hook: one 429 pauses them all.

    A batch submits from several threads through one hook; without this, each thread would
    learn about the rate limit on its own and keep the gateway saturated.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0
        self._lock = threading.Lock()
        #: How often a 429 closed the gate (for logs and tests).
        self.holds = 0

    def delay(self) -> float:
        """Seconds to wait before the next request (0 when the gate is open)."""
        return max(0.0, self._until - self._clock())

    def hold(self, seconds: float) -> None:
        """Close the gate for ``seconds`` from now (never shortens an earlier hold)."""
        with self._lock:
            self._until = max(self._until, self._clock() + min(max(seconds, 0.0), MAX_RETRY_AFTER))
            self.holds += 1


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures to retry and how long to wait; fed to tenacity's sync and async loops."""

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_wait: float = 1.0
    max_wait: float = 30.0

    def should_retry(self, request: Request, error: BaseException) -> bool:
        if not request.retry or isinstance(error, LumaResponseTooLargeError):
            return False
        if request.idempotent:
            return isinstance(error, (LumaRateLimitError, LumaServerError, LumaTransportError))
        # A submit: only where the gateway provably did not take the job.
        return (
            isinstance(error, LumaRateLimitError)
            or (isinstance(error, LumaServerError) and error.status == 503)
            or (isinstance(error, LumaTransportError) and not error.sent)
        )

    def wait_seconds(self, attempt: int, error: BaseException | None) -> float:
        hint = getattr(error, "retry_after", None)
        if isinstance(hint, (int, float)) and math.isfinite(hint):
            return float(hint)
        backoff = float(min(self.max_wait, self.initial_wait * 2 ** (attempt - 1)))
        return backoff / 2 + random.uniform(0, backoff / 2)  # jitter: spread a batch's retries

    def pause_for(self, error: BaseException) -> float:
        """How long a 429 pauses the other requests: the server's hint, else the shortest backoff."""
        hint = getattr(error, "retry_after", None)
        if isinstance(hint, (int, float)) and math.isfinite(hint):
            return float(hint)
        return self.initial_wait / 2

    def tenacity_kwargs(self, request: Request) -> dict[str, Any]:
        """Keyword arguments for ``tenacity.Retrying`` and ``tenacity.AsyncRetrying`` alike."""
        import tenacity

        def before_sleep(state: tenacity.RetryCallState) -> None:
            log.warning(
                "Luma %s attempt %d failed (%s); retrying in %.1fs",
                request.name,
                state.attempt_number,
                state.outcome.exception() if state.outcome else None,
                state.upcoming_sleep,
            )

        return dict(
            retry=tenacity.retry_if_exception(lambda e: self.should_retry(request, e)),
            wait=lambda state: self.wait_seconds(state.attempt_number, state.outcome.exception()),
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            before_sleep=before_sleep,
            reraise=True,
        )

    def final_error(self, request: Request, error: LumaError) -> LumaError:
        """After the last attempt: flag submits whose outcome is unknown."""
        if request.idempotent or not _may_have_been_accepted(error):
            return error
        return LumaAmbiguousSubmitError(
            f"Luma {request.name} outcome unknown ({error}). The gateway may have accepted the job and "
            "may charge for it, so it is not submitted again (no retry). Look for the prompt in the "
            "gateway's task list or dashboard; if the job is there, wait for it by id (LumaTaskSensor), "
            "otherwise clear the task to submit again."
        )


def _may_have_been_accepted(error: LumaError) -> bool:
    if isinstance(error, LumaTransportError):
        return error.sent
    return isinstance(error, LumaServerError) and error.status != 503
