"""A distributed Airflow 3.3 deployment for e2e tests: PostgreSQL 15, Redis, CeleryExecutor.

What :func:`distributed_stack` starts (every process is stopped on the way out, failure or not):

* a throwaway PostgreSQL 15 cluster (``initdb`` in a temp dir, ``pg_ctl start`` on a free port,
  ``fsync=off``; as the ``postgres`` user when the tests run as root, since ``initdb`` refuses
  root), one database ``airflow``;
* ``redis-server`` on a free port without persistence (``--save "" --appendonly no``); Debian's
  ``redis-server`` package is installed with ``apt-get`` first when it is missing;
* Airflow with ``CeleryExecutor`` (broker ``redis://127.0.0.1:<port>/0``, result backend
  ``db+postgresql+psycopg2://...``, metadata DB ``postgresql+psycopg2://...``; SQLAlchemy 2.1
  would pick psycopg 3 for a bare ``postgresql://``): api-server, scheduler, dag-processor,
  **two Celery workers** (``airflow celery worker``, distinct Celery hostnames, pid files and
  log-server ports) and **two triggerers** (distinct pid files and log-server ports).

Each triggerer gets its own ``luma_default`` connection: the same sandbox and key, but its own
``path_prefix`` (``/pro`` or ``/vip``; the sandbox serves its ``/luma`` routes under both), so
the gateway's request log says which triggerer sent each status request. Each triggerer also gets
a ``sitecustomize`` (its own ``PYTHONPATH``; observation only) that appends one JSON line per
``StatusPoller`` cycle to a file: when it began and ended, the poller instance, the ids asked for
and the requests the cycle sent (see :data:`POLLER_PROBE`).

Importable as ``distributed_stack`` (``tests/e2e/conftest.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e_stack import (
    E2E,
    AirflowStack,
    Deadline,
    MetaDB,
    deployment_env,
    free_port,
    http_ok,
    tail,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
#: The Python packages this deployment needs (module -> distribution); the ``test`` extra of
#: pyproject.toml has them, pinned by constraints.txt.
PY_DEPS = {
    "airflow.providers.celery": "apache-airflow-providers-celery",
    "celery": "celery<5.7",
    "redis": "redis",
    "psycopg2": "psycopg2-binary",
    "asyncpg": "asyncpg",
}

#: ``sitecustomize`` for the triggerers: wraps ``StatusPoller._serve`` (observation only) and
#: logs one "begin" and one "end" JSON line per poll cycle to ``$LUMA_E2E_POLLER_LOG``. A cycle
#: cut short by SIGKILL has a "begin" line only.
POLLER_PROBE = r'''
"""e2e probe (tests/e2e/distributed_stack.py): one JSON line per StatusPoller cycle start and end."""
import importlib.machinery
import itertools
import json
import os
import sys
import time

_LOG = os.environ.get("LUMA_E2E_POLLER_LOG")
_SEQ = itertools.count(1)


def _write(line):
    with open(_LOG, "a") as fh:
        fh.write(json.dumps(line) + "\n")


def _patch(module):
    poller_cls = module.StatusPoller
    original = poller_cls._serve

    async def _serve(self, batch):
        seq = next(_SEQ)
        ids = list(dict.fromkeys(i for w in batch for i in w.ids))
        before = self.hook.requests_sent
        _write({"ev": "begin", "seq": seq, "t": time.time(), "pid": os.getpid(), "poller": id(self),
                "conn": self.conn_id, "wanted": len(ids), "waiters": len(batch), "ids": ids})
        try:
            return await original(self, batch)
        finally:
            _write({"ev": "end", "seq": seq, "t": time.time(), "pid": os.getpid(),
                    "requests": self.hook.requests_sent - before})

    poller_cls._serve = _serve
    _write({"ev": "patched", "t": time.time(), "pid": os.getpid()})

'''
#: The import hook both probes end with (this one and benchmark 5's): runs ``_patch(module)``
#: right after ``luma_provider.triggers.poller`` loads, when ``_LOG`` names a file.
PROBE_LOADER = r"""

