"""Shared machinery of the e2e tests: a real Airflow 3.3 (api-server, scheduler, dag-processor,
triggerer; LocalExecutor on SQLite) in a temporary AIRFLOW_HOME, every component a subprocess in
its own process group, torn down by :func:`airflow_stack` even when the test fails.

Importable as ``e2e_stack`` (``tests/e2e/conftest.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AIRFLOW_BIN = Path(sys.executable).parent / "airflow"


# --------------------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        left = max(0.0, self.end - time.monotonic())
        return left if cap is None else min(left, cap)


def timeline(prefix: str = "e2e", keep: list[str] | None = None) -> Callable[[str], None]:
    """A ``log(msg)`` printing the seconds since it was made (visible with ``-s``).

    :param keep: also append each line here (to show it after a passing test).
    """
    t0 = time.monotonic()

    def log(msg: str) -> None:
        line = f"[{prefix} {time.monotonic() - t0:6.1f}s] {msg}"
        print(line, flush=True)
        if keep is not None:
            keep.append(line)

    return log


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    interval: float = 1.0,
    on_tick: Callable[[], None] | None = None,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    end = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        if on_tick is not None:
            on_tick()
        try:
            result = check()
            if result:
                return result
        except (sqlite3.OperationalError, OSError) as exc:  # DB busy / not there yet
            last_exc = exc
        if time.monotonic() >= end:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last_exc})" if last_exc else "")
            )
        time.sleep(interval)


class MetaDB:
    """Read-only, short-lived connections to the SQLite metadata DB (never hold a lock)."""

    def __init__(self, path: Path, dag_id: str) -> None:
        self.path = path
        self.dag_id = dag_id

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        for attempt in range(20):
            try:
                con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
                try:
                    return con.execute(sql, params).fetchall()
                finally:
                    con.close()
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == 19:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self.query(f'PRAGMA table_info("{table}")')]

    def tis(self, run_id: str, task_id: str | None = None) -> list[tuple]:
        """``(task_id, map_index, state, try_number, trigger_id)`` of the run's task instances."""
        sql = "SELECT task_id, map_index, state, try_number, trigger_id FROM task_instance WHERE dag_id=? AND run_id=?"
        params: tuple = (self.dag_id, run_id)
        if task_id:
            sql += " AND task_id=?"
            params += (task_id,)
        return self.query(sql + " ORDER BY task_id, map_index", params)

    def run_state(self, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id=? AND run_id=?", (self.dag_id, run_id))
        return rows[0][0] if rows else None

    def ti_id(self, run_id: str, task_id: str, map_index: int = -1) -> str | None:
        """The current try's task instance id (a new one for every try), as the task runner titles itself."""
        rows = self.query(
            "SELECT id FROM task_instance WHERE dag_id=? AND run_id=? AND task_id=? AND map_index=?",
            (self.dag_id, run_id, task_id, map_index),
        )
        if not rows:
            return None
        with contextlib.suppress(ValueError):  # SQLite keeps the UUID as 32 hex digits
            return str(uuid.UUID(str(rows[0][0])))
        return str(rows[0][0])

    def triggerer_jobs(self, running_only: bool = False) -> list[tuple]:
        sql = "SELECT id, state FROM job WHERE job_type='TriggererJob'"
        return self.query(sql + (" AND state='running'" if running_only else "") + " ORDER BY id")

    def close(self) -> None:
        """Nothing held between queries."""


class AirflowStack:
    """Airflow components as subprocesses, each in its own process group, logging to a file."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.family: dict[str, set[int]] = {}

    def cli(self, *args: str, timeout: float = 240) -> str:
        name = "cli-" + "-".join(a for a in args[:2] if not a.startswith("-"))
        log = self.root / "proc_logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.run(
                [str(AIRFLOW_BIN), *args],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=out,
                timeout=timeout,
                cwd=self.root,
            )
            out.write(proc.stdout)
        self.logs.setdefault(name, log)
        if proc.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {proc.returncode}\n{tail(log)}")
        return proc.stdout.decode(errors="replace")

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = self.root / "proc_logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")  # noqa: SIM115 - handed to the child process, closed when it is stopped
        proc = subprocess.Popen(
            [str(AIRFLOW_BIN), *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
            start_new_session=True,
        )
        out.close()
        self.procs[name] = proc
        self.logs[name] = log
        return proc

    def assert_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited with {proc.returncode}\n{tail(self.logs[name])}")

    def _remember_family(self, name: str) -> None:
        """Descendants may leave the process group (task supervisors); remember their pids."""
        import psutil

        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(psutil.Error):
            kids = psutil.Process(proc.pid).children(recursive=True)
            self.family.setdefault(name, set()).update(k.pid for k in kids)

    def remember_all(self) -> None:
        for name in list(self.procs):
            self._remember_family(name)

    def kill(self, name: str, sig: int = signal.SIGKILL, grace: float = 20.0) -> None:
        """Signal the process group of ``name`` (and its known descendants), wait for it to exit."""
        import psutil

        proc = self.procs.pop(name, None)
        if proc is None:
            return
        self._remember_family_of(proc, name)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        # Stragglers that started their own session: by pid, only the ones we saw born from us.
        for pid in self.family.pop(name, set()):
            with contextlib.suppress(psutil.Error):
                child = psutil.Process(pid)
                child.wait(timeout=0 if sig == signal.SIGKILL else 5)
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                psutil.Process(pid).kill()

    def _remember_family_of(self, proc: subprocess.Popen, name: str) -> None:
        import psutil

        with contextlib.suppress(psutil.Error):
            kids = psutil.Process(proc.pid).children(recursive=True)
            self.family.setdefault(name, set()).update(k.pid for k in kids)

    def stop_all(self) -> None:
        # Scheduler first (it owns the task workers), then the rest; SIGTERM lets logs flush.
        order = (
            ["scheduler", "dag-processor"]
            + [n for n in self.procs if n not in ("scheduler", "dag-processor", "api-server")]
            + ["api-server"]
        )
        for name in order:
            started = time.monotonic()
            with contextlib.suppress(Exception):
                self.kill(name, signal.SIGTERM, grace=25)
            if time.monotonic() - started > 10:
                print(f"[e2e] stopping {name} took {time.monotonic() - started:.0f}s", flush=True)

    def kill_leftovers(self, home: Path) -> list[str]:
        """Last resort: any process still running with our AIRFLOW_HOME (ours by construction)."""
        import psutil

        left = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if proc.pid != os.getpid() and proc.environ().get("AIRFLOW_HOME") == str(home):
                    left.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:120]}")
                    proc.kill()
        return left

    def tails(self, lines: int = 60) -> str:
        parts = []
        for name, log in self.logs.items():
            parts.append(f"\n===== {name} ({log}) =====\n{tail(log, lines)}")
        return "".join(parts)


def task_runner_process(scheduler_pid: int, ti_id: str) -> Any:
    """The ``psutil.Process`` running task instance ``ti_id`` under this scheduler, or None.

    On Airflow 3 the LocalExecutor worker *is* the task's supervisor (``airflow worker --
    LocalExecutor: <ti id>``, a child of the scheduler); it forks the task runner, which runs
    the operator and retitles itself ``airflow worker -- <ti id>`` at startup. (``setproctitle``
    reuses the environment's memory, so ``/proc/<pid>/environ`` cannot identify it.)
    """
    import psutil

    title = f"airflow worker -- {ti_id}"
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if " ".join(proc.info["cmdline"] or []).startswith(title) and scheduler_pid in {
                p.pid for p in proc.parents()
            }:
                return proc
    return None


def json_log_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON entries with a text ``event`` of an Airflow task/trigger log file."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("event"), str):
                out.append(entry)
    return out


def files_with(secret: str, root: Path) -> list[str]:
    """Every file below ``root`` holding ``secret``, as ``"<relative path> (<count>x)"``."""
    needle = secret.encode()
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if needle in data:
                hits.append(f"{path.relative_to(root)} ({data.count(needle)}x)")
    return hits


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text[-lines:])


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status == 200
    except OSError:
        return False


def http_json(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, Any]:
    """``(status, parsed JSON body or None)``; HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


# ------------------------------------------------------------------------------------ the stack


@dataclass
class E2E:
    """One running (or about to run) Airflow deployment and the sandbox it talks to."""

    stack: AirflowStack
    sandbox: Any
    root: Path
    home: Path
    api_port: int
    db: MetaDB
    run_ids: list[str] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call Airflow's public REST API (``/api/v2`` + ``path``) as an admin.

        A JWT from ``GET /auth/token``, which the simple auth manager hands out without
        credentials when ``[core] simple_auth_manager_all_admins`` is set (as in these tests).
        """
        status, token = http_json("GET", f"{self.api_url}/auth/token")
        assert status in (200, 201) and isinstance(token, dict), (status, token)
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        return http_json(method, f"{self.api_url}/api/v2{path}", body, headers)

    def diagnostics(self) -> str:
        db = self.db
        parts = ["\n#################### e2e diagnostics ####################", self.stack.tails()]
        for run_id in self.run_ids:
            with contextlib.suppress(Exception):
                parts.append(f"\n===== run {run_id}: {db.run_state(run_id)} =====")
                parts.extend(f"  {r}" for r in db.tis(run_id))
        with contextlib.suppress(Exception):
            parts.append(
                f"\n===== import errors =====\n{db.query('SELECT filename, stacktrace FROM import_error')}"
            )
        with contextlib.suppress(Exception):
            parts.append(
                f"\n===== jobs =====\n{db.query('SELECT id, job_type, state, latest_heartbeat FROM job')}"
            )
        task_logs = sorted((self.home / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)
        for log in task_logs[-4:]:
            parts.append(f"\n===== {log.relative_to(self.root)} =====\n{tail(log, 30)}")
        return "\n".join(parts)

    def start_airflow(self, deadline: Deadline, log: Callable[[str], None]) -> None:
        """Migrate the DB, start every component, wait until the DAG is parsed and a triggerer runs."""
        stack, db = self.stack, self.db
        stack.cli("db", "migrate", timeout=deadline.left(300))
        log("db migrated")
        stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))
        wait_for(
            "api-server health",
            lambda: http_ok(f"{self.api_url}/api/v2/monitor/health"),
            deadline.left(180),
            on_tick=stack.assert_alive,
        )
        log("api-server healthy")
        stack.start("scheduler", "scheduler")
        stack.start("dag-processor", "dag-processor")
        stack.start("triggerer", "triggerer")

        def dag_parsed() -> bool:
            return bool(db.query("SELECT 1 FROM serialized_dag WHERE dag_id=?", (db.dag_id,)))

        wait_for(
            f"{db.dag_id} to be parsed",
            dag_parsed,
            deadline.left(180),
            interval=2,
            on_tick=stack.assert_alive,
        )
        wait_for(
            "a live triggerer job",
            lambda: db.triggerer_jobs(running_only=True),
            deadline.left(120),
            interval=2,
            on_tick=stack.assert_alive,
        )
        log("dag parsed, triggerer up")


def deployment_env(
    tmp_path: Path, home: Path, dags_folder: Path, api_port: int, sandbox: Any
) -> dict[str, str]:
    """The environment every e2e deployment shares (callers add the executor and the database).

    Fast heartbeats and parsing so a run takes seconds, manual runs only, log servers on free
    ports, the connection to ``sandbox``; nothing inherited from the caller's AIRFLOW_*/LUMA_*.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LUMA_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": fernet_key(),
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            # Manual runs only: no cron run may start (and submit) behind the test's back.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            # Log servers of the worker and the triggerer: free ports, other runs may share the box.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW_CONN_LUMA_DEFAULT": sandbox.connection_json,
            "LUMA_POLL_INTERVAL": "2",
            "LUMA_OUTPUT_ROOT": f"file://{tmp_path / 'out'}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextlib.contextmanager
def airflow_stack(
    tmp_path: Path,
    sandbox: Any,
    *,
    dag_id: str,
    dags_folder: Path,
    parallelism: int = 4,
    extra_env: dict[str, str] | None = None,
) -> Iterator[E2E]:
    """Environment of a fresh deployment wired to ``sandbox`` (started, and stopped at the end).

    Nothing is started here (see :meth:`E2E.start_airflow`), but every process started through
    the yielded stack is stopped on exit, failure or not, and any process left with this
    AIRFLOW_HOME is killed (and reported as a failure).
    """
    home = tmp_path / "airflow_home"
    home.mkdir()
    (tmp_path / "out").mkdir()
    sandbox.start()  # first: the connection needs its port
    api_port = free_port()
    env = deployment_env(tmp_path, home, dags_folder, api_port, sandbox)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            # How long a dead triggerer's triggers stay assigned to it before another takes them.
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
        }
    )
    env.update(extra_env or {})
    stack = AirflowStack(tmp_path, env)
    try:
        yield E2E(stack, sandbox, tmp_path, home, api_port, MetaDB(home / "airflow.db", dag_id))
    finally:
        stack.stop_all()
        leftovers = stack.kill_leftovers(home)
        sandbox.stop()
        assert not leftovers, f"processes survived the teardown (killed now): {leftovers}"
