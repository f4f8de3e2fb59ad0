"""DAG-level fixtures shared by every test folder: a throwaway Airflow metadata DB, a DAG runner
(``dag.test()`` on a DAG file written for the test) and a sandbox gateway, built only when asked."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from luma_provider.sandbox import LumaSandbox

# --import-mode=importlib puts no test folder on sys.path: make tests/airflow_helpers.py importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import airflow_helpers

# The sandbox fixtures (luma_sandbox, luma_sandbox_factory, ...) are opt-in, as for users;
# pytester runs the opt-in check on a throwaway project.
pytest_plugins = ["luma_provider.sandbox.pytest_plugin", "pytester"]


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """AIRFLOW_HOME with a fresh sqlite metadata DB (built once per session, ~2 s)."""
    home = airflow_helpers.acquire_airflow(tmp_path_factory)
    yield home
    airflow_helpers.release_airflow()


@pytest.fixture
def run_dag(
    airflow_home: Path, capfd: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> Iterator[airflow_helpers.DagRunner]:
    """``run_dag.run(body)`` -> ``DagResult`` (states, try numbers, XComs from the DB, full log text)."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    runner = airflow_helpers.DagRunner(airflow_home / "dags", capfd, capman)
    yield runner
    runner.cleanup()


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[LumaSandbox]:
    """A sandbox whose jobs finish in 0.5 s, wired to ``luma_default``; max_retries kept small and
    downloads from its loopback CDN allowed."""
    with LumaSandbox(
        port=0, api_key=airflow_helpers.SANDBOX_KEY, queue_seconds=0.2, process_seconds=0.3
    ) as sb:
        conn = airflow_helpers.connection_json(
            sb.url, key=sb.api_key, max_retries=2, allow_private_downloads=True
        )
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", conn)
        yield sb
