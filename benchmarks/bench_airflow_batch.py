"""Benchmark 5 - batch at scale: ``luma_daily_content`` with 250 / 1,000 / 10,000 prompts on a real Airflow.

What runs (every process started here is stopped at the end, failure and Ctrl-C included):

* the sandbox gateway in its own process (``python -m luma_provider.sandbox``; every generation
  is queued 2 s, then processing 5 s);
* a throwaway PostgreSQL 15 cluster (``initdb`` in a temp dir, ``pg_ctl start`` on a free port,
  ``createdb``; run as the ``postgres`` user when this runs as root); ``psycopg2-binary`` and
  ``asyncpg`` are installed into this venv first if they are missing;
* Airflow 3 in a temporary AIRFLOW_HOME on that database, LocalExecutor, Airflow's defaults
  otherwise (parallelism 32, 16 tasks per DAG, 1 api-server worker, INFO logging): ``airflow db
  migrate``, then api-server, scheduler, dag-processor and triggerer, each a subprocess in its own
  process group; ``LUMA_POLL_INTERVAL=2``. The DAGs folder and ``luma_provider`` are a checked
  copy of the repo's ``dags/`` and ``luma_provider/`` taken at the start (``PYTHONPATH``), so edits
  made to the working tree during the run cannot break or change it.

Per N (a generated YAML file of N distinct prompts, ``chunk_size`` 100), one manual run of
``luma_daily_content`` is triggered through the REST API and waited for. Measured:

* wall time, trigger -> ``dag_run.end_date``;
* CPU seconds of every Airflow process: per component, ``utime + stime`` of the root and of every
  live descendant plus ``cutime + cstime`` (children that already exited and were reaped, e.g.
  the task runner processes), before and after the run; the same for the Postgres cluster
  (postmaster + backends) and, as context, the sandbox;
* task instances of the run (and their timeline from the metadata DB and the task logs);
* sandbox requests per route and submissions (``GET /_sandbox/stats``), videos on disk, the
  manifest;
* peak RSS of the triggerer's process tree (sum over the tree, sampled every 0.5 s);
* status requests per poll cycle: the triggerer gets a ``sitecustomize`` (observation only, on
  its own ``PYTHONPATH``) that wraps ``StatusPoller._serve`` and logs, per cycle, the ids asked
  for, the ids other triggers still wait for and the requests the cycle sent.

Next to each N, the one-process baseline (measured before Airflow starts, same sandbox): a plain
Python process using ``LumaHook`` directly: submit N with 8 threads, wait with
``get_generations`` every 2 s, download every video and thumbnail with 8 threads.

Then ``airflow dags test luma_daily_content --conf ...`` with a 1,000-prompt file on a SQLite
AIRFLOW_HOME (after the Postgres deployment is stopped).

Goals (issue "Batch at scale"): overhead <= 0.05 CPU-s per prompt at N = 1,000 ((Airflow + Postgres
CPU - baseline CPU) / N); N = 10,000 done in <= 10 min with N videos and exactly N submissions;
status requests <= ceil(waiting ids / 100) per poll cycle; ``dags test`` with 1,000 prompts green in
<= 2 min. Raw JSON (default ``benchmarks/results/airflow_batch.json``) includes the timelines, the
api-server's requests per route and the poller cycles.

Usage::

    python benchmarks/bench_airflow_batch.py [--sizes 250,1000,10000] [--dags-test-n 1000] [--json out.json]
    python benchmarks/bench_airflow_batch.py --quick      # smoke test: 50 and 250 prompts, dags test 100
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import math
import os
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from _common import (
    API_KEY,
    PYTHON,
    ROOT,
    loadavg,
    luma_conn_json,
    markdown_table,
    sandbox_process,
    verdict,
    wait_for_quiet_machine,
)
from distributed_stack import PROBE_LOADER, Postgres  # shared with the e2e tests
from e2e_stack import http_json

HERE = Path(__file__).resolve().parent
AIRFLOW_BIN = Path(PYTHON).parent / "airflow"
DAG_ID = "luma_daily_content"
CHUNK_SIZE = 100
QUEUE_SECONDS = 2.0
PROCESS_SECONDS = 5.0
POLL_INTERVAL = 2.0
STATUS_BATCH = 100  # ids per POST /luma/tasks (the hook's default batch_size)
BASELINE_THREADS = 8
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Goals of the issue "Batch at scale".
GOAL_OVERHEAD_CPU_PER_PROMPT = 0.05  # at N = 1,000
GOAL_10K_WALL_S = 600.0
GOAL_DAGS_TEST_WALL_S = 120.0

#: Observation only: logs every StatusPoller cycle of the triggerer (ids asked for, requests sent).
SITECUSTOMIZE = r'''
"""Benchmark probe (bench_airflow_batch.py): one JSON line per StatusPoller cycle."""
import importlib.machinery
import json
import os
import sys
import time

_LOG = os.environ.get("LUMA_BENCH_POLLER_LOG")


def _patch(module):
    poller_cls = module.StatusPoller
    original = poller_cls._serve

    async def _serve(self, batch):
        started = time.time()
        wanted = len(dict.fromkeys(i for w in batch for i in w.ids))
        later = self.waiting_ids
        before = self.requests_sent
        try:
            return await original(self, batch)
        finally:
            line = {"t": round(started, 3), "dt": round(time.time() - started, 4), "pid": os.getpid(),
                    "wanted": wanted, "triggers": len(batch), "later": later,
                    "requests": self.requests_sent - before}
            with open(_LOG, "a") as fh:
                fh.write(json.dumps(line) + "\n")

    poller_cls._serve = _serve

'''
SITECUSTOMIZE += PROBE_LOADER

SUBJECTS = (
    "a lighthouse at dawn",
    "ink drops blooming in water",
    "a fox trotting through fresh snow",
    "a neon sign flickering in a rainy alley",
    "clouds rolling over a mountain ridge",
    "a paper plane gliding across a classroom",
    "a hummingbird at a red flower",
    "waves folding over black sand",
    "a tram crossing a bridge at night",
    "steam rising from a cup of tea",
)
STYLES = (
    "drone orbit shot",
    "macro, studio light",
    "tracking shot",
    "handheld camera",
    "timelapse",
    "slow motion",
)
RATIOS = ("16:9", "1:1", "9:16", "4:3", "3:4")


def log(msg: str) -> None:
    print(f"[airflow_batch {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """``proc``'s exit code; if it is still running (a timeout, an error) its whole process group
    is killed first, and the ``TimeoutExpired`` propagates."""
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def write_prompts(path: Path, n: int, tag: str) -> Path:
    """N distinct prompts (the tag keeps them distinct across runs: no reuse through the ledger)."""
    lines = []
    for i in range(n):
        prompt = f"[{tag} #{i:05d}] {SUBJECTS[i % len(SUBJECTS)]}, {STYLES[(i // 10) % len(STYLES)]}"
        lines.append(
            f"- prompt: {json.dumps(prompt)}\n  aspect_ratio: {json.dumps(RATIOS[i % len(RATIOS)])}\n"
        )
    path.write_text("".join(lines))
    return path


def count_files(folder: Path, suffix: str) -> int:
    return sum(1 for _ in folder.rglob(f"*{suffix}")) if folder.exists() else 0


def snapshot_code(work: Path) -> dict[str, Any]:
    """Copy ``luma_provider/`` and ``dags/`` into ``work/code`` and run everything from that copy.

    Others edit the working tree while this runs for half an hour; a task that parses the DAG
    mid-edit would fail or be rescheduled. The copy is checked (imports, DAG parses) and retried
    a few times when it caught a half-written state.
    """
    import hashlib

    snap = work / "code"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LUMA_", "PYTHONPATH"))}
    env.update(AIRFLOW_HOME=str(work / "check_home"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    check = (
        "import sys; sys.path[:0] = sys.argv[1:3]; import luma_provider, luma_daily_content; "
        "import luma_provider.hooks.luma, luma_provider.operators.luma, luma_provider.sensors.luma, "
        "luma_provider.triggers.luma; assert luma_provider.__file__.startswith(sys.argv[1])"
    )
    error = ""
    for _attempt in range(6):
        shutil.rmtree(snap, ignore_errors=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(ROOT / "luma_provider", snap / "luma_provider", ignore=ignore)
        shutil.copytree(ROOT / "dags", snap / "dags", ignore=ignore)
        proc = subprocess.run(
            [PYTHON, "-c", check, str(snap), str(snap / "dags")],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            break
        error = proc.stderr[-1500:]
        log(f"code snapshot does not import (someone is editing?); retrying in 20 s: {error[-300:]}")
        time.sleep(20)
    else:
        raise RuntimeError(f"no importable snapshot of luma_provider/dags: {error}")
    digest = hashlib.sha256()
    for path in sorted(p for p in snap.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(snap)).encode() + b"\0" + path.read_bytes())

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), *args], capture_output=True, text=True
        )
        return out.stdout.strip()

    return {
        "path": str(snap),
        "sha256": digest.hexdigest()[:16],
        "git_head": git("rev-parse", "--short", "HEAD"),
        "dirty_files": git("status", "--porcelain", "--", "luma_provider", "dags").splitlines(),
    }


def ensure_drivers() -> dict[str, str]:
    """psycopg2 (the URL's driver) and asyncpg (Airflow 3.3's async engine) in this venv."""
    missing = [
        pkg for mod, pkg in (("psycopg2", "psycopg2-binary"), ("asyncpg", "asyncpg")) if not has_module(mod)
    ]
    if missing:
        uv = Path(PYTHON).parent / "uv"
        cmd = [str(uv), "pip", "install", "--python", PYTHON, *missing] if uv.exists() else [
            PYTHON, "-m", "pip", "install", "--quiet", *missing,
        ]  # fmt: skip
        log(f"installing {' '.join(missing)}: {' '.join(cmd)}")
        subprocess.run(cmd, check=True)
        importlib.invalidate_caches()
    import importlib.metadata as md

    return {pkg: md.version(pkg) for pkg in ("psycopg2-binary", "asyncpg")}


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def epoch(value: Any) -> float | None:
    """A DB timestamp (aware datetime, or ISO text from SQLite) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return float(value.timestamp())


