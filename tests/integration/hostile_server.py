"""A hostile gateway: a real HTTP server on loopback that answers each route with whatever a test
scripts, down to the raw bytes (dripped bodies, lying headers, gzip bombs, bad redirects).

``hostile()`` starts one (``hostile(host="127.0.0.2")`` binds another loopback address, a
"different host" for origin and SSRF checks). Routes: ``server.on("GET", "/path", reply)``
where ``reply`` is a ``Reply`` or a callable ``(request, sock) -> None`` writing raw bytes. Every
request is recorded (method, path, headers, body) for assertions. No mocks: the provider's
requests and aiohttp clients talk to it over real sockets.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KEY = "sk-hostile-test-key-7f3a9c"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    """A canned answer; ``body`` may be bytes, str or JSON-able."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Send the body this many bytes at a time, sleeping ``drip_interval`` between pieces.
    drip: int = 0
    drip_interval: float = 0.0
    #: Seconds to wait before answering at all (a read timeout for the client).
    delay: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Handler = Callable[[Seen, socket.socket], None]
_REASONS = {
    200: "OK",
    201: "Created",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def send_reply(sock: socket.socket, reply: Reply) -> None:
    if reply.delay:
        time.sleep(reply.delay)
    body = reply.payload()
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Connection": "close",
        **reply.headers,
    }
    head = f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'X')}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if v is not None) + "\r\n"
    sock.sendall(head.encode("latin-1"))
    if not reply.drip:
        sock.sendall(body)
        return
    for start in range(0, len(body), reply.drip):
        sock.sendall(body[start : start + reply.drip])
        time.sleep(reply.drip_interval)


def stream_reply(
    size: int,
    *,
    status: int = 200,
    chunk: bytes = b" ",
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Handler:
    """``size`` bytes generated on the fly (never held in memory by the server)."""

    def handler(seen: Seen, sock: socket.socket) -> None:
        head = (
            f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {size}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            + "Connection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        piece = (chunk * (65536 // len(chunk) + 1))[:65536]
        sent = 0
        try:
            while sent < size:
                part = piece[: min(len(piece), size - sent)]
                sock.sendall(part)
                sent += len(part)
        except OSError:  # the client gave up, as it should
            pass

    return handler


def gzip_bomb(decoded_size: int) -> bytes:
    """A gzip body of a few KiB per MiB of zeros it expands to."""
    return gzip.compress(b"\0" * decoded_size, compresslevel=9)


class HostileServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.routes: dict[tuple[str, str], Reply | Handler | list[Reply | Handler]] = {}
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def on(self, method: str, path: str, *replies: Reply | Handler) -> HostileServer:
        """Answer ``method path`` with ``replies`` in turn (the last one repeats)."""
        self.routes[(method, path)] = list(replies)
        return self

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        return [
            s
            for s in self.seen
            if (method is None or s.method == method) and (path is None or s.path == path)
        ]

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            socket.create_connection((self.host, self.port), timeout=1).close()
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self._stop.is_set():
                conn.close()
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                seen = self._read_request(conn)
            except (OSError, ValueError):
                return
            if seen is None:
                return
            self.seen.append(seen)
            replies = self.routes.get((seen.method, seen.path.split("?", 1)[0]))
            if not replies:
                send_reply(conn, Reply(404, {"error": {"message": "Invalid URL"}}))
                return
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
            try:
                if isinstance(reply, Reply):
                    send_reply(conn, reply)
                else:
                    reply(seen, conn)
            except OSError:
                pass

    @staticmethod
    def _read_request(conn: socket.socket) -> Seen | None:
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
            if not data[:1].isalpha():  # e.g. a TLS ClientHello: answer in plain HTTP, like real servers
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return None
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return Seen(method, target, headers, body)


def generation(gen_id: str = "gen-ok-1", state: str = "completed", **fields: Any) -> dict[str, Any]:
    """A gateway-native generation object."""
    return {"id": gen_id, "state": state, "created_at": "2026-01-01T00:00:00Z", **fields}
