"""Turn a fault rule into a broken HTTP exchange (aiohttp side of :mod:`.faults`)."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from luma_provider.sandbox import errors
from luma_provider.sandbox.faults import WEIRD_STATE, FaultRule


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # ensure_ascii=False: gateways send their Chinese error messages as raw UTF-8.
    return web.Response(
        text=json.dumps(data, ensure_ascii=False),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def abort_connection(request: web.BaseRequest, *, hard: bool = True) -> None:
    """Close the client connection; ``hard`` sends a TCP RST instead of a polite FIN."""
    transport = request.transport
    if transport is None:
        return
    if hard:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # linger 0 => RST, the closest thing to "connection reset by peer"
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


async def send_partial(request: web.BaseRequest, source: web.Response) -> web.StreamResponse:
    """Announce the full Content-Length, send half the body, then close the connection."""
    body = source.body if isinstance(source.body, bytes) else b""
    resp = web.StreamResponse(status=source.status)
    resp.content_type = source.content_type
    resp.content_length = len(body)
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    abort_connection(request, hard=False)
    return resp


def html_page(status: int) -> web.Response:
    if status == 200:
        title, text = "Just a moment...", "Checking your browser before accessing the API."
    else:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        title, text = f"{status} {phrase}", f"{status} {phrase}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{text}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return web.Response(text=page, status=status, content_type="text/html")


def replace_states(data: Any) -> Any:
    """Swap every state-like field for an unknown value, whatever the response shape."""
    if isinstance(data, list):
        return [replace_states(item) for item in data]
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key in ("state", "task_status", "status") and isinstance(value, str):
                out[key] = WEIRD_STATE
            else:
                out[key] = replace_states(value)
        return out
    return data


async def apply_fault(
    request: web.Request,
    rule: FaultRule,
    normal: web.Response | None,
    *,
    default_body: Callable[[int], Any] = errors.default_body_for_status,
) -> web.StreamResponse:
    """Build the faulty answer; ``normal`` is the real response (``None`` if not processed).

    ``default_body(status)`` is the body of a ``status`` fault that gives none (the gateway's
    envelopes by default, ``{"detail": ...}`` in the official flavour).
    """
    kind = rule.kind
    if kind == "status":
        body = rule.body if rule.body is not None else default_body(int(rule.status or 500))
        if isinstance(body, str):
            return web.Response(text=body, status=int(rule.status or 500), headers=rule.headers)
        return json_response(body, status=int(rule.status or 500), headers=rule.headers)
    if kind == "reset":
        abort_connection(request, hard=True)
        return web.Response()  # never sent: aiohttp sees the closed transport and gives up quietly
    if kind == "html":
        resp = html_page(int(rule.status or 200))
        resp.headers.update(rule.headers)
        return resp
    if kind == "empty":
        return web.Response(body=b"", status=int(rule.status or 200), content_type="application/json")
    source = (
        normal if normal is not None else json_response({"code": "placeholder", "message": "", "data": None})
    )
    if kind in ("reset_mid_body", "short_body"):
        return await send_partial(request, source)
    if kind == "truncated_json":
        body = source.body if isinstance(source.body, bytes) else b"{}"
        return web.Response(body=body[: len(body) // 2], status=200, content_type="application/json")
    if (
        kind == "unknown_state"
        and isinstance(source.body, bytes)
        and source.content_type == "application/json"
    ):
        return json_response(replace_states(json.loads(source.body)), status=source.status)
    return source  # delay (already slept) and anything that does not apply to this response