class _Finder:
    name = "luma_provider.triggers.poller"

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or not _LOG:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = patched
        return spec


sys.meta_path.insert(0, _Finder())
"""
POLLER_PROBE += PROBE_LOADER


# ----------------------------------------------------------------------------- installs on demand


def ensure_python_deps(log: Callable[[str], None]) -> None:
    """Install the Celery provider, celery, redis, psycopg2 and asyncpg if this venv lacks one.

    ``make test`` installs them (the ``test`` extra); this is for a venv made some other way.
    Pinned by constraints.txt like everything else.
    """
    missing = [dist for mod, dist in PY_DEPS.items() if not _has_module(mod)]
    if not missing:
        return
    uv = Path(PYTHON).parent / "uv"
    base = (
        [str(uv), "pip", "install", "--python", PYTHON] if uv.exists() else [PYTHON, "-m", "pip", "install"]
    )
    cmd = [*base, "-q", "-c", str(REPO / "constraints.txt"), *missing]
    log(f"installing {' '.join(missing)}")
    subprocess.run(cmd, check=True, timeout=600)
    importlib.invalidate_caches()


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def ensure_redis_server(log: Callable[[str], None]) -> str:
    """Path of ``redis-server``; installs Debian's ``redis-server`` package when it is missing."""
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if Path(p).exists()), None
    )
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise AssertionError("redis-server is missing: install Debian's redis-server package (apt-get)")
    import psutil

    before = {p.pid for p in psutil.process_iter()}
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "redis-server"]
    log("installing redis-server (apt-get)")
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600, check=False)
        done = subprocess.run(install, env=env, capture_output=True, timeout=600)
        if done.returncode != 0:
            raise AssertionError(f"apt-get install redis-server failed:\n{done.stdout[-2000:]!r}")
    # Where the package's init script started a system Redis, it is ours to stop: the test uses its own.
    for proc in psutil.process_iter(["pid", "name"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid not in before and proc.info["name"] == "redis-server":
                proc.terminate()
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    assert Path(path).exists(), "apt-get installed redis-server, but there is no redis-server binary"
    return path


# ------------------------------------------------------------------------------------ PostgreSQL


def pg_bindir() -> Path:
    for candidate in (shutil.which("initdb"), "/usr/local/bin/initdb", "/usr/lib/postgresql/15/bin/initdb"):
        if candidate and Path(candidate).exists():
            return Path(candidate).resolve().parent  # /usr/local/bin/initdb is a symlink
    raise AssertionError("PostgreSQL binaries (initdb, pg_ctl) not found")


class Postgres:
    """A throwaway cluster: ``url`` for SQLAlchemy, ``connect()`` for psycopg2, ``stop()`` (idempotent).

    :param durable: keep fsync and synchronous commits (benchmarks measure them); tests turn
        them off for speed.
    """

    def __init__(self, log: Callable[[str], None], *, durable: bool = False) -> None:
        self.log = log
        self.durable = durable
        self.bindir = pg_bindir()
        self.base = Path(tempfile.mkdtemp(prefix="luma-e2e-pg-"))
        self.data = self.base / "data"
        self.logfile = self.base / "postgres.log"
        self.port = free_port()
        self.postmaster: int | None = None
        self._as_user: dict[str, Any] = {}
        if os.geteuid() == 0:  # initdb refuses root
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            self._as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    @property
    def dsn(self) -> str:
        return f"airflow@127.0.0.1:{self.port}/airflow"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.dsn}"

    def _pg(self, *args: str, check: bool = True, timeout: float = 120) -> int:
        with open(self.base / "pg_commands.log", "ab") as out:
            proc = subprocess.run(
                [str(self.bindir / args[0]), *args[1:]],
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **self._as_user,
            )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{args[0]} exited {proc.returncode}: {tail(self.base / 'pg_commands.log', 30)}"
            )
        return proc.returncode

    def start(self) -> None:
        self._pg(
            "initdb", "-D", str(self.data), "-U", "airflow", "--auth=trust", "-E", "UTF8", "--no-instructions"
        )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.base}"
            " -c max_connections=300"
        )
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try:
            self._pg(
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.logfile),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            )
        finally:
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow", "airflow")
        self.log(f"postgres up on port {self.port} (postmaster {self.postmaster})")

    def connect(self) -> Any:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user="airflow", dbname="airflow")
        con.autocommit = True
        return con

    def stop(self) -> None:
        import psutil

        if self.postmaster is None:
            return
        with contextlib.suppress(Exception):
            self._pg(
                "pg_ctl",
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
                check=False,
                timeout=90,
            )
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(self.postmaster)
            if str(self.data) in " ".join(proc.cmdline()):
                for kid in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        kid.kill()
                proc.kill()
                self.log("postgres did not stop: killed")
        self.postmaster = None

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


