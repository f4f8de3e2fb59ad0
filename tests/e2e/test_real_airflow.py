"""End-to-end: the daily content DAG on a real Airflow (api-server, scheduler, dag-processor, triggerer).

One test, one temporary AIRFLOW_HOME, LocalExecutor on SQLite, every component a separate
subprocess, the Luma gateway faked by ``LumaSandbox`` in this process. It checks what only a real
deployment can show:

* the prompts run in chunks of 2 (``chunk_size``): each chunk's ``chunks.wait`` sensor is
  really *deferred* (TI state ``deferred``, one trigger per chunk, no ``running`` TI, and three
  deferred chunks at once with ``parallelism=2``);
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

import contextlib
import json
import secrets
import signal
import sqlite3
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_stack import E2E, AirflowStack, Deadline, MetaDB, airflow_stack, files_with, timeline, wait_for

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
DAG_ID = "luma_daily_content"
API_KEY = "sk-E2E-SECRET-7f3a"
PARALLELISM = 2
CHUNK_SIZE = 2
PROMPTS = [
    ("A lighthouse at dawn, waves crashing in slow motion, drone orbit shot", "16:9"),
    ("Close-up of ink drops blooming in water, macro, studio light", "1:1"),
    ("A fox trotting through fresh snow in a birch forest, tracking shot", "16:9"),
    ("Vertical teaser: neon sign flickering on in a rainy alley", "9:16"),
    ("Timelapse of clouds rolling over a mountain ridge at sunset", "4:3"),
    ("A paper plane gliding across a sunlit classroom, handheld camera", "3:4"),
]
#: The deferred task of each chunk (one wait for all its prompts), and how many chunks.
WAIT_TASK = "chunks.wait"
CHUNKS = -(-len(PROMPTS) // CHUNK_SIZE)
#: Sandbox timings: every generation is pending QUEUE_S then processing HOLD_S. HOLD_S is long on
#: purpose; the test releases the generations once the restarted triggerer has taken over (and if
#: it cannot, they complete on their own after HOLD_S, the test is only slower).
QUEUE_S = 3.0
HOLD_S = 180.0
#: Overall budget of the test (seconds): a deadline for every wait below.
BUDGET_S = 480.0


# --------------------------------------------------------------------------------------- helpers


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
def e2e(tmp_path: Path) -> Iterator[E2E]:
    from luma_provider.sandbox import LumaSandbox

    sandbox = LumaSandbox(port=0, api_key=API_KEY, queue_seconds=QUEUE_S, process_seconds=HOLD_S)
    with airflow_stack(
        tmp_path, sandbox, dag_id=DAG_ID, dags_folder=DAGS_FOLDER, parallelism=PARALLELISM
    ) as deployment:
        yield deployment


def test_daily_content_on_real_airflow(e2e: E2E) -> None:
    run_id = f"e2e__{secrets.token_hex(4)}"
    e2e.run_ids.append(run_id)
    try:
        _run_scenario(e2e.stack, e2e.sandbox, e2e.root, e2e.home, e2e, Deadline(BUDGET_S), e2e.db, run_id)
    except BaseException:
        print(e2e.diagnostics(), file=sys.stderr)
        raise


def _run_scenario(
    stack: AirflowStack,
    sandbox: Any,
    root: Path,
    home: Path,
    e2e: E2E,
    deadline: Deadline,
    db: MetaDB,
    run_id: str,
) -> None:
    log = timeline()

    # ---- 1. metadata DB and the components -----------------------------------------------------
    e2e.start_airflow(deadline, log)

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
        json.dumps({"prompts_file": str(prompts_file), "chunk_size": CHUNK_SIZE}),
        timeout=deadline.left(180),
    )
    log(f"triggered {run_id}")

    # ---- 3. every chunk deferred, none holding a worker slot ---------------------------------------
    def run_not_failed() -> None:
        stack.assert_alive()
        state = db.run_state(run_id)
        if state == "failed":
            raise AssertionError(f"run {run_id} failed early: {db.tis(run_id)}")

    def all_waits_deferred() -> bool:
        waits = db.tis(run_id, WAIT_TASK)
        done = [r for r in waits if r[2] in ("success", "failed", "up_for_retry", "skipped")]
        assert not done, f"a wait ended before all were deferred (machine too slow for HOLD_S?): {waits}"
        return len(waits) == CHUNKS and all(r[2] == "deferred" and r[4] is not None for r in waits)

    wait_for(
        f"every {WAIT_TASK} to be deferred", all_waits_deferred, deadline.left(240), on_tick=run_not_failed
    )
    log("all chunks deferred")
    # Every prompt was submitted before its chunk deferred.
    assert sandbox.submissions == len(PROMPTS)
    trigger_cols = db.columns("trigger")
    trigger_ids = sorted(r[4] for r in db.tis(run_id, WAIT_TASK))
    assert len(set(trigger_ids)) == CHUNKS, f"one trigger per chunk expected: {trigger_ids}"

    def triggers() -> dict[int, dict[str, Any]]:
        rows = db.query(
            f"SELECT * FROM trigger WHERE id IN ({','.join('?' * len(trigger_ids))})", tuple(trigger_ids)
        )
        return {row[0]: dict(zip(trigger_cols, row, strict=False)) for row in rows}

    # Held for a while: still deferred, still no running wait, nothing running at all.
    polls_before = _status_polls(sandbox)
    for _ in range(3):
        waits = db.tis(run_id, WAIT_TASK)
        assert all(r[2] == "deferred" for r in waits), waits
        running = db.query("SELECT task_id, map_index FROM task_instance WHERE state='running'")
        assert running == [], f"a worker slot is held while the sensors wait: {running}"
        assert len(triggers()) == CHUNKS
        time.sleep(2)
    # Three concurrent waits with parallelism=2 are only possible without worker slots.
    assert CHUNKS > PARALLELISM
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
    assert all(r[2] == "deferred" for r in db.tis(run_id, WAIT_TASK))
    assert set(triggers()) == set(trigger_ids), "triggers must survive the triggerer"
    stack.start("triggerer-2", "triggerer")

    def taken_over() -> bool:
        current = triggers()
        return len(current) == CHUNKS and all(
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
        f"{sum(r[2] == 'deferred' for r in db.tis(run_id, WAIT_TASK))}"
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
    run_logs = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={WAIT_TASK}"
    for i in range(CHUNKS):
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
    log(f"task_state_store rows for chunks.submit: {'no table' if store_rows is None else len(store_rows)}")
    if store_rows is not None:
        assert sorted(store_rows) == sorted(e["generation_id"] for e in entries), store_rows

    # ---- 6. the key is nowhere: files and metadata DB ------------------------------------------------
    stack.stop_all()  # let every process flush its logs first
    log("stack stopped; scanning for the API key")
    # Positive control: the scanners do find the key where it is.
    canary = root.parent / f"{root.name}-canary"
    canary.mkdir(exist_ok=True)
    (canary / "c.log").write_text(f"Authorization: Bearer {API_KEY}\n")
    assert files_with(API_KEY, canary) == ["c.log (1x)"]
    assert any(API_KEY in t for t in text_values(zlib.compress(API_KEY.encode())))
    file_hits = files_with(API_KEY, root)
    db_hits = _scan_db(home / "airflow.db")
    scanned = sum(1 for p in root.rglob("*") if p.is_file())
    log(f"scanned {scanned} files and every table of the DB")
    assert not file_hits, f"API key found in files: {file_hits}"
    assert not db_hits, f"API key found in the metadata DB: {db_hits}"
    log("done")


# ------------------------------------------------------------------------------- scenario helpers


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
        if str(row.get("key")).startswith("luma_generation_id:"):  # one per prompt of a chunk
            value = row.get("value")
            with contextlib.suppress(TypeError, ValueError):
                value = json.loads(value)
            values.append(str(value))
    return values


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
