"""Unit tests: no socket, no Airflow metadata DB.

Reference payloads live in ``test_data/``. Anything that starts a server, talks HTTP or runs a
DAG belongs in ``tests/integration``; the guard below fails a unit test that tries.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import urllib3  # noqa: F401 - it probes IPv6 with a bind at import: done here, before the guard

TEST_DATA = Path(__file__).parent / "test_data"

# Fixtures of tests/conftest.py that build the metadata DB or start a sandbox.
INTEGRATION_FIXTURES = frozenset({"airflow_home", "run_dag", "gateway"})
_GUARDED = ("connect", "connect_ex", "bind")


class UnitTestUsedASocket(RuntimeError):
    """Not an OSError, so HTTP clients and retry loops do not turn it into a normal transport error."""


def load_fixture(name: str) -> Any:
    """Parsed JSON of ``tests/unit/test_data/<name>`` (the ``.json`` suffix is optional)."""
    path = TEST_DATA / (name if name.endswith(".json") else f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(name="load_fixture")
def load_fixture_fixture():
    return load_fixture


@contextmanager
def _no_sockets(item: pytest.Item) -> Iterator[None]:
    attempts: list[str] = []

    def guarded(name: str):
        def refuse(sock: socket.socket, address: Any, *args: Any) -> None:
            attempts.append(f"socket.{name}({address!r})")
            raise UnitTestUsedASocket(f"socket.{name}({address!r}) in a unit test")

        return refuse

    saved = {name: socket.socket.__dict__.get(name) for name in _GUARDED}
    for name in _GUARDED:
        setattr(socket.socket, name, guarded(name))
    try:
        yield
    finally:
        for name, original in saved.items():
            if original is None:
                delattr(socket.socket, name)
            else:
                setattr(socket.socket, name, original)
        # Fail on the attempt itself: code under test may swallow the exception or replace it
        # with its own (a retry loop, a server thread that "failed to start").
        if attempts:
            pytest.fail(
                f"{item.nodeid} tried {', '.join(attempts)}: a unit test opens no socket; "
                "move it to tests/integration",
                pytrace=False,
            )


# Hooks in this conftest only run for items under tests/unit. Wrapping every phase also covers
# the fixtures a unit test sets up, whatever their scope.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    used = INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if used:
        pytest.fail(
            f"{item.nodeid} uses {sorted(used)} (metadata DB / sandbox); move it to tests/integration",
            pytrace=False,
        )
    with _no_sockets(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _no_sockets(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if nextitem is None:  # the last test also tears down session fixtures of other folders' tests
        return (yield)
    with _no_sockets(item):
        return (yield)