class PgDB(MetaDB):
    """The metadata DB on Postgres: :class:`e2e_stack.MetaDB`'s queries (``?`` placeholders), one connection."""

    def __init__(self, pg: Postgres, dag_id: str) -> None:
        super().__init__(Path(pg.base), dag_id)
        self.pg = pg
        self._con: Any = None

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg2

        sql = sql.replace("?", "%s")
        for attempt in range(5):
            try:
                if self._con is None or self._con.closed:
                    self._con = self.pg.connect()
                with self._con.cursor() as cur:
                    cur.execute(sql, params)
                    return cur.fetchall() if cur.description else []
            except psycopg2.OperationalError:
                with contextlib.suppress(Exception):
                    self._con.close()
                self._con = None
                if attempt == 4:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.close()
            self._con = None

    def columns(self, table: str) -> list[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema='public' AND table_name=? "
            "ORDER BY ordinal_position",
            (table,),
        )
        return [r[0] for r in rows]


# ----------------------------------------------------------------------------------------- Redis


class Redis:
    """``redis-server`` on a free port, no persistence, in its own session."""

    def __init__(self, binary: str, base: Path, log: Callable[[str], None]) -> None:
        self.binary = binary
        self.base = base
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        out = open(self.base / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.base),
                "--logfile",
                "",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        import redis

        def pong() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"redis-server exited {self.proc.returncode}: {tail(self.base / 'redis.log')}"
                )
            with contextlib.suppress(redis.exceptions.ConnectionError):
                return bool(redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2).ping())
            return False

        wait_for("redis-server to answer PING", pong, 30, interval=0.2)
        self.log(f"redis up on port {self.port} (pid {self.proc.pid})")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        self.proc = None


# --------------------------------------------------------------------------------------- Airflow


class DistributedAirflow(AirflowStack):
    """:class:`AirflowStack` whose components may each get extra environment variables."""

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        if not env:
            return super().start(name, *args)
        saved = self.env
        self.env = {**saved, **env}
        try:
            return super().start(name, *args)
        finally:
            self.env = saved

    def stop_all(self) -> None:
        # The workers first: a Celery worker's warm shutdown waits for its tasks, which need the
        # api-server; then AirflowStack's order (scheduler, dag-processor, the rest, api-server).
        for name in [n for n in self.procs if n.startswith("worker")]:
            with contextlib.suppress(Exception):
                self.kill(name, signal.SIGTERM, grace=20)
        super().stop_all()


@dataclass
class Component:
    """One Celery worker or triggerer: its process name and what makes it distinct."""

    name: str
    log_port: int
    env: dict[str, str]
    args: tuple[str, ...]
    #: Triggerers only: the connection's path prefix (``/pro``/``/vip``) and the probe's log.
    prefix: str = ""
    probe_log: Path | None = None
    #: Triggerers only: the ``job`` row id once it runs.
    job_id: int | None = None


