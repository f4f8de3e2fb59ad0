"""Error bodies exactly as new-api-style gateways send them (reference §A.12 / §D).

Two envelopes exist in the wild and clients must cope with both:

* the OpenAI-style gateway envelope ``{"error": {"message", "type", "code"}}`` used by
  auth/quota/rate-limit middleware, whose message ends in ``(request id: …)``;
* the task-relay body ``{"code", "message", "data": null}`` used by task endpoints.
"""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime
from typing import Any

SATURATED = "当前分组上游负载已饱和，请稍后再试"  # noqa: RUF001 - the gateway's own Chinese text
INVALID_TOKEN = "无效的令牌"

_ALPHABET = string.ascii_letters + string.digits


def new_request_id() -> str:
    """A new-api style request id: a timestamp followed by random characters."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
    return stamp + "".join(secrets.choice(_ALPHABET) for _ in range(8))


def gateway_error(
    message: str, code: Any = "", *, type_: str = "new_api_error", param: Any = None
) -> dict[str, Any]:
    """The OpenAI-style envelope; ``param`` is only present when given (as real gateways vary)."""
    error: dict[str, Any] = {"message": f"{message} (request id: {new_request_id()})", "type": type_}
    if param is not None:
        error["param"] = param
    error["code"] = code
    return {"error": error}


def task_error(code: str, message: str | None = None) -> dict[str, Any]:
    """The new-api task-relay body ``{"code", "message", "data": null}``."""
    return {"code": code, "message": message if message is not None else code, "data": None}


def unauthorized() -> dict[str, Any]:
    return gateway_error(INVALID_TOKEN, "")


def quota_exhausted() -> dict[str, Any]:
    return gateway_error("user quota is not enough", "insufficient_user_quota", param="")


def rate_limited() -> dict[str, Any]:
    return gateway_error(SATURATED, None, param="")


def task_not_found() -> dict[str, Any]:
    return gateway_error("task not found", "task_not_exist")


def invalid_url(method: str, path: str) -> dict[str, Any]:
    """What new-api answers for a route it does not have."""
    return {
        "error": {
            "message": f"Invalid URL ({method} {path})",
            "type": "invalid_request_error",
            "param": "",
            "code": "",
        }
    }


def default_body_for_status(status: int) -> dict[str, Any]:
    """A plausible documented body for an injected fault status."""
    if status == 400:
        return task_error("invalid_request", "bad request")
    if status == 401:
        return unauthorized()
    if status == 403:
        return quota_exhausted()
    if status == 404:
        return task_not_found()
    if status == 429:
        return rate_limited()
    if status == 502:
        return gateway_error(
            f"bad response status code {status}",
            "bad_response_status_code",
            type_="upstream_error",
            param=str(status),
        )
    if status == 503:
        return gateway_error("当前分组 default 下对于模型 luma 无可用渠道", "model_not_found")
    if status == 504:
        return gateway_error(
            "upstream request timed out", "upstream_timeout", type_="upstream_error", param="504"
        )
    return gateway_error(
        f"upstream error: status {status}", "bad_response_status_code", type_="upstream_error"
    )
