"""Fixtures for the sandbox tests: real HTTP against a started sandbox, no mocks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from luma_provider.sandbox import LumaSandbox

KEY = "sandbox-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@contextmanager
def _cli_sandbox(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m luma_provider.sandbox --api-key cli-key *args`` on a free port: (process, URL).

    Stopped with SIGTERM on exit (killed if it hangs); its stdout stays readable afterwards.
    """
    port_file = tmp_path / "sandbox.url"
    command = [sys.executable, "-m", "luma_provider.sandbox", "--port", "0", "--port-file", str(port_file)]
    proc = subprocess.Popen(
        [*command, "--api-key", "cli-key", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "CLI sandbox did not start"
            time.sleep(0.05)
        yield proc, port_file.read_text().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def cli_sandbox_process(tmp_path: Path) -> Callable[..., Any]:
    """``with cli_sandbox_process(*cli_args) as (proc, url):`` the sandbox CLI in its own process."""
    return lambda *args: _cli_sandbox(tmp_path, *args)


@pytest.fixture
def sb() -> Iterator[LumaSandbox]:
    """A sandbox with short but observable phases: pending 0.2 s, processing 0.3 s."""
    with LumaSandbox(port=0, api_key=KEY, queue_seconds=0.2, process_seconds=0.3) as sandbox:
        yield sandbox


@pytest.fixture
def instant() -> Iterator[LumaSandbox]:
    """A sandbox whose generations are terminal as soon as they are created."""
    with LumaSandbox(port=0, api_key=KEY, time_scale=0) as sandbox:
        yield sandbox


@pytest.fixture
def api() -> Iterator[Callable[..., requests.Response]]:
    """``api(sandbox, method, path, json=...)``: an authenticated call with a short timeout."""
    with requests.Session() as session:

        def call(sandbox: LumaSandbox, method: str, path: str, **kwargs: Any) -> requests.Response:
            headers = {**AUTH, **kwargs.pop("headers", {})}
            return session.request(method, sandbox.url + path, headers=headers, timeout=10, **kwargs)

        yield call


@pytest.fixture
def submit(api: Callable[..., requests.Response]) -> Callable[..., str]:
    """``submit(sandbox, prompt, **body)``: submit a generation and return its id."""

    def call(sandbox: LumaSandbox, prompt: str = "cat dance", **body: Any) -> str:
        resp = api(sandbox, "POST", "/luma/generations", json={"user_prompt": prompt, **body})
        assert resp.status_code == 200, resp.text
        return resp.json()["id"]

    return call


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """``wait_for(predicate, timeout)``: poll until ``predicate()`` is truthy."""

    def call(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            time.sleep(0.05)

    return call


# --------------------------------------------------------------------------- official flavour


@pytest.fixture
def official_sb() -> Iterator[LumaSandbox]:
    """An official-flavour sandbox: queued 0.1 s, dreaming 0.3 s."""
    with LumaSandbox(
        port=0, api_key=KEY, api_flavour="official", queue_seconds=0.1, process_seconds=0.3
    ) as sandbox:
        yield sandbox


class CallbackReceiver:
    """A tiny real HTTP server that records the POSTs it gets and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.posts.append(
                        {
                            "path": self.path,
                            "content_type": self.headers.get("Content-Type"),
                            "body": json.loads(raw),
                            "time": time.monotonic(),
                        }
                    )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # keep the test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [post["body"] for post in self.posts]


@pytest.fixture
def callback_receiver() -> Iterator[Callable[..., CallbackReceiver]]:
    """``callback_receiver(status=200)``: start a receiver; all are shut down after the test."""
    started: list[CallbackReceiver] = []

    def start(status: int = 200) -> CallbackReceiver:
        receiver = CallbackReceiver(status)
        receiver.thread.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.server.shutdown()
        receiver.server.server_close()