@dataclass
class Distributed(E2E):
    """The running deployment: ``stack``/``db``/``rest()``/``diagnostics()`` as in :class:`E2E`."""

    pg: Postgres | None = None
    redis: Redis | None = None
    workers: dict[str, Component] = field(default_factory=dict)
    triggerers: dict[str, Component] = field(default_factory=dict)

    def start_airflow(self, deadline: Deadline, log: Callable[[str], None]) -> None:  # type: ignore[override]
        """Migrate; start triggerer-a, api-server, scheduler, dag-processor and the workers; once
        triggerer-a has its job row, triggerer-b (so each job row is known to be whose)."""
        stack, db = self.stack, self.db
        stack.cli("db", "migrate", timeout=deadline.left(300))
        log("db migrated (postgres)")
        # The triggerers one after the other: the job row that appears is the one just started.
        # triggerer-a first, and the rest while it starts up.
        trig = list(self.triggerers.values())
        known = self._start_triggerer(trig[0], set())
        stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))
        stack.start("scheduler", "scheduler")
        stack.start("dag-processor", "dag-processor")
        for comp in self.workers.values():
            stack.start(comp.name, *comp.args, env=comp.env)
        for i, comp in enumerate(trig):
            if i:
                known = self._start_triggerer(comp, known)
            comp.job_id = self._job_of(comp, known, deadline)
            known.add(comp.job_id)
            log(f"{comp.name} up: triggerer job {comp.job_id}")
        wait_for(
            "api-server health",
            lambda: http_ok(f"{self.api_url}/api/v2/monitor/health"),
            deadline.left(180),
            on_tick=stack.assert_alive,
        )
        wait_for(
            f"{db.dag_id} to be parsed",
            lambda: db.query("SELECT 1 FROM serialized_dag WHERE dag_id=?", (db.dag_id,)),
            deadline.left(180),
            interval=2,
            on_tick=stack.assert_alive,
        )
        wait_for(
            "both Celery workers to be ready",
            lambda: all("ready." in tail(stack.logs[c.name], 400) for c in self.workers.values()),
            deadline.left(180),
            interval=1,
            on_tick=stack.assert_alive,
        )
        log("api-server healthy, dag parsed, both workers ready")

    def _start_triggerer(self, comp: Component, known: set[int]) -> set[int]:
        """Start ``comp``; returns the triggerer job ids that existed before it."""
        known = known | {r[0] for r in self.db.triggerer_jobs()}
        self.stack.start(comp.name, *comp.args, env=comp.env)
        return known

    def _job_of(self, comp: Component, known: set[int], deadline: Deadline) -> int:
        new = wait_for(
            f"{comp.name}'s job row",
            lambda: [r[0] for r in self.db.triggerer_jobs(running_only=True) if r[0] not in known],
            deadline.left(180),
            interval=1,
            on_tick=self.stack.assert_alive,
        )
        assert len(new) == 1, f"{comp.name}: more than one new triggerer job {new}"
        return int(new[0])

    def diagnostics(self) -> str:
        parts = [super().diagnostics()]
        with contextlib.suppress(Exception):
            parts.append(f"\n===== triggers =====\n{self.db.query('SELECT id, triggerer_id FROM trigger')}")
        for comp in self.triggerers.values():
            if comp.probe_log is not None:
                parts.append(f"\n===== {comp.probe_log.name} =====\n{tail(comp.probe_log, 20)}")
        if self.pg is not None:
            parts.append(f"\n===== postgres.log =====\n{tail(self.pg.logfile, 20)}")
        return "\n".join(parts)


