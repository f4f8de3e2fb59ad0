"""Shared helpers for the unit tests: reference payloads in ``test_data/``, and DAG-level fixtures
(a throwaway Airflow metadata DB, a DAG runner, a sandbox gateway) built only when a test asks."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TEST_DATA = Path(__file__).parent / "test_data"


def load_fixture(name: str) -> Any:
    """Parsed JSON of ``tests/unit/test_data/<name>`` (the ``.json`` suffix is optional)."""
    path = TEST_DATA / (name if name.endswith(".json") else f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))


def fixture_text(name: str) -> str:
    """Raw text of a fixture, for tests that feed bodies to ``decode``/``error_for_status``."""
    path = TEST_DATA / (name if name.endswith(".json") else f"{name}.json")
    return path.read_text(encoding="utf-8")


def all_fixture_names(prefix: str = "") -> list[str]:
    return sorted(p.stem for p in TEST_DATA.glob(f"{prefix}*.json"))


@pytest.fixture(name="load_fixture")
def load_fixture_fixture():
    """The ``load_fixture`` helper as a fixture, for tests that prefer injection."""
    return load_fixture


# --- DAG-level fixtures (operators, sensors) ---------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/unit: the shared helper module
import airflow_helpers  # noqa: E402

from luma_provider.sandbox import LumaSandbox  # noqa: E402


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
    """A sandbox whose jobs finish in 0.5 s, wired to ``luma_default``; max_retries kept small."""
    import json

    with LumaSandbox(port=0, api_key=airflow_helpers.SANDBOX_KEY, queue_seconds=0.2, process_seconds=0.3) as sb:
        conn = {"conn_type": "luma", "host": sb.url, "password": sb.api_key, "extra": {"max_retries": 2}}
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", json.dumps(conn))
        yield sb