# ------------------------------------------------------------------------- process trees: CPU, RSS


def tree_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process tree so far: root + live descendants + reaped children.

    Summing ``user + system + children_user + children_system`` over every live process of the
    tree counts each process once: a live one by itself, an exited one in the ``cutime/cstime``
    of the ancestor that reaped it. A delta of two samples is the tree's CPU in between, children
    that started and exited in between included.
    """
    import psutil

    out = {"own": 0.0, "reaped_children": 0.0, "live_descendants": 0.0}
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        out["own"] = t.user + t.system
        out["reaped_children"] = t.children_user + t.children_system
        kids = root.children(recursive=True)
    except psutil.Error:
        return {**out, "total": 0.0}
    for kid in kids:
        with contextlib.suppress(psutil.Error):
            c = kid.cpu_times()
            out["live_descendants"] += c.user + c.system + c.children_user + c.children_system
    out["total"] = out["own"] + out["reaped_children"] + out["live_descendants"]
    return out


def tree_rss(pid: int) -> tuple[int, int]:
    """(sum of RSS over the tree, largest single RSS), bytes."""
    import psutil

    total, largest = 0, 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return 0, 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            rss = proc.memory_info().rss
            total += rss
            largest = max(largest, rss)
    return total, largest


def diff_cpu(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    return {
        name: {k: round(after[name][k] - before[name].get(k, 0.0), 3) for k in after[name]} for name in after
    }


class RssSampler(threading.Thread):
    """Peak RSS of one process tree, sampled every ``interval`` s (``reset`` starts a new window)."""

    def __init__(self, pid_of: Callable[[], int | None], interval: float = 0.5) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.pid_of = pid_of
        self.interval = interval
        self.stop = threading.Event()
        self.peak_sum = 0
        self.peak_single = 0
        self.samples = 0

    def reset(self) -> None:
        self.peak_sum = self.peak_single = self.samples = 0

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            pid = self.pid_of()
            if pid is None:
                continue
            total, largest = tree_rss(pid)
            self.peak_sum = max(self.peak_sum, total)
            self.peak_single = max(self.peak_single, largest)
            self.samples += 1


# ----------------------------------------------------------------------------------- PostgreSQL


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """The e2e tests' throwaway cluster, durable (fsync on): stopped and removed at the end."""
    pg = Postgres(log, durable=True)
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
        pg.remove()


# ------------------------------------------------------------------------------------ Airflow


