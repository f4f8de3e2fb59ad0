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
import json
import logging
import random
import re
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from luma_provider.exceptions import (
    LumaAmbiguousSubmitError,
    LumaAPIError,
    LumaAuthError,
    LumaBadRequestError,
    LumaConfigError,
    LumaError,
    LumaNotFoundError,
    LumaRateLimitError,
    LumaServerError,
    LumaTransportError,
    LumaValidationError,
)
from luma_provider.models import LumaGeneration, LumaResponseShapeError, parse_generation, parse_generations

log = logging.getLogger(__name__)

T = TypeVar("T")

ASPECT_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16")
# User-facing (official) model names -> the gateway's ``model_name`` values (§A.3, §C).
MODELS = {"ray-2": "ray-v2", "ray-1-6": "ray-v1", "ray-v1": "ray-v1", "ray-v2": "ray-v2", "ray-v3": "ray-v3"}
MAX_PROMPT_LENGTH = 5000
DEFAULT_CONN_ID = "luma_default"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_BATCH_SIZE = 100
MAX_RETRY_AFTER = 120.0
# A syntactically valid id that no gateway will have: a free, authenticated probe.
PROBE_ID = "00000000-0000-0000-0000-000000000000"

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_DATA_URI_RE = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,(?P<data>.*)$", re.DOTALL)
_RESERVED_FIELDS = {"user_prompt", "aspect_ratio", "loop", "expand_prompt", "image_url", "image_end_url", "model_name"}


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook needs from an Airflow ``luma`` connection, validated once."""

    base_url: str
    api_key: str | None = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    batch_size: int = DEFAULT_BATCH_SIZE
    path_prefix: str = ""
    verify_ssl: bool = True

    def url(self, path: str) -> str:
        return f"{self.base_url}{self.path_prefix}{path}"

    def auth_headers_for(self, url: str) -> dict[str, str]:
        """Bearer header, but only for the gateway's own origin: never leak the key to a CDN."""
        if not self.api_key or _origin(url) != _origin(self.base_url):
            return {}
        return {"Authorization": f"Bearer {self.api_key}"}

    def redact(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key and text else text


def settings_from_connection(conn_id: str, conn_type: str | None, host: str | None, password: str | None,
                             port: int | None, extra: Mapping[str, Any]) -> ConnectionSettings:
    """Validate an Airflow connection's fields; the message names the field that is wrong."""
    if conn_type and conn_type not in ("luma", "http"):
        raise LumaConfigError(f"Connection {conn_id!r} has conn_type {conn_type!r}; expected 'luma'.")
    host = (host or "").strip().rstrip("/")
    if not host:
        raise LumaConfigError(f"Connection {conn_id!r} has no host; set it to the gateway base URL, "
                              "e.g. https://gateway.example")
    if "://" not in host:
        host = f"https://{host}"
    if urlsplit(host).scheme not in ("http", "https"):
        raise LumaConfigError(f"Connection {conn_id!r}: host must be an http(s) URL, got scheme "
                              f"{urlsplit(host).scheme!r}")
    if host.endswith("/luma"):  # a common paste error: the routes already start with /luma
        host = host[: -len("/luma")]
    parts = urlsplit(host)
    try:
        parts.port
    except ValueError:
        raise LumaConfigError(f"Connection {conn_id!r}: host {host!r} has an invalid port")
    if port and not parts.port:
        host = parts._replace(netloc=f"{parts.netloc}:{port}").geturl()

    def opt(name: str, cast: Callable[[Any], T], default: T, minimum: float | None = None) -> T:
        value = extra.get(name, extra.get(f"extra__luma__{name}"))
        if value in (None, ""):
            return default
        try:
            result = cast(value)
        except (TypeError, ValueError):
            raise LumaConfigError(f"Connection {conn_id!r}: extra field {name!r} has invalid value {value!r}")
        if minimum is not None and result < minimum:  # type: ignore[operator]
            raise LumaConfigError(f"Connection {conn_id!r}: extra field {name!r} must be >= {minimum}, got {value!r}")
        return result

    prefix = opt("path_prefix", str, "").strip().rstrip("/")
    return ConnectionSettings(
        base_url=host,
        api_key=password or None,
        timeout=opt("timeout", float, DEFAULT_TIMEOUT, minimum=0.001),
        max_retries=opt("max_retries", int, DEFAULT_MAX_RETRIES, minimum=0),
        batch_size=opt("batch_size", int, DEFAULT_BATCH_SIZE, minimum=1),
        path_prefix=f"/{prefix.lstrip('/')}" if prefix else "",
        verify_ssl=opt("verify_ssl", _to_bool, True),
    )


# ----------------------------------------------------------------------------- validation
def validate_generation_id(generation_id: Any, field_name: str = "generation_id") -> str:
    if not isinstance(generation_id, str) or not _ID_RE.match(generation_id.strip()):
        raise LumaValidationError(
            field_name, f"expected a Luma generation id (letters, digits, '-', '_', '.', ':'), got {generation_id!r}"
        )
    return generation_id.strip()


def validate_prompt(prompt: Any, field_name: str = "prompt") -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise LumaValidationError(field_name, "must be a non-empty string")
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise LumaValidationError(field_name, f"is {len(prompt)} characters; the maximum is {MAX_PROMPT_LENGTH}")
    return prompt.strip()


def validate_image_url(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LumaValidationError(field_name, "must be an http(s) URL or a data:image/...;base64, URI")
    value = value.strip()
    if value.startswith("data:"):
        match = _DATA_URI_RE.match(value)
        if not match:
            raise LumaValidationError(field_name, "data URIs must look like data:image/<format>;base64,<data>")
        data = re.sub(r"\s+", "", match["data"])
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise LumaValidationError(field_name, "the data URI does not contain valid base64")
        if not decoded:
            raise LumaValidationError(field_name, "the data URI holds no image data")
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LumaValidationError(
            field_name, f"must be an http(s) URL or a data:image/...;base64, URI, got scheme {parts.scheme or '(none)'!r}"
        )
    return value


def build_generation_body(
    prompt: Any,
    *,
    aspect_ratio: str | None = None,
    loop: Any = None,
    expand_prompt: Any = None,
    image_url: str | None = None,
    image_end_url: str | None = None,
    model: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate the options of a submit/extend and map them to the gateway's JSON body."""
    body: dict[str, Any] = {"user_prompt": validate_prompt(prompt)}
    if aspect_ratio not in (None, ""):
        if aspect_ratio not in ASPECT_RATIOS:
            raise LumaValidationError("aspect_ratio", f"{aspect_ratio!r} is not one of {', '.join(ASPECT_RATIOS)}")
        body["aspect_ratio"] = aspect_ratio
    for name, value in (("loop", loop), ("expand_prompt", expand_prompt)):
        if value is not None:
            body[name] = _bool_field(name, value)
    for name, value in (("image_url", image_url), ("image_end_url", image_end_url)):
        if value not in (None, ""):
            body[name] = validate_image_url(value, name)
    if model not in (None, ""):
        if model not in MODELS:
            raise LumaValidationError("model", f"{model!r} is not one of {', '.join(MODELS)}")
        body["model_name"] = MODELS[model]
    for key, value in (extra or {}).items():
        if not isinstance(key, str):
            raise LumaValidationError("extra", f"keys must be strings, got {key!r}")
        if key in _RESERVED_FIELDS:
            raise LumaValidationError("extra", f"{key!r} is set through its own parameter, not extra")
        body[key] = value
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise LumaValidationError("extra", f"must be JSON-serializable, without NaN or Infinity ({err})")
    return body


def _bool_field(name: str, value: Any) -> bool:
    try:
        return _to_bool(value)
    except ValueError:
        raise LumaValidationError(name, f"must be true or false, got {value!r}")


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


Flow = Generator[Request, Any, T]


def submit_flow(body: dict[str, Any]) -> Flow[LumaGeneration]:
    return (yield Request("submit", "POST", "/luma/generations", body, parse_generation, idempotent=False))


def extend_flow(generation_id: str, body: dict[str, Any]) -> Flow[LumaGeneration]:
    path = f"/luma/generations/{generation_id}/extend"
    return (yield Request("extend", "POST", path, body, parse_generation, idempotent=False))


def get_flow(generation_id: str) -> Flow[LumaGeneration]:
    return (yield Request("get", "GET", f"/luma/generations/{generation_id}", parse=parse_generation))


@dataclass
class BatchSupport:
    """Remembers, per hook, whether the gateway has ``POST /luma/tasks`` (None = not yet known)."""

    available: bool | None = None


def get_many_flow(ids: Iterable[str], batch_size: int, support: BatchSupport, *,
                  skip_missing: bool = False) -> Flow[list[LumaGeneration]]:
    """Batch status in chunks via ``/luma/tasks``; single GETs for ids it lacks or when it is absent.

    :param skip_missing: leave unknown ids out of the result instead of raising
        ``LumaNotFoundError`` (the shared poller serves many triggers from one call).
    """
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
                log.info("Gateway has no batch status route (HTTP %s); using one GET per generation.", err.status)
                support.available = False
        for gen_id in chunk:
            if gen_id not in found:
                try:
                    found[gen_id] = yield from get_flow(gen_id)
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
def decode(request: Request, status: int, headers: Mapping[str, str], text: str,
           settings: ConnectionSettings) -> Any:
    """Raw HTTP answer -> parsed result of ``request.parse``, or the matching ``LumaError``."""
    if status >= 400:
        raise error_for_status(request, status, headers, text, settings)
    if not text.strip():
        raise LumaTransportError(f"{request.method} {request.path}: HTTP {status} with an empty body")
    try:
        payload = json.loads(text)
    except ValueError:
        raise LumaTransportError(
            f"{request.method} {request.path}: HTTP {status} body is not JSON: {_excerpt(text, settings)!r}"
        )
    _raise_for_error_envelope(request, status, payload, settings)
    try:
        return request.parse(payload)
    except (LumaResponseShapeError, KeyError, TypeError) as err:
        raise LumaTransportError(
            f"{request.method} {request.path}: unexpected response shape ({err}): {_excerpt(text, settings)!r}"
        )


def _raise_for_error_envelope(request: Request, status: int, payload: Any, settings: ConnectionSettings) -> None:
    # Some new-api forks answer 200 with an error envelope instead of an error status.
    if not isinstance(payload, dict) or "id" in payload:
        return
    code = payload.get("code")
    if isinstance(payload.get("error"), dict) or (
        isinstance(code, str) and code not in ("success", "") and payload.get("data") is None
    ):
        message, err_code = error_message(payload, "")
        cls = LumaNotFoundError if err_code == "task_not_exist" else LumaAPIError
        raise cls(status, settings.redact(message), code=err_code, method=request.method, path=request.path)


def error_for_status(request: Request, status: int, headers: Mapping[str, str], text: str,
                     settings: ConnectionSettings) -> LumaAPIError:
    try:
        payload = json.loads(text) if text.strip() else None
    except ValueError:
        payload = None
    message, code = error_message(payload, _excerpt(text, settings) or "(empty body)")
    kwargs = dict(code=code, method=request.method, path=request.path)
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
    return message, str(code) if code not in (None, "", 0) else None


def _validation_detail(detail: Any) -> str | None:
    # FastAPI 422: {"detail": [{"loc": [...], "msg": "..."}]}
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare here, fall back to our own backoff


def _excerpt(text: str, settings: ConnectionSettings, limit: int = 200) -> str:
    text = settings.redact(text.strip())
    return text if len(text) <= limit else f"{text[:limit]}..."


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)


# ----------------------------------------------------------------------------- retries
@dataclass(frozen=True)
class RetryPolicy:
    """Which failures to retry and how long to wait; fed to tenacity's sync and async loops."""

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_wait: float = 1.0
    max_wait: float = 30.0

    def should_retry(self, request: Request, error: BaseException) -> bool:
        if not request.retry:
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
        if hint is not None:
            return hint
        backoff = min(self.max_wait, self.initial_wait * 2 ** (attempt - 1))
        return backoff / 2 + random.uniform(0, backoff / 2)  # jitter: spread a batch's retries

    def tenacity_kwargs(self, request: Request) -> dict[str, Any]:
        """Keyword arguments for ``tenacity.Retrying`` and ``tenacity.AsyncRetrying`` alike."""
        import tenacity

        def before_sleep(state: tenacity.RetryCallState) -> None:
            log.warning(
                "Luma %s attempt %d failed (%s); retrying in %.1fs",
                request.name, state.attempt_number, state.outcome.exception(), state.upcoming_sleep,
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
            "may charge for it: it was NOT resubmitted automatically. Check the gateway's task list "
            "before retrying, or use an idempotency_key so a retry can find the recorded generation."
        )


def _may_have_been_accepted(error: LumaError) -> bool:
    if isinstance(error, LumaTransportError):
        return error.sent
    return isinstance(error, LumaServerError) and error.status != 503
