"""Fixtures of the integration tests: the hostile gateway (``hostile_server.py``), a hook on it, the
API flavour matrix (``flavour``, ``dag_sandbox``, the ``gateway_only`` marker), and a real S3 API
(``moto_server``: moto's standalone server as a process)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_helpers import SANDBOX_KEY, connection_json

from luma_provider.sandbox import LumaSandbox

sys.path.insert(0, str(Path(__file__).resolve().parent))  # hostile_server, flavours: importable by the tests
from flavours import FLAVOURS, conn_extra
from hostile_server import KEY, HostileServer

# ----------------------------------------------------------------------------- flavour matrix


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gateway_only(reason): the test is about the gateway dialect (/luma/...) only; it runs once, "
        "in the gateway flavour, instead of once per flavour",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses ``flavour`` (directly or through a sandbox fixture) runs once per
    flavour, ids ``[gateway]`` / ``[official]``; ``gateway_only`` tests run once, as gateway."""
    if "flavour" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("gateway_only")
    if marker is None:
        metafunc.parametrize("flavour", FLAVOURS, indirect=True)
    elif not (marker.args and isinstance(marker.args[0], str) and marker.args[0].strip()):
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: @pytest.mark.gateway_only needs a reason")


@pytest.fixture
def flavour(request: pytest.FixtureRequest) -> str:
    """The API dialect of the sandbox and the connection: ``gateway`` or ``official``.

    Parametrized by ``pytest_generate_tests`` above (``gateway`` alone for ``gateway_only`` tests).
    """
    return str(getattr(request, "param", "gateway"))


@pytest.fixture
def dag_sandbox(flavour: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LumaSandbox]:
    """The DAG tests' sandbox in ``flavour``: jobs finish in 0.5 s, wired to ``luma_default``,
    ``max_retries`` 2 and downloads from its loopback CDN allowed (the root ``gateway`` fixture,
    in either dialect)."""
    with LumaSandbox(
        port=0, api_key=SANDBOX_KEY, api_flavour=flavour, queue_seconds=0.2, process_seconds=0.3
    ) as sb:
        conn = connection_json(
            sb.url, key=sb.api_key, max_retries=2, allow_private_downloads=True, **conn_extra(sb)
        )
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", conn)
        yield sb


# ----------------------------------------------------------------------------- hostile gateway


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileServer]]:
    """``hostile(host="127.0.0.1")`` -> a started ``HostileServer``; all are stopped after the test."""
    servers: list[HostileServer] = []

    def start(host: str = "127.0.0.1") -> HostileServer:
        server = HostileServer(host)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``connect(url, key=KEY, **extra)``: point ``luma_default`` at ``url`` and return a new hook.

    ``max_retries`` 0 and a 5 s timeout unless ``extra`` says otherwise: hostile cases stay fast.
    """
    from luma_provider.hooks.luma import LumaHook

    def make(url: str, key: str | None = KEY, **extra: Any) -> LumaHook:
        extras = {"max_retries": 0, "timeout": 5, **extra}
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", connection_json(url, key=key, **extras))
        return LumaHook()

    return make


# ----------------------------------------------------------------------------- a real S3 API


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _start_moto(log: Any) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m moto.server`` on a free port; returns once it answers HTTP."""
    for _ in range(3):  # the port picked may be taken before the server binds it
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                    return proc, url
                except urllib.error.HTTPError:
                    return proc, url  # any HTTP answer: it is serving
                except OSError:
                    time.sleep(0.1)
        except BaseException:
            _stop(proc)
            raise
        _stop(proc)
    raise RuntimeError("moto's S3 server did not start; see its log")


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto S3 server process, stopped (even on failure) after the module."""
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with log_path.open("wb") as log:
        try:
            proc, url = _start_moto(log)
        except RuntimeError as err:
            raise RuntimeError(f"{err}: {log_path.read_text(errors='replace')[-2000:]}") from None
        try:
            yield url
        finally:
            _stop(proc)
