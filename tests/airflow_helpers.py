"""Run tiny DAGs for real with ``dag.test()`` against a throwaway metadata DB.

Why this shape (Airflow 3.3.2):

* ``dag.test()`` needs a migrated metadata DB **and** the DAG in a bundle: it syncs the
  ``dags-folder`` bundle and refuses a DAG that is not serialized from a file there
  ("Cannot create DagRun ... because the dag is not serialized"). So every test DAG is
  written as a ``.py`` file into a temporary dags folder and imported from there.
* By the time a test module is collected, ``airflow`` is usually already imported (the hook
  tests import it), so setting ``AIRFLOW_HOME`` is too late. Airflow's config parser reads
  ``AIRFLOW__*`` env vars on every ``conf.get``, so we set them and re-run
  ``settings.configure_vars()`` + ``settings.configure_orm()``; ``resetdb()`` then builds the
  schema in a few seconds. ``restore_airflow`` undoes it at session end.
* Tasks run in-process (``run_task_in_process``) and triggers run inline in the same
  process; their logs go to stdout through structlog, so tests read them with ``capfd``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

_ENV_KEYS = (
    "AIRFLOW_HOME",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__UNIT_TEST_MODE",
)


def configure_airflow(home: Path) -> dict[str, str | None]:
    """Point this process' Airflow at a fresh sqlite DB + dags folder under ``home``.

    Returns the previous env values for ``restore_airflow``.
    """
    previous = {k: os.environ.get(k) for k in _ENV_KEYS}
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
    )
    from airflow import settings
    from airflow.utils import db

    settings.configure_vars()
    settings.configure_orm()
    db.resetdb()
    return previous


def restore_airflow(previous: dict[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    from airflow import settings

    settings.dispose_orm()
    settings.configure_vars()
    settings.configure_orm()


@dataclass
class TIResult:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    rendered_map_index: str | None
    xcom: dict[str, Any] = field(default_factory=dict)


@dataclass
class DagResult:
    dag_id: str
    run_id: str
    state: str
    tis: dict[tuple[str, int], TIResult]
    log: str

    def ti(self, task_id: str, map_index: int = -1) -> TIResult:
        return self.tis[(task_id, map_index)]

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        return self.tis[(task_id, map_index)].xcom.get(key)

    def mapped(self, task_id: str) -> list[TIResult]:
        return sorted((t for (tid, _), t in self.tis.items() if tid == task_id), key=lambda t: t.map_index)


def read_output(capfd: Any, capman: Any = None) -> str:
    """Everything written since the last call, whichever stream a logger holds.

    Loggers created before the test (stdlib handlers configured at ``import airflow``) still
    hold pytest's *session* capture stream, not ``capfd``'s: read both, or lines go missing.
    """
    out, err = capfd.readouterr()
    text = out + err
    if capman is not None:
        try:
            glob = capman.read_global_capture()
            text += glob.out + glob.err
        except Exception:  # -s / no global capture
            pass
    return text


class DagRunner:
    """Write a DAG file into the dags folder, import it and run ``dag.test()`` on it."""

    def __init__(self, dags_folder: Path, capfd: Any, capman: Any = None) -> None:
        self.dags_folder = dags_folder
        self.capfd = capfd
        self.capman = capman
        self.written: list[Path] = []

    def run(
        self, body: str, *, dag_id: str | None = None, run_conf: dict[str, Any] | None = None
    ) -> DagResult:
        """``body`` is the inside of ``with DAG(...) as dag:`` (imports of the provider are given)."""
        dag_id = dag_id or f"luma_test_{uuid.uuid4().hex[:10]}"
        source = (
            _HEADER.format(dag_id=dag_id) + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"
        )
        path = self.dags_folder / f"{dag_id}.py"
        path.write_text(source, encoding="utf-8")
        self.written.append(path)
        spec = importlib.util.spec_from_file_location(f"luma_test_dag_{dag_id}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        read_output(self.capfd, self.capman)  # drop earlier output
        dag_run = module.dag.test(run_conf=run_conf)
        log = read_output(self.capfd, self.capman)
        sys.stdout.write(log)  # shown by pytest if the test fails
        return _collect(dag_id, dag_run, log)

    def cleanup(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)


_HEADER = """\
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task
from luma_provider.operators.luma import LumaDownloadVideoOperator, LumaGenerateOperator
from luma_provider.sensors.luma import LumaTaskSensor

with DAG(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         catchup=False) as dag:
"""


def _collect(dag_id: str, dag_run: Any, log: str) -> DagResult:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dag_run.run_id)
        ).all()
        results = {
            (ti.task_id, ti.map_index): TIResult(
                ti.task_id,
                ti.map_index,
                None if ti.state is None else str(ti.state.value if hasattr(ti.state, "value") else ti.state),
                ti.try_number,
                ti.rendered_map_index,
            )
            for ti in tis
        }
        rows = session.scalars(
            select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == dag_run.run_id)
        ).all()
        for row in rows:
            target = results.get((row.task_id, row.map_index))
            if target is not None:
                target.xcom[row.key] = XComModel.deserialize_value(row)
        state = dag_run.state
    return DagResult(dag_id, dag_run.run_id, str(getattr(state, "value", state)), results, log)


# ----------------------------------------------------------------------------- pytest fixtures
# Reference-counted for the ``airflow_home`` fixture of tests/conftest.py.
_configured: dict[str, Any] = {"users": 0, "home": None, "previous": None}


def acquire_airflow(tmp_path_factory: Any) -> Path:
    if _configured["home"] is None:
        home = tmp_path_factory.mktemp("airflow_home")
        _configured["previous"] = configure_airflow(home)
        _configured["home"] = home
    _configured["users"] += 1
    return _configured["home"]


def release_airflow() -> None:
    _configured["users"] -= 1
    if _configured["users"] == 0 and _configured["home"] is not None:
        restore_airflow(_configured["previous"])
        _configured["home"] = None


SANDBOX_KEY = "sk-dag-tests-key-0001"


def connection_json(url: str, key: str | None = None, **extra: Any) -> str:
    """A ``luma`` connection as JSON, for ``AIRFLOW_CONN_<ID>``: ``url`` as host, ``key`` as
    password (left out when None), ``extra`` as the connection's extras."""
    conn: dict[str, Any] = {"conn_type": "luma", "host": url, "extra": extra}
    if key is not None:
        conn["password"] = key
    return json.dumps(conn)


def json_leaves(value: Any) -> list[Any]:
    """Every key and scalar of a JSON-like value, depth first."""
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in [k, *json_leaves(v)]]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in json_leaves(v)]
    return [value]


class _Gallery(HTMLParser):
    """Collects every ``<video src poster>`` of a gallery page."""

    def __init__(self) -> None:
        super().__init__()
        self.videos: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "video":
            self.videos.append(dict(attrs))


def parse_gallery(path: Path) -> list[dict[str, str | None]]:
    """The ``<video>`` tags of a gallery page, as attribute dicts."""
    parser = _Gallery()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.videos
