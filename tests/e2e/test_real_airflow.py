"""End-to-end: the daily content DAG on a real Airflow (api-server, scheduler, dag-processor, triggerer).

One test, one temporary AIRFLOW_HOME, LocalExecutor on SQLite, every component a separate
subprocess, the Luma gateway faked by ``LumaSandbox`` in this process. It checks what only a real
deployment can show:

* the ``generate.wait`` sensors are really *deferred* (TI state ``deferred``, rows in ``trigger``,
  no ``running`` TI, and six waits at once with ``parallelism=4``);
* a triggerer killed with SIGKILL mid-wait is replaced by a new one that resumes every wait;
* the run succeeds, the gateway saw exactly one submission per prompt (nothing paid twice, not
  even across the triggerer restart), the manifest and the videos are on disk;
* the API key never appears in any file Airflow wrote (task/triggerer/scheduler/api-server logs,
  outputs, manifest) nor in any column of any table of the metadata DB.

Generations are *held* (long processing time) until the new triggerer has taken the triggers
over, then released, so the timeline does not depend on how fast a loaded machine is.
Run: ``pytest tests/e2e -m system -s`` (about 2-4 minutes; budget 8).
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
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
DAG_ID = "luma_daily_content"
API_KEY = "sk-E2E-SECRET-7f3a"
PARALLELISM = 4
PROMPTS = [
    ("A lighthouse at dawn, waves crashing in slow motion, drone orbit shot", "16:9"),
    ("Close-up of ink drops blooming in water, macro, studio light", "1:1"),
    ("A fox trotting through fresh snow in a birch forest, tracking shot", "16:9"),
    ("Vertical teaser: neon sign flickering on in a rainy alley", "9:16"),
    ("Timelapse of clouds rolling over a mountain ridge at sunset", "4:3"),
    ("A paper plane gliding across a sunlit classroom, handheld camera", "3:4"),
]
#: Sandbox timings: every generation is pending QUEUE_S then processing HOLD_S. HOLD_S is long on
#: purpose; the test releases the generations once the restarted triggerer has taken over (and if
#: it cannot, they complete on their own after HOLD_S, the test is only slower).
QUEUE_S = 3.0
HOLD_S = 180.0
#: Overall budget of the test (seconds): a deadline for every wait below.
BUDGET_S = 480.0

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

    def __init__(self, path: Path) -> None:
        self.path = path

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
        sql = "SELECT task_id, map_index, state, try_number, trigger_id FROM task_instance WHERE dag_id=? AND run_id=?"
        params: tuple = (DAG_ID, run_id)
        if task_id:
            sql += " AND task_id=?"
            params += (task_id,)
        return self.query(sql + " ORDER BY task_id, map_index", params)

    def run_state(self, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id=? AND run_id=?", (DAG_ID, run_id))
        return rows[0][0] if rows else None


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


def fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def release_generations(sandbox: Any) -> int:
    """Make every held generation complete now (reaches into the sandbox's in-memory store).

    Returns how many were released, or -1 when the sandbox internals changed (the generations
    then complete by themselves after ``HOLD_S``).
    """
    state = getattr(sandbox, "_state", None)
    store = getattr(state, "store", None)
    gens = getattr(store, "generations", None)
    if not isinstance(gens, dict):
        return -1

    def release() -> int:
        for gen in gens.values():
            gen.queue_s = 0.0
            gen.process_s = 0.0
        return len(gens)

    return sandbox._call(release)


def text_values(value: Any) -> list[str]:
    """Every way a DB cell could hold text: str, utf-8 bytes, zlib-compressed bytes."""
    if value is None or isinstance(value, (int, float)):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, memoryview)):
        raw = bytes(value)
        out = [raw.decode("utf-8", errors="ignore"), raw.decode("latin-1")]
        with contextlib.suppress(zlib.error):
            out.append(zlib.decompress(raw).decode("utf-8", errors="ignore"))
        return out
    return [str(value)]


# ------------------------------------------------------------------------------------------ test


@pytest.fixture
def stack_env(tmp_path: Path):
    from luma_provider.sandbox import LumaSandbox

    home = tmp_path / "airflow_home"
    home.mkdir()
    (tmp_path / "out").mkdir()
    sandbox = LumaSandbox(port=0, api_key=API_KEY, queue_seconds=QUEUE_S, process_seconds=HOLD_S).start()
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LUMA_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
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
            # How long a dead triggerer's triggers stay assigned to it before another takes them.
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
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
    stack = AirflowStack(tmp_path, env)
    try:
        yield stack, sandbox, tmp_path, home, api_port
    finally:
        stack.stop_all()
        leftovers = stack.kill_leftovers(home)
        sandbox.stop()
        assert not leftovers, f"processes survived the teardown (killed now): {leftovers}"


def test_daily_content_on_real_airflow(stack_env) -> None:
    stack, sandbox, root, home, api_port = stack_env
    deadline = Deadline(BUDGET_S)
    db = MetaDB(home / "airflow.db")
    run_id = f"e2e__{secrets.token_hex(4)}"
    try:
        _run_scenario(stack, sandbox, root, home, api_port, deadline, db, run_id)
    except BaseException:
        print(_diagnostics(stack, db, run_id, root), file=sys.stderr)
        raise


def _run_scenario(
    stack: AirflowStack,
    sandbox: Any,
    root: Path,
    home: Path,
    api_port: int,
    deadline: Deadline,
    db: MetaDB,
    run_id: str,
) -> None:
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[e2e {time.monotonic() - t0:6.1f}s] {msg}", flush=True)

    # ---- 1. metadata DB and the components -----------------------------------------------------
    stack.cli("db", "migrate", timeout=deadline.left(300))
    log("db migrated")
    stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port))
    wait_for(
        "api-server health",
        lambda: http_ok(f"http://127.0.0.1:{api_port}/api/v2/monitor/health"),
        deadline.left(180),
        on_tick=stack.assert_alive,
    )
    log("api-server healthy")
    stack.start("scheduler", "scheduler")
    stack.start("dag-processor", "dag-processor")
    stack.start("triggerer", "triggerer")

    def dag_parsed() -> bool:
        return bool(db.query("SELECT 1 FROM serialized_dag WHERE dag_id=?", (DAG_ID,)))

    wait_for(f"{DAG_ID} to be parsed", dag_parsed, deadline.left(180), interval=2, on_tick=stack.assert_alive)
    wait_for(
        "a live triggerer job",
        lambda: _triggerer_jobs(db, running_only=True),
        deadline.left(120),
        interval=2,
        on_tick=stack.assert_alive,
    )
    log("dag parsed, triggerer up")

    # ---- 2. trigger the run ----------------------------------------------------------------
    prompts_file = root / "prompts.yaml"
    prompts_file.write_text(
        "".join(f"- prompt: {json.dumps(p)}\n  aspect_ratio: {json.dumps(a)}\n" for p, a in PROMPTS)
    )
    stack.cli("dags", "unpause", DAG_ID, timeout=deadline.left(180))
    # No logical date: the CLI/REST default on Airflow 3, where ``{{ ds }}`` is undefined; the DAG
    # must name its output folder from dag_run.run_after instead.
    stack.cli(
        "dags",
        "trigger",
        DAG_ID,
        "--run-id",
        run_id,
        "-c",
        json.dumps({"prompts_file": str(prompts_file)}),
        timeout=deadline.left(180),
    )
    log(f"triggered {run_id}")

    # ---- 3. all six waits deferred, none holding a worker slot --------------------------------
    def run_not_failed() -> None:
        stack.assert_alive()
        state = db.run_state(run_id)
        if state == "failed":
            raise AssertionError(f"run {run_id} failed early: {db.tis(run_id)}")

    def all_waits_deferred() -> bool:
        waits = db.tis(run_id, "generate.wait")
        done = [r for r in waits if r[2] in ("success", "failed", "up_for_retry", "skipped")]
        assert not done, f"a wait ended before all were deferred (machine too slow for HOLD_S?): {waits}"
        return len(waits) == len(PROMPTS) and all(r[2] == "deferred" and r[4] is not None for r in waits)

    wait_for(
        "every generate.wait to be deferred", all_waits_deferred, deadline.left(240), on_tick=run_not_failed
    )
    log("all waits deferred")
    submits = db.tis(run_id, "generate.submit")
    assert [r[2] for r in submits] == ["success"] * len(PROMPTS), submits
    trigger_cols = db.columns("trigger")
    trigger_ids = sorted(r[4] for r in db.tis(run_id, "generate.wait"))
    assert len(set(trigger_ids)) == len(PROMPTS), f"one trigger per wait expected: {trigger_ids}"

    def triggers() -> dict[int, dict[str, Any]]:
        rows = db.query(
            f"SELECT * FROM trigger WHERE id IN ({','.join('?' * len(trigger_ids))})", tuple(trigger_ids)
        )
        return {row[0]: dict(zip(trigger_cols, row, strict=False)) for row in rows}

    # Held for a while: still deferred, still no running wait, nothing running at all.
    polls_before = _status_polls(sandbox)
    for _ in range(3):
        waits = db.tis(run_id, "generate.wait")
        assert all(r[2] == "deferred" for r in waits), waits
        running = db.query("SELECT task_id, map_index FROM task_instance WHERE state='running'")
        assert running == [], f"a worker slot is held while the sensors wait: {running}"
        assert len(triggers()) == len(PROMPTS)
        time.sleep(2)
    # Six concurrent waits with parallelism=4 are only possible without worker slots.
    assert len(PROMPTS) > PARALLELISM
    wait_for(
        "the triggerer to poll the gateway",
        lambda: _status_polls(sandbox) > polls_before,
        deadline.left(60),
        on_tick=stack.assert_alive,
    )
    first = triggers()
    assert all(t["triggerer_id"] is not None for t in first.values()), first
    assert all(t["classpath"] == "luma_provider.triggers.luma.LumaTrigger" for t in first.values()), first
    _check_trigger_kwargs(first.values(), stack.env["AIRFLOW__CORE__FERNET_KEY"], db, run_id)
    old_triggerers = {t["triggerer_id"] for t in first.values()}
    assert len(old_triggerers) == 1, old_triggerers
    log(
        f"{len(first)} triggers on triggerer job(s) {old_triggerers}; sandbox polls so far {_status_polls(sandbox)}"
    )

    # ---- 4. SIGKILL the triggerer mid-wait, start a new one --------------------------------------
    stack.kill("triggerer", signal.SIGKILL)
    log("triggerer killed")
    assert all(r[2] == "deferred" for r in db.tis(run_id, "generate.wait"))
    assert set(triggers()) == set(trigger_ids), "triggers must survive the triggerer"
    stack.start("triggerer-2", "triggerer")

    def taken_over() -> bool:
        current = triggers()
        return len(current) == len(PROMPTS) and all(
            t["triggerer_id"] is not None and t["triggerer_id"] not in old_triggerers
            for t in current.values()
        )

    wait_for(
        "the new triggerer to take every trigger over",
        taken_over,
        deadline.left(180),
        interval=2,
        on_tick=run_not_failed,
    )
    new_triggerers = {t["triggerer_id"] for t in triggers().values()}
    polls_at_takeover = _status_polls(sandbox)
    wait_for(
        "the new triggerer to poll",
        lambda: _status_polls(sandbox) > polls_at_takeover,
        deadline.left(60),
        on_tick=run_not_failed,
    )
    log(
        f"new triggerer took over; waits still deferred: "
        f"{sum(r[2] == 'deferred' for r in db.tis(run_id, 'generate.wait'))}"
    )
    assert sandbox.submissions == len(PROMPTS)
    released = release_generations(sandbox)
    log(f"released {released} generations")

    # ---- 5. the run succeeds ---------------------------------------------------------------------
    def finished() -> str | None:
        state = db.run_state(run_id)
        return state if state in ("success", "failed") else None

    state = wait_for(
        f"run {run_id} to finish", finished, deadline.left(), interval=2, on_tick=stack.assert_alive
    )
    log(f"run finished: {state}")
    tis = db.tis(run_id)
    assert state == "success", tis
    assert all(r[2] == "success" for r in tis), tis
    # Deferral and resumption are one try; nothing was retried.
    assert all(r[3] == 1 for r in tis), f"a task was retried: {tis}"
    assert triggers() == {}, "fired triggers are cleaned up"
    # Each wait ran in both triggerers: its trigger log exists once per triggerer job.
    run_logs = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=generate.wait"
    for i in range(len(PROMPTS)):
        names = {p.name for p in (run_logs / f"map_index={i}").glob("attempt=1.log.trigger.*.log")}
        expected = {f"attempt=1.log.trigger.{j}.log" for j in old_triggerers | new_triggerers}
        assert names == expected, (i, names, expected)
    stats = sandbox.stats()
    assert stats["submissions"] == len(PROMPTS), {k: stats[k] for k in ("submissions", "by_route")}
    log(
        f"sandbox: submissions={stats['submissions']} by_route={stats['by_route']} by_status={stats['by_status']}"
    )
    # The key was really used (the sandbox enforces it) and always accepted.
    assert not {"401", "403"} & set(stats["by_status"]), stats["by_status"]

    manifests = list((root / "out").rglob("manifest.json"))
    assert len(manifests) == 1, manifests
    folder = manifests[0].parent
    manifest = json.loads(manifests[0].read_text())
    entries = manifest["generations"]
    assert sorted(e["prompt"] for e in entries) == sorted(p for p, _ in PROMPTS)
    assert all(e["state"] == "completed" for e in entries), entries
    assert len({e["generation_id"] for e in entries}) == len(PROMPTS)
    for e in entries:
        assert e["video"] and (folder / e["video"]).stat().st_size > 0, e
        assert e["thumbnail"] and (folder / e["thumbnail"]).stat().st_size > 0, e
    assert (folder / "index.html").is_file()

    store_rows = _task_state_store(db, run_id)
    log(f"task_state_store rows for generate.submit: {len(store_rows)}")
    if store_rows is not None:
        assert sorted(store_rows) == sorted(e["generation_id"] for e in entries), store_rows

    # ---- 6. the key is nowhere: files and metadata DB ------------------------------------------------
    stack.stop_all()  # let every process flush its logs first
    log("stack stopped; scanning for the API key")
    # Positive control: the scanners do find the key where it is.
    canary = root.parent / f"{root.name}-canary"
    canary.mkdir(exist_ok=True)
    (canary / "c.log").write_text(f"Authorization: Bearer {API_KEY}\n")
    assert _scan_files(canary) == ["c.log (1x)"]
    assert any(API_KEY in t for t in text_values(zlib.compress(API_KEY.encode())))
    file_hits = _scan_files(root)
    db_hits = _scan_db(home / "airflow.db")
    scanned = sum(1 for p in root.rglob("*") if p.is_file())
    log(f"scanned {scanned} files and every table of the DB")
    assert not file_hits, f"API key found in files: {file_hits}"
    assert not db_hits, f"API key found in the metadata DB: {db_hits}"
    log("done")


# ------------------------------------------------------------------------------- scenario helpers


def _triggerer_jobs(db: MetaDB, running_only: bool = False) -> list[tuple]:
    sql = "SELECT id, state FROM job WHERE job_type='TriggererJob'"
    return db.query(sql + (" AND state='running'" if running_only else ""))


def _status_polls(sandbox: Any) -> int:
    routes = sandbox.stats()["by_route"]
    return sum(n for route, n in routes.items() if route in ("tasks", "get"))


def _check_trigger_kwargs(triggers: Any, fernet: str, db: MetaDB, run_id: str) -> None:
    """Trigger kwargs (decrypted if Airflow encrypts them) hold ids and numbers, never the key."""
    from cryptography.fernet import Fernet, InvalidToken

    for trig in triggers:
        raw = trig.get("encrypted_kwargs") or trig.get("kwargs")
        assert raw, trig
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        with contextlib.suppress(InvalidToken, ValueError):
            text = Fernet(fernet.encode()).decrypt(text.encode()).decode()
        assert API_KEY not in text, "API key in trigger kwargs"
        assert "generation_ids" in text and "luma_default" in text, text[:500]
        assert "deadline" in text, text[:500]


def _task_state_store(db: MetaDB, run_id: str) -> list[str] | None:
    tables = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type='table'")}
    if "task_state_store" not in tables:
        return None
    cols = db.columns("task_state_store")
    rows = [dict(zip(cols, r, strict=False)) for r in db.query("SELECT * FROM task_state_store")]
    values = []
    for row in rows:
        if row.get("key") == "luma_generation_id":
            value = row.get("value")
            with contextlib.suppress(TypeError, ValueError):
                value = json.loads(value)
            values.append(str(value))
    return values


def _scan_files(root: Path) -> list[str]:
    needle = API_KEY.encode()
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


def _scan_db(path: Path) -> list[str]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    hits = []
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cur = con.execute(f'SELECT * FROM "{table}"')
            cols = [d[0] for d in cur.description]
            for row in cur:
                for col, value in zip(cols, row, strict=False):
                    if any(API_KEY in t for t in text_values(value)):
                        hits.append(f"{table}.{col}")
    finally:
        con.close()
    return sorted(set(hits))


def _diagnostics(stack: AirflowStack, db: MetaDB, run_id: str, root: Path) -> str:
    parts = ["\n#################### e2e diagnostics ####################", stack.tails()]
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
    task_logs = sorted((root / "airflow_home" / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)
    for log in task_logs[-4:]:
        parts.append(f"\n===== {log.relative_to(root)} =====\n{tail(log, 30)}")
    return "\n".join(parts)