@contextlib.contextmanager
def distributed_stack(
    tmp_path: Path,
    sandbox: Any,
    *,
    dag_id: str,
    dags_folder: Path,
    log: Callable[[str], None],
    worker_concurrency: int = 2,
    triggerer_capacity: tuple[int | None, int | None] = (None, None),
    extra_env: dict[str, str] | None = None,
) -> Iterator[Distributed]:
    """Postgres + Redis + the sandbox started, Airflow's environment ready (not started: see
    :meth:`Distributed.start_airflow`). Everything is stopped on exit, failure or not, and any
    process left with this AIRFLOW_HOME is killed (and reported as a failure)."""
    ensure_python_deps(log)
    redis_bin = ensure_redis_server(log)
    home = tmp_path / "airflow_home"
    home.mkdir()
    (tmp_path / "out").mkdir()
    instrument = tmp_path / "instrument"
    instrument.mkdir()
    (instrument / "sitecustomize.py").write_text(POLLER_PROBE)
    with contextlib.ExitStack() as cleanup:
        pg = Postgres(log)
        cleanup.callback(pg.remove)
        cleanup.callback(pg.stop)
        pg.start()
        redis = Redis(redis_bin, tmp_path / "redis", log)
        cleanup.callback(redis.stop)
        redis.start()
        sandbox.start()
        cleanup.callback(sandbox.stop)
        api_port = free_port()
        env = deployment_env(tmp_path, home, dags_folder, api_port, sandbox)
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
                "AIRFLOW__CELERY__BROKER_URL": redis.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{pg.url}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
                # Sending a workload to Redis may take more than 1 s on a loaded 2-core box.
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
                "AIRFLOW__CORE__PARALLELISM": str(4 * worker_concurrency),
                # A killed worker's tasks: failed for a missing heartbeat after 15 s, not 5 minutes.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "1",
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
                # A dead triggerer's triggers move to a live one after this many seconds.
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            }
        )
        env.update(extra_env or {})
        stack = DistributedAirflow(tmp_path, env)
        deployment = Distributed(
            stack=stack,
            sandbox=sandbox,
            root=tmp_path,
            home=home,
            api_port=api_port,
            db=PgDB(pg, dag_id),
            pg=pg,
            redis=redis,
        )
        for i, letter in enumerate("ab"):
            port = free_port()
            name = f"worker-{letter}"
            deployment.workers[name] = Component(
                name=name,
                log_port=port,
                env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port)},
                args=(
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"{name}@%h",
                    "--concurrency",
                    str(worker_concurrency),
                    "--pid",
                    str(home / f"airflow-{name}.pid"),
                    "--without-gossip",
                    "--without-mingle",
                ),
            )
            port = free_port()
            name = f"triggerer-{letter}"
            prefix = ("/pro", "/vip")[i]
            conn = json.loads(sandbox.connection_json)
            conn["extra"] = {**conn.get("extra", {}), "path_prefix": prefix}
            capacity = triggerer_capacity[i]
            probe_log = tmp_path / f"poller-{name}.jsonl"
            deployment.triggerers[name] = Component(
                name=name,
                log_port=port,
                env={
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port),
                    "AIRFLOW_CONN_LUMA_DEFAULT": json.dumps(conn),
                    "PYTHONPATH": os.pathsep.join(
                        [str(instrument), *filter(None, [os.environ.get("PYTHONPATH")])]
                    ),
                    "LUMA_E2E_POLLER_LOG": str(probe_log),
                },
                args=(
                    "triggerer",
                    "--pid",
                    str(home / f"airflow-{name}.pid"),
                    *(("--capacity", str(capacity)) if capacity else ()),
                ),
                prefix=prefix,
                probe_log=probe_log,
            )
        try:
            yield deployment
        finally:
            started = time.monotonic()
            stack.stop_all()
            leftovers = stack.kill_leftovers(home)
            deployment.db.close()
            log(f"airflow stopped in {time.monotonic() - started:.0f}s")
        assert not leftovers, f"processes survived the teardown (killed now): {leftovers}"


# ------------------------------------------------------------------------------------ processes


def process_tree(pid: int) -> list[Any]:
    """``psutil.Process`` of ``pid`` and all its descendants (root first), [] if it is gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def title(proc: Any) -> str:
    import psutil

    try:
        return " ".join(proc.cmdline()).strip()
    except psutil.Error:
        return "<gone>"


def alive(proc: Any) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def sigkill_tree(procs: list[Any]) -> None:
    """SIGKILL every process of ``procs`` (parents first: no one sees a child die and reacts)."""
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
