"""pytest fixtures for testing code against a local fake Luma gateway.

Opt-in: list it in the root ``conftest.py`` of your project::

    pytest_plugins = ["luma_provider.sandbox.pytest_plugin"]

It imports nothing heavy at module level: listing it does not slow down collection.

* ``luma_sandbox`` - a fresh, started :class:`~luma_provider.sandbox.LumaSandbox`
  on a free port (function scope);
* ``luma_sandbox_session`` - one sandbox for the whole session (call ``reset()``
  yourself between tests if needed);
* ``luma_sandbox_factory`` - ``factory(**config)`` starts extra sandboxes with any
  config (e.g. ``time_scale=0``); all are stopped after the test;
* ``luma_conn_env`` - sets ``AIRFLOW_CONN_LUMA_DEFAULT`` to the function-scoped
  sandbox and yields that sandbox.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from luma_provider.sandbox import LumaSandbox


@pytest.fixture
def luma_sandbox() -> Iterator[LumaSandbox]:
    """A started sandbox with default settings; stopped after the test."""
    from luma_provider.sandbox import LumaSandbox

    with LumaSandbox(port=0) as sandbox:
        yield sandbox


@pytest.fixture
def luma_sandbox_factory() -> Iterator[Callable[..., LumaSandbox]]:
    """``factory(**config)`` -> a started sandbox with that config, stopped after the test."""
    from luma_provider.sandbox import LumaSandbox

    started: list[LumaSandbox] = []

    def factory(**config: Any) -> LumaSandbox:
        sandbox = LumaSandbox(**{"port": 0, **config}).start()
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in started:
        sandbox.stop()


@pytest.fixture(scope="session")
def luma_sandbox_session() -> Iterator[LumaSandbox]:
    """One sandbox for the session; state carries over unless you ``reset()`` it."""
    from luma_provider.sandbox import LumaSandbox

    with LumaSandbox(port=0) as sandbox:
        yield sandbox


@pytest.fixture
def luma_conn_env(luma_sandbox: LumaSandbox, monkeypatch: pytest.MonkeyPatch) -> LumaSandbox:
    """Point Airflow's ``luma_default`` connection at the sandbox for this test."""
    monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", luma_sandbox.connection_json)
    return luma_sandbox
