"""Fixtures for running the example DAGs under ``airflow dags test`` against the Luma sandbox.

* ``airflow_home`` (session): one migrated SQLite ``AIRFLOW_HOME`` in tmp, shared by every run;
* ``sandbox`` (function): a fresh in-process ``LumaSandbox`` (served from a thread), so
  ``stats()["submissions"]`` counts exactly one DAG run's submissions;
* ``official_sandbox`` (function): the same, speaking Luma's official API (``api_flavour="official"``);
* ``dags_test``: ``dags_test(dag_id, *args, env=...)`` runs ``airflow dags test`` in a subprocess
  wired to that home and sandbox, and returns a ``DagTestRun`` (exit code, output, out dir);
  ``official_dags_test`` does the same against ``official_sandbox``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
SANDBOX_KEY = "system-test-key-0123456789"
RUN_TIMEOUT = 180


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without Airflow settings, pointed at ``home`` and ``dags/``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "LUMA_")) and k != "AIRFLOW_CONFIG"
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def write_prompt_file(path: Path, prompts: list[dict[str, Any]]) -> Path:
    """A YAML prompts file (``luma_provider.prompts`` format)."""
    import yaml

    path.write_text(yaml.safe_dump(prompts, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airflow_home")
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=airflow_env(home),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return home


@pytest.fixture
def sandbox() -> Iterator[Any]:
    from luma_provider.sandbox import LumaSandbox

    # Short but real timings: every generation is still pending right after submit, so the
    # sensor must defer, and the whole batch finishes in ~2 s.
    with LumaSandbox(port=0, api_key=SANDBOX_KEY, queue_seconds=0.5, process_seconds=1.0) as sb:
        yield sb


@pytest.fixture
def official_sandbox() -> Iterator[Any]:
    from luma_provider.sandbox import LumaSandbox

    with LumaSandbox(
        port=0, api_key=SANDBOX_KEY, api_flavour="official", queue_seconds=0.5, process_seconds=1.0
    ) as sb:
        yield sb


@dataclass
class DagTestRun:
    returncode: int
    output: str
    out_root: Path

    def task_log(self, task_id: str, map_index: int = -1) -> str:
        """The output lines of one task instance (``airflow dags test`` logs tasks inline)."""
        start = f"[DAG TEST] starting task_id={task_id} map_index={map_index}"
        end = f"[DAG TEST] end task task_id={task_id} map_index={map_index}"
        assert start in self.output, f"{task_id}[{map_index}] never started"
        section = self.output.split(start, 1)[1]
        return section.split(end, 1)[0]


def _dags_test_runner(airflow_home: Path, sandbox: Any, tmp_path: Path):
    def run(dag_id: str, *args: str, conf: dict[str, Any] | None = None, **env: str) -> DagTestRun:
        out_root = tmp_path / "output"
        environment = airflow_env(
            airflow_home,
            AIRFLOW_CONN_LUMA_DEFAULT=sandbox.connection_json,
            LUMA_POLL_INTERVAL="1",
            LUMA_OUTPUT_ROOT=f"file://{out_root}",
            **env,
        )
        cmd = [sys.executable, "-m", "airflow", "dags", "test", dag_id, *args]
        if conf is not None:
            cmd += ["-c", json.dumps(conf)]
        proc = subprocess.run(
            cmd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=RUN_TIMEOUT,
            cwd=tmp_path,
        )
        (tmp_path / f"{dag_id}.log").write_text(proc.stdout)  # kept for debugging failures
        return DagTestRun(proc.returncode, proc.stdout, out_root)

    return run


@pytest.fixture
def dags_test(airflow_home: Path, sandbox: Any, tmp_path: Path):
    """Run ``airflow dags test`` for an example DAG against this test's sandbox."""
    return _dags_test_runner(airflow_home, sandbox, tmp_path)


@pytest.fixture
def official_dags_test(airflow_home: Path, official_sandbox: Any, tmp_path: Path):
    """Run ``airflow dags test`` for an example DAG against this test's official-flavour sandbox."""
    return _dags_test_runner(airflow_home, official_sandbox, tmp_path)