class Stack:
    """Airflow components as subprocesses, each in its own process group, logging to files."""

    def __init__(self, root: Path, home: Path, env: dict[str, str]) -> None:
        self.root = root
        self.home = home
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def cli(self, *args: str, timeout: float = 600) -> None:
        logfile = self.root / "proc_logs" / f"cli-{'-'.join(args[:2])}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(
                [str(AIRFLOW_BIN), *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,
            )
            code = wait_or_kill(proc, timeout)
        if code != 0:
            raise RuntimeError(f"airflow {' '.join(args)} exited {code}: {tail(logfile)}")

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        logfile = self.root / "proc_logs" / f"{name}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(logfile, "ab") as out:
            self.procs[name] = subprocess.Popen(
                [str(AIRFLOW_BIN), *args],
                env=env or self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,
            )
        self.logs[name] = logfile

    def pid(self, name: str) -> int | None:
        proc = self.procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def assert_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}: {tail(self.logs[name])}")

    def stop_all(self) -> None:
        """SIGTERM each process group (scheduler first), SIGKILL after 30 s, then any straggler."""
        import psutil

        order = ["scheduler", "dag-processor", "triggerer", "api-server"]
        for name in order + [n for n in self.procs if n not in order]:
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            family: list[Any] = []
            with contextlib.suppress(psutil.Error):
                family = psutil.Process(proc.pid).children(recursive=True)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            _, alive = psutil.wait_procs(family, timeout=5)
            for kid in alive:  # descendants that left the group: only the ones born from ours
                with contextlib.suppress(psutil.Error):
                    kid.kill()
        # Last resort: anything still running with this AIRFLOW_HOME (ours by construction).
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if proc.pid != os.getpid() and proc.environ().get("AIRFLOW_HOME") == str(self.home):
                    log(f"killing leftover {proc.pid} {' '.join(proc.cmdline())[:100]}")
                    proc.kill()


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def airflow_env(
    home: Path, db_url: str, api_port: int, out_root: Path, sandbox_url: str, code: Path
) -> dict[str, str]:
    import base64

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LUMA_", "PYTHONPATH"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CORE__DAGS_FOLDER": str(code / "dags"),
            "PYTHONPATH": str(code),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            # Manual runs only: the daily schedule must not start a run of its own.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW_CONN_LUMA_DEFAULT": luma_conn_json(sandbox_url),
            "LUMA_POLL_INTERVAL": str(int(POLL_INTERVAL)),
            "LUMA_OUTPUT_ROOT": f"file://{out_root}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class Deployment:
    """The running Airflow (on Postgres): REST calls, metadata queries, CPU snapshots."""

    def __init__(self, stack: Stack, pg: Postgres, api_port: int, sandbox: Any, poller_log: Path) -> None:
        self.stack = stack
        self.pg = pg
        self.api = f"http://127.0.0.1:{api_port}"
        self.sandbox_url = str(sandbox)
        self.sandbox_pid: int = sandbox.pid
        self.poller_log = poller_log
        self._db: Any = None

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg2

        for attempt in range(3):
            try:
                if self._db is None:
                    self._db = self.pg.connect()
                with self._db.cursor() as cur:
                    cur.execute(sql, params)
                    return list(cur.fetchall()) if cur.description else []
            except psycopg2.OperationalError:
                self._db = None
                if attempt == 2:
                    raise
                time.sleep(1)
        return []

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None

    def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, token = http_json("GET", f"{self.api}/auth/token")
        if status not in (200, 201) or not isinstance(token, dict):
            raise RuntimeError(f"no API token: {status} {token}")
        return http_json(
            method, f"{self.api}/api/v2{path}", body, {"Authorization": f"Bearer {token['access_token']}"}
        )

    def cpu_snapshot(self) -> dict[str, dict[str, float]]:
        snap = {name: tree_cpu(pid) for name in COMPONENTS if (pid := self.stack.pid(name)) is not None}
        snap["postgres"] = tree_cpu(self.pg.postmaster)
        snap["sandbox"] = tree_cpu(self.sandbox_pid)
        return snap

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
        end = time.monotonic() + timeout
        while True:
            self.stack.assert_alive()
            with contextlib.suppress(Exception):
                result = check()
                if result:
                    return result
            if time.monotonic() > end:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def start(self, instrument_dir: Path) -> None:
        stack = self.stack
        stack.cli("db", "migrate")
        log("db migrated")
        stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", self.api.rsplit(":", 1)[1])

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.api}/api/v2/monitor/health", timeout=10) as resp:
                return resp.status == 200

        self.wait_for("api-server health", healthy, 180, interval=1)
        stack.start("scheduler", "scheduler")
        stack.start("dag-processor", "dag-processor")
        trig_env = dict(stack.env)
        trig_env["PYTHONPATH"] = os.pathsep.join([str(instrument_dir), stack.env["PYTHONPATH"]])
        trig_env["LUMA_BENCH_POLLER_LOG"] = str(self.poller_log)
        stack.start("triggerer", "triggerer", env=trig_env)
        self.wait_for(
            f"{DAG_ID} parsed",
            lambda: self.query("SELECT 1 FROM serialized_dag WHERE dag_id=%s", (DAG_ID,)),
            240,
        )
        self.wait_for(
            "a running triggerer",
            lambda: self.query("SELECT 1 FROM job WHERE job_type='TriggererJob' AND state='running'"),
            180,
        )
        status, body = self.rest("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
        if status != 200:
            raise RuntimeError(f"unpause failed: {status} {body}")
        log("airflow up: dag parsed, triggerer running, dag unpaused")


# --------------------------------------------------------------------------------- one Airflow run


def poller_cycles(path: Path, start: float, end: float) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    cycles = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            c = json.loads(line)
            if start <= c["t"] <= end:
                cycles.append(c)
    return cycles


def status_analysis(cycles: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests per poll cycle vs ceil(ids / 100); also per 2 s poll interval vs all waiting ids."""
    if not cycles:
        return {"cycles": 0}
    over_wanted = [c for c in cycles if c["requests"] > math.ceil(c["wanted"] / STATUS_BATCH)]
    over_waiting = [c for c in cycles if c["requests"] > math.ceil((c["wanted"] + c["later"]) / STATUS_BATCH)]
    windows: dict[int, dict[str, int]] = defaultdict(lambda: {"requests": 0, "waiting": 0, "cycles": 0})
    for c in cycles:
        w = windows[int(c["t"] // POLL_INTERVAL)]
        w["requests"] += c["requests"]
        w["waiting"] = max(w["waiting"], c["wanted"] + c["later"])
        w["cycles"] += 1
    over_window = [w for w in windows.values() if w["requests"] > math.ceil(w["waiting"] / STATUS_BATCH)]
    peak = max(cycles, key=lambda c: (c["requests"], c["wanted"]))
    return {
        "cycles": len(cycles),
        "requests": sum(c["requests"] for c in cycles),
        "max_requests_per_cycle": peak["requests"],
        "ids_in_that_cycle": peak["wanted"],
        "max_ids_per_cycle": max(c["wanted"] for c in cycles),
        "max_waiting_ids": max(c["wanted"] + c["later"] for c in cycles),
        "max_triggers_per_cycle": max(c["triggers"] for c in cycles),
        "cycles_over_ceil_ids": len(over_wanted),
        "cycles_over_ceil_waiting": len(over_waiting),
        "poll_intervals": len(windows),
        "max_cycles_per_interval": max(w["cycles"] for w in windows.values()),
        "max_requests_per_interval": max(w["requests"] for w in windows.values()),
        "intervals_over_ceil_waiting": len(over_window),
        "longest_cycle_s": max(c["dt"] for c in cycles),
        "median_cycle_s": sorted(c["dt"] for c in cycles)[len(cycles) // 2],
        "pids": sorted({c["pid"] for c in cycles}),
    }


def task_log_phases(home: Path, run_id: str) -> dict[str, Any]:
    """From the JSON task logs: per task id, the span of each log (first -> last line), and the submit
    phase of every task that submits a batch (first line -> its "accepted or reused" line)."""
    base = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
    spans: dict[str, list[float]] = defaultdict(list)
    submit: list[float] = []
    per_prompt: list[float] = []
    for path in sorted(base.glob("task_id=*/**/attempt=*.log")):
        task_id = next(p.name.split("=", 1)[1] for p in path.parents if p.name.startswith("task_id="))
        events = json_lines(path)
        if not events:
            continue
        spans[task_id].append(events[-1]["ts"] - events[0]["ts"])
        for e in events:
            if "accepted or reused" in e["event"]:
                submit.append(e["ts"] - events[0]["ts"])
                accepted = [x["ts"] for x in events if x["event"].startswith("Luma accepted generation")]
                if len(accepted) > 1:
                    per_prompt.append((accepted[-1] - accepted[0]) / (len(accepted) - 1))
                break
    return {
        "log_span_s": {task_id: spread(v) for task_id, v in sorted(spans.items())},
        "submit_phase_s": spread(submit),
        "submit_seconds_per_prompt": spread(per_prompt),
    }


def api_access(logfile: Path, start: float, end: float) -> dict[str, Any]:
    """api-server access log lines in [start, end]: requests and server time per route family."""
    counts: Counter[str] = Counter()
    micros: Counter[str] = Counter()
    if not logfile.exists():
        return {}
    with open(logfile, errors="replace") as fh:
        for line in fh:
            if "request finished" not in line or " path=" not in line:
                continue
            with contextlib.suppress(ValueError, IndexError, TypeError):
                ts = epoch(line.split(" ", 1)[0])
                if ts is None or not start <= ts <= end:
                    continue
                fields = dict(f.split("=", 1) for f in line.split() if "=" in f and not f.startswith("["))
                parts = fields["path"].split("/")
                if len(parts) > 2 and parts[1] == "execution":
                    if parts[2] == "task-instances" and len(parts) > 4:
                        route = f"/execution/task-instances/*/{parts[4]}"
                    elif parts[2] == "xcoms" and len(parts) > 6:
                        whole = "map_index" not in fields.get("query", "")
                        route = f"/execution/xcoms/*/*/{parts[5]}/{parts[6]}" + (
                            " (all)" if whole else " (index)"
                        )
                    elif parts[2] == "store" and len(parts) > 5:
                        route = f"/execution/store/ti/*/{parts[5].split(':')[0]}"
                    else:
                        route = f"/execution/{parts[2]}/..."
                else:
                    route = "/".join(parts[:3])
                key = f"{fields.get('method', '?')} {route}"
                counts[key] += 1
                micros[key] += int(fields.get("duration_us", 0))
    total = sum(counts.values())
    return {
        "requests": total,
        "server_seconds": round(sum(micros.values()) / 1e6, 1),
        "by_route": {
            k: {
                "requests": counts[k],
                "server_s": round(micros[k] / 1e6, 2),
                "ms_each": round(micros[k] / counts[k] / 1e3, 1),
            }
            for k, _ in counts.most_common()
        },
    }


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "min": round(ordered[0], 2),
        "median": round(ordered[len(ordered) // 2], 2),
        "max": round(ordered[-1], 2),
        "sum": round(sum(ordered), 1),
    }


def json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("event"), str) and entry.get("timestamp"):
                entry["ts"] = epoch(entry["timestamp"])
                out.append(entry)
    return out


def ti_timeline(dep: Deployment, run_id: str, t0: float) -> dict[str, Any]:
    rows = dep.query(
        "SELECT task_id, map_index, state, try_number, queued_dttm, start_date, end_date FROM task_instance "
        "WHERE dag_id=%s AND run_id=%s",
        (DAG_ID, run_id),
    )
    per: dict[str, dict[str, Any]] = {}
    for task_id, _idx, state, tries, queued, start, end in rows:
        p = per.setdefault(
            task_id,
            {
                "count": 0,
                "states": Counter(),
                "tries": 0,
                "starts": [],
                "ends": [],
                "queue_wait": [],
                "durations": [],
            },
        )
        p["count"] += 1
        p["states"][state] += 1
        p["tries"] = max(p["tries"], tries or 0)
        if (s := epoch(start)) is not None:
            p["starts"].append(s - t0)
            if (q := epoch(queued)) is not None:
                p["queue_wait"].append(s - q)
        if (e := epoch(end)) is not None:
            p["ends"].append(e - t0)
            if s is not None:
                p["durations"].append(e - s)
    summary = {}
    for task_id, p in per.items():
        summary[task_id] = {
            "count": p["count"],
            "states": dict(p["states"]),
            "max_try": p["tries"],
            "first_start_s": round(min(p["starts"]), 1) if p["starts"] else None,
            "last_start_s": round(max(p["starts"]), 1) if p["starts"] else None,
            "last_end_s": round(max(p["ends"]), 1) if p["ends"] else None,
            "queued_to_start_s": spread(p["queue_wait"]),
            "start_to_end_s": spread(p["durations"]),
        }
    return {"task_instances": len(rows), "by_task": summary}


def run_airflow(dep: Deployment, sampler: RssSampler, n: int, work: Path, timeout: float) -> dict[str, Any]:
    from luma_provider.sandbox import SandboxAdmin

    admin = SandboxAdmin(dep.sandbox_url, api_key=API_KEY)
    prompts = write_prompts(work / f"prompts_airflow_{n}.yaml", n, f"airflow n={n}")
    out_root = work / "out" / f"n{n}"
    run_id = f"bench_n{n}_{secrets.token_hex(3)}"
    load_before = loadavg()
    stats0 = admin.stats()
    cpu0 = dep.cpu_snapshot()
    sampler.reset()
    t0 = time.time()
    status, body = dep.rest(
        "POST",
        f"/dags/{DAG_ID}/dagRuns",
        {
            "dag_run_id": run_id,
            "logical_date": None,
            "conf": {
                "prompts_file": str(prompts),
                "chunk_size": CHUNK_SIZE,
                "output_root": f"file://{out_root}",
            },
        },
    )
    if status not in (200, 201):
        raise RuntimeError(f"trigger failed: {status} {body}")
    log(f"N={n}: triggered {run_id} (1-min load {load_before:.2f})")
    timeline: list[dict[str, Any]] = []
    state, end_date, timed_out = None, None, False
    deadline = time.monotonic() + timeout
    last_print = 0.0
    while True:
        dep.stack.assert_alive()
        rows = dep.query(
            "SELECT state, end_date FROM dag_run WHERE dag_id=%s AND run_id=%s", (DAG_ID, run_id)
        )
        state, end_date = rows[0] if rows else (None, None)
        counts = dep.query(
            "SELECT task_id, state, count(*) FROM task_instance WHERE dag_id=%s AND run_id=%s GROUP BY 1, 2",
            (DAG_ID, run_id),
        )
        snap: dict[str, Any] = {"t": round(time.time() - t0, 1)}
        for task_id, ti_state, count in counts:
            snap.setdefault(task_id, {})[str(ti_state)] = count
        timeline.append(snap)
        if time.time() - last_print > 30:
            last_print = time.time()
            brief = {k: v for k, v in snap.items() if k.startswith("chunks")}
            log(f"N={n}: {snap['t']:.0f}s run {state}; {brief}")
        if state in ("success", "failed"):
            break
        if time.monotonic() > deadline:
            timed_out = True
            log(f"N={n}: not finished after {timeout:.0f} s; giving up on this run")
            break
        time.sleep(2)
    cpu1 = dep.cpu_snapshot()
    t_seen = time.time()
    stats1 = admin.stats()
    end = epoch(end_date) or t_seen
    wall = end - t0
    cpu = diff_cpu(cpu0, cpu1)
    airflow_cpu = sum(cpu[c]["total"] for c in COMPONENTS if c in cpu)
    routes = {
        r: stats1["by_route"].get(r, 0) - stats0["by_route"].get(r, 0)
        for r in set(stats1["by_route"]) | set(stats0["by_route"])
    }
    api_routes = {
        r: v for r, v in routes.items() if r in ("submit", "get", "tasks", "download_url", "media", "extend")
    }
    cycles = poller_cycles(dep.poller_log, t0, end + 5)
    manifest_paths = list(out_root.rglob("manifest.json"))
    manifest: dict[str, Any] = {}
    if manifest_paths:
        with contextlib.suppress(ValueError, OSError):
            data = json.loads(manifest_paths[0].read_text())
            gens = data.get("generations", [])
            manifest = {"entries": len(gens), "states": dict(Counter(g.get("state") for g in gens))}
    mismatches = sum(
        1
        for line in scheduler_lines(dep.stack.logs["scheduler"], t0, end + 2)
        if "but the task instance's state attribute is" in line and run_id in line
    )
    xcom_bytes = None
    with contextlib.suppress(Exception):
        rows = dep.query(
            "SELECT octet_length(value::text) FROM xcom WHERE dag_id=%s AND run_id=%s "
            "AND task_id='load_prompts' AND key='return_value'",
            (DAG_ID, run_id),
        )
        xcom_bytes = int(rows[0][0]) if rows else None
    result = {
        "n": n,
        "run_id": run_id,
        "executor_state_mismatches": mismatches,
        "load_prompts_xcom_bytes": xcom_bytes,
        "state": "timeout" if timed_out else state,
        "wall_s": round(wall, 1),
        "load_before": load_before,
        "load_after": loadavg(),
        "cpu_s": cpu,
        "airflow_cpu_s": round(airflow_cpu, 1),
        "postgres_cpu_s": cpu["postgres"]["total"],
        "sandbox_cpu_s": cpu["sandbox"]["total"],
        "submissions": stats1["submissions"] - stats0["submissions"],
        "sandbox_requests": sum(api_routes.values()),
        "sandbox_requests_by_route": dict(sorted(api_routes.items())),
        "videos": count_files(out_root, ".mp4"),
        "thumbnails": count_files(out_root, ".jpg"),
        "manifest": manifest,
        "triggerer_peak_rss_mib": round(sampler.peak_sum / 2**20, 1),
        "triggerer_peak_single_rss_mib": round(sampler.peak_single / 2**20, 1),
        "rss_samples": sampler.samples,
        "status": status_analysis(cycles),
        "tis": ti_timeline(dep, run_id, t0),
        "task_logs": task_log_phases(dep.stack.home, run_id),
        "api_server_access": api_access(dep.stack.logs["api-server"], t0, end + 2),
        "timeline": timeline,
    }
    log(
        f"N={n}: {result['state']} in {wall:.0f} s; Airflow CPU {airflow_cpu:.1f} s, postgres "
        f"{result['postgres_cpu_s']:.1f} s; submissions {result['submissions']}, videos {result['videos']}"
    )
    return result


def scheduler_lines(logfile: Path, start: float, end: float) -> Iterator[str]:
    """Scheduler log lines stamped within [start, end] (ISO timestamp first on the line)."""
    with open(logfile, errors="replace") as fh:
        for line in fh:
            with contextlib.suppress(ValueError, IndexError, TypeError):
                ts = epoch(line.split(" ", 1)[0])
                if ts is not None and start <= ts <= end:
                    yield line


def idle_window(dep: Deployment, seconds: float) -> dict[str, Any]:
    """CPU of the idle deployment (no run) over ``seconds``: what Airflow burns doing nothing."""
    load = loadavg()
    before = dep.cpu_snapshot()
    time.sleep(seconds)
    cpu = diff_cpu(before, dep.cpu_snapshot())
    rate = {name: round(v["total"] / seconds, 4) for name, v in cpu.items()}
    rate["airflow"] = round(sum(cpu[c]["total"] for c in COMPONENTS if c in cpu) / seconds, 4)
    return {"seconds": seconds, "cpu_s": cpu, "cpu_s_per_s": rate, "load_before": load}


# ------------------------------------------------------------------------------------ baseline

BASELINE_SCRIPT = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

cpu_start = time.process_time()
from luma_provider.hooks.luma import LumaHook
from luma_provider.prompts import load_prompt_file

prompts_file, out_dir, result_file = sys.argv[1:4]
threads, interval = int(sys.argv[4]), float(sys.argv[5])
cpu0, t0 = time.process_time(), time.monotonic()
rows = load_prompt_file(prompts_file)
hook = LumaHook()
_ = hook.settings, hook.session
with ThreadPoolExecutor(threads) as pool:
    gens = list(pool.map(lambda r: hook.submit_generation(r["prompt"], aspect_ratio=r["aspect_ratio"]), rows))
t_submitted = time.monotonic()
pending, done, polls = {g.id for g in gens}, {}, 0
while pending:
    time.sleep(interval)
    polls += 1
    for g in hook.get_generations(sorted(pending)):
        if g.is_terminal:
            done[g.id] = g
            pending.discard(g.id)
t_waited = time.monotonic()
dest = out_dir.rstrip("/") + "/"
with ThreadPoolExecutor(threads) as pool:
    list(pool.map(lambda g: (hook.download_video(g, dest), hook.download_thumbnail(g, dest)), done.values()))
t_end = time.monotonic()
json.dump({
    "wall_s": t_end - t0, "submit_s": t_submitted - t0, "wait_s": t_waited - t_submitted,
    "download_s": t_end - t_waited, "work_cpu_s": time.process_time() - cpu0,
    "import_cpu_s": cpu0 - cpu_start, "polls": polls,
    "completed": sum(g.state.value == "completed" for g in done.values()),
    "requests": hook.requests_sent,
}, open(result_file, "w"))
"""


def run_baseline(n: int, sandbox_url: str, work: Path, timeout: float, code: Path) -> dict[str, Any]:
    from luma_provider.sandbox import SandboxAdmin

    admin = SandboxAdmin(sandbox_url, api_key=API_KEY)
    prompts = write_prompts(work / f"prompts_baseline_{n}.yaml", n, f"baseline n={n}")
    out_dir = work / "baseline_out" / f"n{n}"
    out_dir.mkdir(parents=True)
    result_file = work / f"baseline_{n}.json"
    home = work / "baseline_home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LUMA_", "PYTHONPATH"))}
    env.update(
        PYTHONPATH=str(code),
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        AIRFLOW_CONN_LUMA_DEFAULT=luma_conn_json(sandbox_url),
    )
    load_before = loadavg()
    stats0 = admin.stats()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [PYTHON, "-c", BASELINE_SCRIPT, str(prompts), str(out_dir), str(result_file), str(BASELINE_THREADS),
         str(POLL_INTERVAL)],
        env=env, cwd=work, start_new_session=True,
    )  # fmt: skip
    code = wait_or_kill(proc, timeout)
    wall_process = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats1 = admin.stats()
    if code != 0:
        raise RuntimeError(f"baseline for N={n} exited {code}")
    inner = json.loads(result_file.read_text())
    result = {
        "n": n,
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in inner.items()},
        "process_wall_s": round(wall_process, 1),
        "process_cpu_s": round((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 2),
        "peak_rss_mib": round(ru1.ru_maxrss / 1024, 1),
        "submissions": stats1["submissions"] - stats0["submissions"],
        "videos": count_files(out_dir, ".mp4"),
        "load_before": load_before,
    }
    log(
        f"baseline N={n}: {result['wall_s']:.1f} s wall, {result['work_cpu_s']:.1f} s CPU "
        f"(process {result['process_cpu_s']:.1f}), {result['videos']} videos"
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------------- dags test


def run_dags_test(n: int, sandbox_url: str, work: Path, timeout: float, code: Path) -> dict[str, Any]:
    from luma_provider.sandbox import SandboxAdmin

    admin = SandboxAdmin(sandbox_url, api_key=API_KEY)
    home = work / "dagstest_home"
    home.mkdir()
    out_root = work / "dagstest_out"
    prompts = write_prompts(work / f"prompts_dagstest_{n}.yaml", n, f"dags test n={n}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LUMA_", "PYTHONPATH"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(code / "dags"),
            "PYTHONPATH": str(code),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_LUMA_DEFAULT": luma_conn_json(sandbox_url),
            "LUMA_POLL_INTERVAL": str(int(POLL_INTERVAL)),
            "LUMA_OUTPUT_ROOT": f"file://{out_root}",
        }
    )
    stack = Stack(work, home, env)
    stack.cli("db", "migrate")
    conf = json.dumps({"prompts_file": str(prompts), "chunk_size": CHUNK_SIZE})
    logfile = work / "proc_logs" / "dags-test.log"
    load_before = loadavg()
    stats0 = admin.stats()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            [str(AIRFLOW_BIN), "dags", "test", DAG_ID, "--conf", conf],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=work,
            start_new_session=True,
        )
    try:
        code: int | None = wait_or_kill(proc, timeout)
    except subprocess.TimeoutExpired:
        code = None
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats1 = admin.stats()
    con = sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True)
    try:
        runs = con.execute(
            "SELECT run_id, state, start_date, end_date FROM dag_run WHERE dag_id=? ORDER BY id DESC",
            (DAG_ID,),
        ).fetchall()
        tis = con.execute(
            "SELECT task_id, state, start_date, end_date FROM task_instance WHERE dag_id=?", (DAG_ID,)
        ).fetchall()
    finally:
        con.close()
    per_task: dict[str, dict[str, Any]] = {}
    for task_id, state, start, end in tis:
        p = per_task.setdefault(task_id, {"count": 0, "states": Counter(), "busy_s": 0.0})
        p["count"] += 1
        p["states"][state] += 1
        if start and end:
            p["busy_s"] += (epoch(end) or 0) - (epoch(start) or 0)
    result = {
        "n": n,
        "exit_code": code,
        "state": runs[0][1] if runs else None,
        "wall_s": round(wall, 1),
        "cpu_s": round((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 1),
        "submissions": stats1["submissions"] - stats0["submissions"],
        "videos": count_files(out_root, ".mp4"),
        "task_instances": len(tis),
        "by_task": {
            k: {"count": v["count"], "states": dict(v["states"]), "busy_s": round(v["busy_s"], 1)}
            for k, v in per_task.items()
        },
        "load_before": load_before,
        "load_after": loadavg(),
        "log_tail": tail(logfile, 5) if code != 0 else "",
    }
    log(
        f"dags test N={n}: exit {code}, run {result['state']}, {wall:.0f} s, {result['submissions']} "
        f"submissions, {result['videos']} videos"
    )
    return result


# ---------------------------------------------------------------------------------------- report


def fmt_n(n: int) -> str:
    return f"{n:,}"


def build_table(result: dict[str, Any]) -> str:
    runs = result["airflow_runs"]
    base = {b["n"]: b for b in result["baselines"]}
    sizes = [r["n"] for r in runs]
    headers = ["Metric", *(f"N = {fmt_n(n)}" for n in sizes), "Goal", "Result"]
    rows: list[list[Any]] = []

    def row(label: str, values: list[Any], goal: str = "report", res: str = "") -> None:
        rows.append([label, *values, goal, res])

    def per_prompt_overhead(r: dict[str, Any]) -> float:
        b = base.get(r["n"])
        return (r["airflow_cpu_s"] + r["postgres_cpu_s"] - (b["work_cpu_s"] if b else 0.0)) / r["n"]

    row(
        "Run state",
        [r["state"] for r in runs],
        "success",
        verdict(all(r["state"] == "success" for r in runs)),
    )
    row("Wall time, trigger -> run end, s", [f"{r['wall_s']:.0f}" for r in runs])
    row(
        "Baseline (one process, LumaHook): wall s",
        [f"{base[n]['wall_s']:.0f}" if n in base else "-" for n in sizes],
    )
    row(
        "Airflow CPU s (4 components, whole trees)",
        [f"{r['airflow_cpu_s']:.1f}" for r in runs],
    )
    row("Airflow CPU s per prompt", [f"{r['airflow_cpu_s'] / r['n']:.4f}" for r in runs])
    row("Postgres CPU s", [f"{r['postgres_cpu_s']:.1f}" for r in runs])
    row(
        "Baseline CPU s (work / whole process)",
        [
            f"{base[n]['work_cpu_s']:.1f} / {base[n]['process_cpu_s']:.1f}" if n in base else "-"
            for n in sizes
        ],
    )
    k1000 = next((r for r in runs if r["n"] == 1000), None)
    ok_overhead = k1000 is not None and per_prompt_overhead(k1000) <= GOAL_OVERHEAD_CPU_PER_PROMPT
    row(
        "**Overhead CPU s per prompt** ((Airflow + Postgres - baseline work) / N)",
        [f"{per_prompt_overhead(r):.4f}" for r in runs],
        f"<= {GOAL_OVERHEAD_CPU_PER_PROMPT} at N = 1,000",
        verdict(ok_overhead) if k1000 else "not run",
    )
    row(
        "CPU s by component: scheduler (incl. executor + tasks)",
        [f"{r['cpu_s']['scheduler']['total']:.1f}" for r in runs],
    )
    row(
        "... of which task processes (scheduler's children)",
        [
            f"{r['cpu_s']['scheduler']['reaped_children'] + r['cpu_s']['scheduler']['live_descendants']:.1f}"
            for r in runs
        ],
    )
    for comp in ("api-server", "triggerer", "dag-processor"):
        row(f"CPU s by component: {comp}", [f"{r['cpu_s'][comp]['total']:.1f}" for r in runs])
    row("Sandbox CPU s (the fake gateway; context)", [f"{r['sandbox_cpu_s']:.1f}" for r in runs])
    row("Task instances of the run", [fmt_n(r["tis"]["task_instances"]) for r in runs])

    def store_calls(r: dict[str, Any]) -> int:
        routes = r.get("api_server_access", {}).get("by_route", {})
        return sum(v["requests"] for k, v in routes.items() if "/execution/store/" in k)

    row(
        "api-server requests (of which task state store)",
        [
            f"{fmt_n(r.get('api_server_access', {}).get('requests', 0))} ({fmt_n(store_calls(r))})"
            for r in runs
        ],
    )

    def submit_phase(r: dict[str, Any]) -> str:
        sp, pp = r["task_logs"].get("submit_phase_s"), r["task_logs"].get("submit_seconds_per_prompt")
        if not sp or not pp:
            return "-"
        return f"{sp['median']:.1f} / {sp['max']:.1f} ({pp['median'] * 1000:.0f} ms)"

    row("Submit phase of a 100-prompt chunk, median / max s (per prompt)", [submit_phase(r) for r in runs])
    row("Sandbox API requests", [fmt_n(r["sandbox_requests"]) for r in runs])
    row(
        "Tasks retried after the stale executor-event race (scheduler 'state mismatch')",
        [str(r.get("executor_state_mismatches", "-")) for r in runs],
    )
    row(
        "Submissions",
        [fmt_n(r["submissions"]) for r in runs],
        "= N",
        verdict(all(r["submissions"] == r["n"] for r in runs)),
    )
    row(
        "Videos on disk",
        [fmt_n(r["videos"]) for r in runs],
        "= N",
        verdict(all(r["videos"] == r["n"] for r in runs)),
    )
    row("Triggerer tree peak RSS, MiB (largest process)", [
        f"{r['triggerer_peak_rss_mib']:.0f} ({r['triggerer_peak_single_rss_mib']:.0f})" for r in runs
    ])  # fmt: skip
    polled = [r for r in runs if r["status"].get("cycles", 0) > 0]
    st_ok = bool(polled) and all(
        r["status"]["cycles_over_ceil_ids"] == 0 and r["status"]["cycles_over_ceil_waiting"] == 0
        for r in polled
    )
    row(
        "Status requests per poll cycle: max (ids in that cycle)",
        [
            f"{r['status']['max_requests_per_cycle']} ({r['status']['ids_in_that_cycle']})"
            if r["status"].get("cycles")
            else "no deferral (all done when the waits ran)"
            for r in runs
        ],
        "<= ceil(waiting ids / 100)",
        verdict(st_ok) if polled else "not exercised",
    )
    row(
        "Cycles over ceil(ids / 100) / cycles",
        [f"{r['status'].get('cycles_over_ceil_ids', '-')} / {r['status'].get('cycles', 0)}" for r in runs],
    )
    row(
        "Max waiting ids; max requests in one 2 s interval",
        [
            f"{r['status'].get('max_waiting_ids', '-')}; {r['status'].get('max_requests_per_interval', '-')}"
            for r in runs
        ],
    )
    k10 = next((r for r in runs if r["n"] == 10000), None)
    if k10 is not None:
        ok10 = (
            k10["state"] == "success"
            and k10["wall_s"] <= GOAL_10K_WALL_S
            and k10["videos"] == 10000
            and k10["submissions"] == 10000
        )
        rows.append(
            [
                "**N = 10,000: wall <= 10 min, all videos, exactly 10,000 submissions**",
                *["" if r["n"] != 10000 else f"{r['wall_s']:.0f} s" for r in runs],
                "<= 600 s",
                verdict(ok10),
            ]
        )
    lines = [
        f"### Batch at scale: luma_daily_content on Airflow {result['airflow_version']} (LocalExecutor, "
        "PostgreSQL 15), chunk_size 100, generations done in 7 s",
        "",
        markdown_table(headers, rows),
    ]
    dt_ = result.get("dags_test")
    if dt_:
        ok = (
            dt_["state"] == "success"
            and dt_["exit_code"] == 0
            and dt_["wall_s"] <= GOAL_DAGS_TEST_WALL_S
            and dt_["submissions"] == dt_["n"]
            and dt_["videos"] == dt_["n"]
        )
        lines += [
            "",
            f"### `airflow dags test {DAG_ID}` with {fmt_n(dt_['n'])} prompts (SQLite AIRFLOW_HOME)",
            "",
            markdown_table(
                ["Metric", "Value", "Goal", "Result"],
                [
                    ["Exit code / run state", f"{dt_['exit_code']} / {dt_['state']}", "0 / success", ""],
                    ["Wall s (command start -> exit)", f"{dt_['wall_s']:.0f}", "<= 120", ""],
                    ["CPU s (the command's process tree)", f"{dt_['cpu_s']:.1f}", "report", ""],
                    ["Submissions", fmt_n(dt_["submissions"]), "= N", ""],
                    ["Videos on disk", fmt_n(dt_["videos"]), "= N", ""],
                    ["Task instances", dt_["task_instances"], "report", ""],
                    ["All of the above", "", "", verdict(ok)],
                ],
            ),
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main


class Interrupted(BaseException):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="250,1000,10000", help="comma-separated prompt counts")
    parser.add_argument(
        "--dags-test-n", type=int, default=1000, help="prompts for `airflow dags test` (0: skip)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: --sizes 50,250 --dags-test-n 100")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--idle-seconds", type=float, default=30.0, help="idle window measured before the runs"
    )
    parser.add_argument(
        "--max-load",
        type=float,
        default=1.5,
        help="wait (up to 5 min) for this 1-min load before each measurement",
    )
    parser.add_argument("--run-timeout", type=float, default=1800.0, help="give up on one run after this")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (logs, AIRFLOW_HOME) for inspection"
    )
    parser.add_argument("--json", type=Path, default=HERE / "results" / "airflow_batch.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.dags_test_n, args.idle_seconds = "50,250", 100, 10.0
        args.max_load = max(args.max_load, 99.0)  # a smoke test does not wait for a quiet machine
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    def on_term(signum: int, _frame: Any) -> None:
        # Once: a second Ctrl-C must not cut the teardown short (it stops everything anyway).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Interrupted(f"signal {signum}")

    # SIGINT explicitly too: a background job may have inherited SIGINT ignored.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    drivers = ensure_drivers()
    import airflow

    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "airflow_version": airflow.__version__,
        "drivers": drivers,
        "sizes": sizes,
        "quick": args.quick,
        "load_start": loadavg(),
        "baselines": [],
        "airflow_runs": [],
        "settings": {
            "chunk_size": CHUNK_SIZE,
            "queue_seconds": QUEUE_SECONDS,
            "process_seconds": PROCESS_SECONDS,
            "poll_interval": POLL_INTERVAL,
            "baseline_threads": BASELINE_THREADS,
        },
    }
    work = Path(tempfile.mkdtemp(prefix="luma-bench-af-"))
    started = time.monotonic()
    failed: str | None = None
    try:
        with contextlib.ExitStack() as stack:
            if not args.keep:
                stack.callback(shutil.rmtree, work, ignore_errors=True)
            sandbox = stack.enter_context(
                sandbox_process(queue_seconds=QUEUE_SECONDS, process_seconds=PROCESS_SECONDS)
            )
            log(f"sandbox {sandbox} (pid {sandbox.pid}); work dir {work}")
            result["code"] = snapshot_code(work)
            code = Path(result["code"]["path"])
            log(f"running from a copy of luma_provider/ + dags/: {result['code']}")
            if not args.no_baseline:
                for n in sizes:
                    wait_for_quiet_machine(args.max_load, max_wait=300, step=15)
                    result["baselines"].append(run_baseline(n, sandbox, work, args.run_timeout, code))
            try:
                airflow_part(args, sizes, sandbox, work, result, code)
            except Exception as exc:  # keep what was measured; the dags test still runs
                failed = f"{type(exc).__name__}: {exc}"
                log(f"airflow part failed: {failed}")
            if args.dags_test_n:
                wait_for_quiet_machine(args.max_load, max_wait=300, step=15)
                result["dags_test"] = run_dags_test(
                    args.dags_test_n, sandbox, work, max(600.0, args.run_timeout / 3), code
                )
    except (KeyboardInterrupt, Interrupted) as exc:
        failed = f"interrupted ({exc or 'Ctrl-C'})"
        log(failed)
    except Exception as exc:
        failed = f"{type(exc).__name__}: {exc}"
        log(f"failed: {failed}")
    result["seconds"] = round(time.monotonic() - started)
    result["load_end"] = loadavg()
    result["error"] = failed
    if result["airflow_runs"]:
        result["table"] = build_table(result)
        print(result["table"])
    else:
        result["table"] = f"### airflow_batch: no Airflow run finished ({failed})"
    if args.keep:
        log(f"kept {work}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
        log(f"raw results: {args.json}")
    return 1 if failed else 0


def airflow_part(
    args: argparse.Namespace, sizes: list[int], sandbox: Any, work: Path, result: dict[str, Any], code: Path
) -> None:
    """Postgres + the four Airflow components; one run per N; everything stopped on the way out."""
    instrument = work / "instrument"
    instrument.mkdir()
    (instrument / "sitecustomize.py").write_text(SITECUSTOMIZE)
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(postgres_cluster())
        home = work / "airflow_home"
        home.mkdir()
        api_port = free_port()
        env = airflow_env(home, pg.url, api_port, work / "out", str(sandbox), code)
        airflow = Stack(work, home, env)
        stack.callback(airflow.stop_all)
        dep = Deployment(airflow, pg, api_port, sandbox, work / "poller_cycles.jsonl")
        stack.callback(dep.close)
        t = time.monotonic()
        dep.start(instrument)
        result["startup_s"] = round(time.monotonic() - t, 1)
        sampler = RssSampler(lambda: airflow.pid("triggerer"))
        sampler.start()
        stack.callback(sampler.stop.set)
        wait_for_quiet_machine(args.max_load, max_wait=300, step=15)
        result["idle"] = idle_window(dep, args.idle_seconds)
        log(f"idle: {result['idle']['cpu_s_per_s']} CPU-s/s")
        for n in sizes:
            wait_for_quiet_machine(args.max_load, max_wait=300, step=15)
            timeout = min(args.run_timeout, 600 + n * 0.15)
            result["airflow_runs"].append(run_airflow(dep, sampler, n, work, timeout))
            time.sleep(5)


if __name__ == "__main__":
    sys.exit(main())
