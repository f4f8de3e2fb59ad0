"""End-to-end: the daily pipeline on a distributed deployment, under chaos.

PostgreSQL 15, Redis and Airflow 3.3 with the ``CeleryExecutor``: api-server, scheduler,
dag-processor, **two Celery workers** (concurrency 2) and **two triggerers**, every one a
separate process (see ``distributed_stack``), against a gateway-flavour ``LumaSandbox`` in this
process. ``luma_daily_content`` runs 200 prompts in chunks of 20 (10 mapped ``chunks`` groups:
``submit`` -> ``wait``, deferred -> ``download``; then ``report`` and ``check``), and while it
runs:

1. **a Celery worker is SIGKILLed right after it had submits accepted.** Submits answer after
   0.25 s. Once the gateway has accepted ``GATE_AT`` of them it answers every further submit
   ``429 Retry-After: 10`` (a rate limit: provably not accepted); the submits already in its
   hands finish and are recorded in the task state store, the submit threads park in their
   hooks' rate gates. With nothing in flight at the gateway and every accepted id recorded, the
   worker running a ``chunks.submit`` that is part-way through its chunk is SIGKILLed whole:
   the Celery main process, its pool processes (the task supervisors) and their task runners.
   Nobody reports; the scheduler fails the try for its missing heartbeat (15 s here), and try 2
   runs on the other worker, reuses every id try 1 recorded and submits only the rest. (A kill
   *during* an accepted, in-flight submit can pay that prompt twice: no client can close that
   window without an idempotency key on the gateway, see ``test_kill_mid_chunk``; the gate keeps
   the kill outside it so that ``submissions == prompts`` is exact.)
2. **a burst of 429s** (``Retry-After: 1``): the next 6 submits after the worker kill, and 4
   status batches of ``triggerer-b``'s poller after the takeover (step 3);
3. **a triggerer is SIGKILLed while waits are deferred on both.** ``triggerer-a`` runs with
   ``--capacity 5``, so both triggerers hold waits; generations are held (long processing time)
   until ``triggerer-b`` has taken every one of ``triggerer-a``'s triggers over (after
   ``triggerer_health_check_threshold``, 10 s here) and polled their ids, then released.

Checked: the run succeeds, every ``chunks.wait`` succeeds (no wait lost), the killed submit ends
on try 2 and its log reuses exactly the ids try 1 recorded, the gateway saw exactly 200
submissions, the manifest lists 200 completed prompts with 200 distinct ids whose video and
thumbnail files exist, each triggerer's poller sent at most ``ceil(ids / 100)`` answered status
requests per poll cycle (see :func:`_poller_cycles` for how cycles are observed), and the API key
is in no file (Airflow, Celery, Postgres and Redis logs, outputs, the Postgres data directory) and
in no column of any table of the metadata DB.

Run: ``pytest tests/e2e/test_distributed.py -s`` (about 2.5 minutes on 2 cores; budget 9).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed_stack import Distributed, alive, distributed_stack, process_tree, title
from e2e_stack import Deadline, files_with, json_log_lines, timeline, wait_for
from test_real_airflow import release_generations, text_values

from luma_provider.connection_fields import DEFAULT_BATCH_SIZE
from luma_provider.triggers.poller import POLL_RETRIES

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "luma_daily_content"
API_KEY = "sk-E2E-DIST-4b7e91"
N_PROMPTS = 200
CHUNK_SIZE = 20
CHUNKS = N_PROMPTS // CHUNK_SIZE
SUBMIT, WAIT, DOWNLOAD = "chunks.submit", "chunks.wait", "chunks.download"
#: The gateway answers a submit after this long, so a chunk takes a few seconds to submit.
SUBMIT_DELAY_S = 0.25
#: Close the gateway to new submits (429) once it has accepted this many.
GATE_AT = 30
GATE_RETRY_AFTER_S = 10
#: The burst of 429s after the worker kill: submits and status batches (``Retry-After: 1``).
BURST_SUBMIT, BURST_TASKS = 6, 4
#: Generations are pending QUEUE_S, then processing HOLD_S until the test releases them (after the
#: triggerer takeover); later ones take RELEASED_S. If the release fails they finish after HOLD_S.
QUEUE_S, HOLD_S, RELEASED_S = 1.0, 240.0, 1.5
TRIGGERER_A_CAPACITY = 5
REUSED = "recorded for an earlier try of this task"
STORE_KEY = "luma_generation_id:"
START_BUDGET_S = 240.0
BUDGET_S = 540.0

SUBJECTS = (
    "a lighthouse at dawn, waves crashing in slow motion",
    "ink drops blooming in water, macro, studio light",
    "a fox trotting through fresh snow in a birch forest",
    "a neon sign flickering on in a rainy alley",
    "clouds rolling over a mountain ridge at sunset",
    "a paper plane gliding across a sunlit classroom",
    "a hot air balloon rising over terraced rice fields",
    "a glass of iced tea sweating on a cafe table",
)
SHOTS = ("drone orbit", "handheld", "tracking shot", "macro lens", "slow dolly", "tilt-shift")
RATIOS = ("16:9", "1:1", "9:16", "4:3", "3:4")
PROMPTS = [
    (f"Take {i:03d}: {SUBJECTS[i % len(SUBJECTS)]}, {SHOTS[i % len(SHOTS)]}", RATIOS[i % len(RATIOS)])
    for i in range(N_PROMPTS)
]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Distributed]:
    from luma_provider.sandbox import LumaSandbox

    log = timeline("e2e-dist")
    sandbox = LumaSandbox(port=0, api_key=API_KEY, queue_seconds=QUEUE_S, process_seconds=HOLD_S)
    with distributed_stack(
        tmp_path,
        sandbox,
        dag_id=DAG_ID,
        dags_folder=REPO / "dags",
        log=log,
        worker_concurrency=2,
        triggerer_capacity=(TRIGGERER_A_CAPACITY, None),
    ) as dep:
        # Keep every request in the sandbox's log (it keeps the last 500 by default).
        stats = sandbox._state.stats
        sandbox._call(lambda: setattr(stats, "recent", deque(stats.recent, maxlen=1_000_000)))
        try:
            dep.start_airflow(Deadline(START_BUDGET_S), log)
        except BaseException:
            print(dep.diagnostics(), file=sys.stderr)
            raise
        yield dep


def test_daily_content_distributed_under_chaos(
    deployment: Distributed, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    lines: list[str] = []
    try:
        _scenario(deployment, Deadline(BUDGET_S), timeline("e2e-dist", keep=lines))
    except BaseException:
        print(deployment.diagnostics(), file=sys.stderr)
        raise
    # The chaos counts belong in CI's output on success too, not only when the test fails.
    with capsys.disabled():
        print("\n" + "\n".join(lines))
        print(f"[e2e-dist] scenario took {time.monotonic() - started:.0f}s (after the deployment started)")


def _scenario(dep: Distributed, deadline: Deadline, log: Callable[[str], None]) -> None:
    stack, sandbox, db = dep.stack, dep.sandbox, dep.db
    tick = _Ticker(dep, log)

    # ---- 1. trigger the run: 200 prompts, chunks of 20 --------------------------------------------
    prompts_file = dep.root / "prompts.yaml"
    prompts_file.write_text(
        "".join(f"- prompt: {json.dumps(p)}\n  aspect_ratio: {json.dumps(a)}\n" for p, a in PROMPTS)
    )
    status, body = dep.rest("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
    assert status == 200, (status, body)
    sandbox.add_fault(route="submit", kind="delay", seconds=SUBMIT_DELAY_S, times=100_000)
    status, run = dep.rest(
        "POST",
        f"/dags/{DAG_ID}/dagRuns",
        {"logical_date": None, "conf": {"prompts_file": str(prompts_file), "chunk_size": CHUNK_SIZE}},
    )
    assert status == 200, (status, run)
    run_id = run["dag_run_id"]
    dep.run_ids.append(run_id)
    tick.run_id = run_id
    log(f"triggered {run_id}: {N_PROMPTS} prompts in {CHUNKS} chunks of {CHUNK_SIZE}")

    # ---- 2. gate the gateway once it accepted GATE_AT submits; wait until nothing is in flight ----
    gate_at, victim, killed_tis = GATE_AT, None, []
    for _ in range(3):  # again, later, if no running submit is part-way through its chunk at the gate
        wait_for(
            f"the gateway to accept {gate_at} submits",
            lambda gate_at=gate_at: sandbox.submissions >= gate_at,
            deadline.left(240),
            interval=0.05,
            on_tick=tick,
        )
        sandbox.clear_faults()
        sandbox.add_fault(
            route="submit", kind="status", status=429, retry_after=GATE_RETRY_AFTER_S, times=100_000
        )
        gated_at = time.monotonic()
        log(
            f"gateway accepted {sandbox.submissions} submits; closed to new ones (429 Retry-After {GATE_RETRY_AFTER_S})"
        )
        _wait_parked(dep, run_id, tick, deadline)
        recorded_at_kill = _store_ids(dep, run_id)
        accepted_at_kill = sandbox.submissions
        log(
            f"parked: {accepted_at_kill} accepted, all recorded, 0 in flight; recorded per chunk "
            f"{ {k: len(v) for k, v in sorted(recorded_at_kill.items())} }"
        )
        victim, killed_tis = _pick_victim(dep, run_id, recorded_at_kill)
        if victim is not None:
            break
        gate_at = accepted_at_kill + 15
        log(f"no running submit is part-way through its chunk ({killed_tis}); gating again at {gate_at}")
        sandbox.clear_faults()
        sandbox.add_fault(route="submit", kind="delay", seconds=SUBMIT_DELAY_S, times=100_000)
    assert victim is not None, "no part-way submitted chunk was ever running at the gate"

    # ---- 3. SIGKILL the Celery worker running a part-way submitted chunk ---------------------------
    tree = process_tree(stack.procs[victim].pid)
    log(
        f"SIGKILL {victim} ({len(tree)} processes) running {killed_tis}: "
        + "; ".join(f"{p.pid} {title(p)[:60]!r}" for p in tree)
    )
    stack.kill(victim, signal.SIGKILL)
    worker_killed_at = time.monotonic()
    wait_for(
        "the killed worker's processes to die", lambda: not any(alive(p) for p in tree), 15, interval=0.1
    )
    assert sandbox.submissions == accepted_at_kill, "nothing may be accepted while the gateway is gated"
    sandbox.clear_faults()
    sandbox.add_fault(route="submit", kind="status", status=429, retry_after=1, times=BURST_SUBMIT)
    log(
        f"{victim} dead {worker_killed_at - gated_at:.1f}s after the gate closed; gate open again; "
        f"429 burst armed for the next {BURST_SUBMIT} submits"
    )

    # ---- 4. waits deferred on both triggerers; SIGKILL triggerer-a ---------------------------------
    comp_a, comp_b = dep.triggerers["triggerer-a"], dep.triggerers["triggerer-b"]

    killed_chunks = {m for _, m in killed_tis}

    def on_both() -> bool:
        tick()
        held = _triggers_by_triggerer(dep, run_id)
        on_a, on_b = len(held.get(comp_a.job_id, [])), len(held.get(comp_b.job_id, []))
        if on_a >= 2 and on_b >= 2:
            return True
        # Which triggerer takes a new trigger is a race; once every wait that can defer has,
        # one on each is enough (the killed chunks' waits defer only after their retries).
        waits = [w for w in db.tis(run_id, WAIT) if w[1] not in killed_chunks]
        if not all(w[2] == "deferred" for w in waits) or None in held:
            return False
        assert on_a >= 1, f"every wait deferred, none on triggerer-a: {held}"
        return on_b >= 1

    wait_for("waits deferred on both triggerers", on_both, deadline.left(240), interval=0.5)
    held_before = _triggers_by_triggerer(dep, run_id)
    a_triggers = held_before[comp_a.job_id]
    a_ids = _trigger_ids(dep, run_id, a_triggers)
    polled_since = time.time()
    wait_for(
        "triggerer-a to poll its waits",
        lambda: tick() or a_ids <= _ids_polled_since(comp_a.probe_log, polled_since),
        deadline.left(30),
        interval=0.5,
    )
    log(
        f"deferred: triggerer-a (job {comp_a.job_id}) holds {len(a_triggers)} waits ({len(a_ids)} ids), "
        f"triggerer-b (job {comp_b.job_id}) {len(held_before.get(comp_b.job_id, []))}; "
        f"sandbox so far {dict(sandbox.stats()['by_route'])}"
    )
    stack.kill("triggerer-a", signal.SIGKILL)
    triggerer_killed_at = time.monotonic()
    killed_wall = time.time()
    log("SIGKILL triggerer-a (triggerer and its trigger runner)")

    def taken_over() -> bool:
        tick()
        held = _triggers_by_triggerer(dep, run_id)
        return set(a_triggers) <= set(held.get(comp_b.job_id, []))

    wait_for("triggerer-b to take triggerer-a's waits over", taken_over, deadline.left(120), interval=0.5)
    reassigned_s = time.monotonic() - triggerer_killed_at
    wait_for(
        "triggerer-b to poll triggerer-a's ids",
        lambda: tick() or a_ids <= _ids_polled_since(comp_b.probe_log, killed_wall),
        deadline.left(60),
        interval=0.5,
    )
    polled_s = time.monotonic() - triggerer_killed_at
    # Coalesced: one cycle of triggerer-b's poller asks for its own waits' ids and the taken-over ones.
    all_ids = a_ids | _trigger_ids(dep, run_id, held_before.get(comp_b.job_id, []))
    one_cycle = wait_for(
        "one triggerer-b poll cycle with every held id",
        lambda: tick() or _cycle_with(comp_b.probe_log, killed_wall, all_ids),
        deadline.left(30),
        interval=0.5,
    )
    waits = db.tis(run_id, WAIT)
    assert not [w for w in waits if w[2] in ("failed", "up_for_retry")], waits
    log(
        f"takeover: triggerer-b holds all {len(a_triggers)} of triggerer-a's waits {reassigned_s:.1f}s after "
        f"the kill and polled their {len(a_ids)} ids {polled_s:.1f}s after it; one of its cycles asked for "
        f"all {len(all_ids)} held ids ({one_cycle['wanted']} ids, {one_cycle['waiters']} triggers)"
    )

    # ---- 5. a burst of 429s on the status batches of triggerer-b's poller ----------------------------
    b_limited = 0
    for _ in range(3):  # a worker's own status check may take some of the burst; then arm it again
        sandbox.add_fault(route="tasks", kind="status", status=429, retry_after=1, times=BURST_TASKS)
        wait_for(
            "the status 429 burst to be used up",
            lambda: (
                tick()
                or not [f for f in sandbox.faults() if f["route"] == "tasks" and f["hits"] < f["times"]]
            ),
            deadline.left(60),
            interval=0.5,
        )
        b_limited = sum(
            r["status"] == 429 and r["path"].startswith(f"{comp_b.prefix}/luma/")
            for r in sandbox.stats()["recent"]
        )
        if b_limited:
            break
    assert b_limited, "no 429 reached triggerer-b's poller"
    log(f"429 burst on status batches: {b_limited} answered to triggerer-b's poller")
    sandbox.configure(queue_seconds=QUEUE_S, process_seconds=RELEASED_S)
    released = release_generations(sandbox)
    log(f"released {released} held generations; new ones take {QUEUE_S + RELEASED_S:.1f}s")

    # ---- 6. the run finishes ---------------------------------------------------------------------
    def finished() -> str | None:
        tick()
        state = db.run_state(run_id)
        return state if state in ("success", "failed") else None

    state = wait_for(f"run {run_id} to finish", finished, deadline.left(), interval=1)
    log(f"run finished: {state}")

    # ---- 7. no wait lost, the killed try retried and reused ----------------------------------------
    tis = db.tis(run_id)
    assert state == "success", tis
    assert all(r[2] == "success" for r in tis), [r for r in tis if r[2] != "success"]
    waits = db.tis(run_id, WAIT)
    assert len(waits) == CHUNKS and all(w[2] == "success" for w in waits), waits
    retried = [f"{r[0]}[{r[1]}] try {r[3]}" for r in tis if r[3] != 1]
    log(f"task instances: {len(tis)}, all success; not on try 1: {retried or 'none'}")
    for task_id, map_index in killed_tis:
        row = next(r for r in tis if (r[0], r[1]) == (task_id, map_index))
        assert row[3] >= 2, f"{task_id}[{map_index}] was killed on try 1 but did not retry: {row}"
    killed_submits = [(t, m) for t, m in killed_tis if t == SUBMIT]
    assert killed_submits, killed_tis
    for _, map_index in killed_submits:
        try2 = _try_log(dep, run_id, SUBMIT, map_index, 2)
        reused = sorted(
            e["event"].split("Reusing generation ", 1)[1].split(" ", 1)[0]
            for e in try2
            if REUSED in e["event"]
        )
        summary = [e["event"] for e in try2 if e["event"].startswith(f"Batch of {CHUNK_SIZE} prompts: ")]
        before = sorted(recorded_at_kill.get(map_index, {}).values())
        log(
            f"{SUBMIT}[{map_index}] try 2 reused {len(reused)} ids recorded by try 1 ({len(before)}); {summary}"
        )
        assert reused == before, (map_index, reused, before)
    timeouts = db.query(
        "SELECT task_id, map_index, try_number FROM log WHERE event='heartbeat timeout' AND dag_id=? AND run_id=? "
        "ORDER BY id",
        (DAG_ID, run_id),
    )
    noticed = f"{tick.first_retry_at - worker_killed_at:.1f}s" if tick.first_retry_at else "?"
    log(f"Airflow failed the killed tries {noticed} after the kill; 'heartbeat timeout' log rows: {timeouts}")
    history = db.query(
        "SELECT task_id, map_index, try_number, state FROM task_instance_history WHERE dag_id=? AND run_id=? "
        "ORDER BY task_id, map_index, try_number",
        (DAG_ID, run_id),
    )
    log(f"task_instance_history: {history}")

    # ---- 8. paid once per prompt, every video on disk ------------------------------------------------
    stats = sandbox.stats()
    assert len(stats["recent"]) == stats["requests"], "the sandbox's request log lost entries"
    log(
        f"sandbox: submissions={stats['submissions']} requests={stats['requests']} by_route={stats['by_route']} "
        f"by_status={stats['by_status']} faults_applied={stats['faults_applied']} "
        f"peak_in_flight={stats['peak_in_flight']}"
    )
    assert stats["submissions"] == N_PROMPTS, stats["submissions"]
    assert not {"401", "403"} & set(stats["by_status"]), stats["by_status"]
    assert stats["faults_applied"].get("status", 0) >= BURST_SUBMIT + BURST_TASKS, stats["faults_applied"]
    manifests = list((dep.root / "out").rglob("manifest.json"))
    assert len(manifests) == 1, manifests
    folder = manifests[0].parent
    entries = json.loads(manifests[0].read_text())["generations"]
    assert sorted(e["prompt"] for e in entries) == sorted(p for p, _ in PROMPTS)
    assert all(e["state"] == "completed" for e in entries), [e for e in entries if e["state"] != "completed"][
        :3
    ]
    ids = [e["generation_id"] for e in entries]
    assert len(set(ids)) == N_PROMPTS, len(set(ids))
    for e in entries:
        assert e["video"] and (folder / e["video"]).stat().st_size > 0, e
        assert e["thumbnail"] and (folder / e["thumbnail"]).stat().st_size > 0, e
    store = _store_ids(dep, run_id)
    assert sorted(i for v in store.values() for i in v.values()) == sorted(ids)
    videos = len(list(folder.glob("*.mp4")))
    log(f"manifest: {len(entries)} completed, {len(set(ids))} distinct ids, {videos} videos on disk")

    # ---- 9. each triggerer's poller coalesced its own waits ------------------------------------------
    report = _poller_cycles(dep, stats["recent"])
    for name, r in report.items():
        log(
            f"{name}: {r['cycles']} poll cycles, {r['requests']} status requests ({r['answered']} answered, "
            f"{r['limited']} 429); ids per cycle max {r['max_ids']}, triggers per cycle max {r['max_waiters']}; "
            f"answered requests per cycle max {r['max_answered']} (bound ceil(ids/{DEFAULT_BATCH_SIZE}))"
        )
    assert report["triggerer-a"]["cycles"] > 0 and report["triggerer-b"]["cycles"] > 0, report
    last_a = report["triggerer-a"]["last_begin"]
    assert last_a <= killed_wall, "triggerer-a polled after it was killed"
    log(
        f"kills: {victim} at +{worker_killed_at - tick.t0:.0f}s ({killed_tis}), triggerer-a at "
        f"+{triggerer_killed_at - tick.t0:.0f}s; takeover {reassigned_s:.1f}s (reassigned) / {polled_s:.1f}s (polled)"
    )

    # ---- 10. the key is nowhere: files, every DB column, the Postgres data directory -----------------
    stack.stop_all()  # let every process flush its logs first
    canary = dep.root.parent / f"{dep.root.name}-canary"
    canary.mkdir(exist_ok=True)
    (canary / "c.log").write_text(f"Authorization: Bearer {API_KEY}\n")
    assert files_with(API_KEY, canary) == ["c.log (1x)"]
    db_hits, cells = _scan_db(dep)
    log(f"scanned {cells} cells in every table of the Postgres metadata DB")
    assert not db_hits, f"API key found in the metadata DB: {db_hits}"
    assert dep.pg is not None
    dep.pg.stop()
    file_hits = files_with(API_KEY, dep.root) + [f"postgres:{h}" for h in files_with(API_KEY, dep.pg.base)]
    scanned = sum(1 for p in dep.root.rglob("*") if p.is_file()) + sum(
        1 for p in dep.pg.base.rglob("*") if p.is_file()
    )
    log(f"scanned {scanned} files (Airflow, Celery, Redis and Postgres logs, outputs, Postgres data)")
    assert not file_hits, f"API key found in files: {file_hits}"
    log("done")


# ------------------------------------------------------------------------------------------ helpers


class _Ticker:
    """Called on every poll: components alive, the run not failed, descendants remembered."""

    def __init__(self, dep: Distributed, log: Callable[[str], None]) -> None:
        self.dep, self.log = dep, log
        self.run_id: str | None = None
        self.t0 = time.monotonic()
        self.states: dict[tuple[str, int], tuple[str | None, int]] = {}
        #: When a try was first seen failed or up for retry (Airflow noticed a kill).
        self.first_retry_at: float | None = None

    def __call__(self) -> None:
        self.dep.stack.assert_alive()
        self.dep.stack.remember_all()
        if self.run_id is None:
            return
        if self.dep.db.run_state(self.run_id) == "failed":
            raise AssertionError(f"run {self.run_id} failed: {self.dep.db.tis(self.run_id)}")
        for task_id, map_index, state, try_number, _ in self.dep.db.tis(self.run_id):
            now = (state, try_number)
            if state in ("up_for_retry", "failed") and self.states.get((task_id, map_index)) != now:
                self.log(f"{task_id}[{map_index}] -> {state} (try {try_number})")
                self.first_retry_at = self.first_retry_at or time.monotonic()
            self.states[(task_id, map_index)] = (state, try_number)


def _store_ids(dep: Distributed, run_id: str) -> dict[int, dict[str, str]]:
    """The task state store of every ``chunks.submit``: map index -> prompt scope -> generation id."""
    rows = dep.db.query(
        "SELECT map_index, key, value FROM task_state_store WHERE dag_id=? AND run_id=? AND task_id=? AND key LIKE ?",
        (DAG_ID, run_id, SUBMIT, f"{STORE_KEY}%"),
    )
    out: dict[int, dict[str, str]] = {}
    for map_index, key, value in rows:
        with contextlib.suppress(TypeError, ValueError):
            value = json.loads(value)
        out.setdefault(map_index, {})[key[len(STORE_KEY) :]] = str(value)
    return out


def _submits_in_flight(sandbox: Any) -> int:
    return int(sandbox._call(lambda: sandbox._state.stats.in_flight["submit"]))


def _wait_parked(dep: Distributed, run_id: str, tick: Callable[[], None], deadline: Deadline) -> None:
    """Until every accepted submit is recorded in the task state store and none is in flight at
    the gateway, stable for 1 s (the gate answers new submits 429, so none can be accepted)."""
    stable: dict[str, Any] = {}

    def parked() -> bool:
        tick()
        accepted, in_flight = dep.sandbox.submissions, _submits_in_flight(dep.sandbox)
        recorded = sum(len(v) for v in _store_ids(dep, run_id).values())
        settled = (accepted, in_flight, recorded)
        if settled != (accepted, 0, accepted):
            stable.clear()
            return False
        if stable.get("state") != settled:
            stable.update(state=settled, since=time.monotonic())
        return time.monotonic() - stable["since"] >= 1.0

    wait_for("every accepted id to be recorded, nothing in flight", parked, deadline.left(40), interval=0.1)


def _pick_victim(
    dep: Distributed, run_id: str, recorded: dict[int, dict[str, str]]
) -> tuple[str | None, list[tuple[str, int]]]:
    """The worker running a ``chunks.submit`` that is part-way through its chunk (some of its
    prompts accepted, not all) and every task instance it runs; else None and what is running."""
    running = {
        str(ti_id): (task_id, map_index)
        for ti_id, task_id, map_index in dep.db.query(
            "SELECT id, task_id, map_index FROM task_instance WHERE dag_id=? AND run_id=? AND state='running'",
            (DAG_ID, run_id),
        )
    }
    on_worker: dict[str, list[tuple[str, int]]] = {}
    for name in dep.workers:
        for proc in process_tree(dep.stack.procs[name].pid):
            cmd = title(proc)
            for ti_id, ti in running.items():
                if cmd.startswith(f"airflow worker -- {ti_id}") and ti not in on_worker.get(name, []):
                    on_worker.setdefault(name, []).append(ti)
    candidates = [
        (name, ti)
        for name, tis in on_worker.items()
        for ti in tis
        if ti[0] == SUBMIT and 0 < len(recorded.get(ti[1], {})) < CHUNK_SIZE
    ]
    if not candidates:
        return None, sorted(ti for tis in on_worker.values() for ti in tis)
    name = candidates[0][0]
    return name, sorted(on_worker[name])


def _triggers_by_triggerer(dep: Distributed, run_id: str) -> dict[int | None, list[int]]:
    """Triggerer job id -> trigger ids of the run's deferred ``chunks.wait`` instances."""
    rows = dep.db.query(
        "SELECT t.triggerer_id, t.id FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
        "WHERE ti.dag_id=? AND ti.run_id=? AND ti.task_id=? AND ti.state='deferred'",
        (DAG_ID, run_id, WAIT),
    )
    out: dict[int | None, list[int]] = {}
    for triggerer_id, trigger_id in rows:
        out.setdefault(triggerer_id, []).append(trigger_id)
    return out


def _trigger_ids(dep: Distributed, run_id: str, trigger_ids: list[int]) -> set[str]:
    """The generation ids the given triggers wait for (their chunks' ids in the task state store)."""
    rows = dep.db.query(
        "SELECT map_index FROM task_instance WHERE dag_id=? AND run_id=? AND task_id=? AND trigger_id = ANY(?)",
        (DAG_ID, run_id, WAIT, list(trigger_ids)),
    )
    store = _store_ids(dep, run_id)
    ids: set[str] = set()
    for (map_index,) in rows:
        assert len(store.get(map_index, {})) == CHUNK_SIZE, (map_index, store.get(map_index))
        ids |= set(store[map_index].values())
    return ids


def _probe_lines(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def _cycle_with(path: Path | None, since: float, ids: set[str]) -> dict[str, Any] | None:
    """The first poll cycle begun after ``since`` that asked for every id of ``ids``, if any."""
    for e in _probe_lines(path):
        if e.get("ev") == "begin" and e["t"] >= since and ids <= set(e["ids"]):
            return e
    return None


def _ids_polled_since(path: Path | None, since: float) -> set[str]:
    """Ids a triggerer's poller asked for in cycles that began after ``since`` (epoch seconds)."""
    return {i for e in _probe_lines(path) if e.get("ev") == "begin" and e["t"] >= since for i in e["ids"]}


def _poller_cycles(dep: Distributed, recent: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per triggerer: its poll cycles, each with the status requests the gateway got during it.

    How a cycle is observed, from two independent sides:

    * the triggerer's probe (``distributed_stack.POLLER_PROBE``) logs when each
      ``StatusPoller._serve`` began and ended, the distinct ids it asked for and how many
      requests its hook sent;
    * the gateway logs every request with the time it was answered and its path; each
      triggerer's connection has its own ``path_prefix``, so ``/pro/luma/tasks`` came from
      triggerer-a and ``/vip/luma/tasks`` from triggerer-b.

    A request is answered after its cycle began and before the poller got the answer, so it
    falls in exactly one cycle's window of its triggerer (cycles of one poller run one after the
    other). Checked: every request of a triggerer falls in one of its cycles; the cycles of one
    triggerer never overlap (one poller serves all its triggers); a cycle's request count at the
    gateway equals what its hook counted; and per cycle, answered (200) requests are at most
    ``ceil(ids / batch_size)`` (a 429'd request is retried ``POLL_RETRIES`` time(s) inside the
    cycle, so attempts are at most that many times more).
    """
    report: dict[str, dict[str, Any]] = {}
    for name, comp in dep.triggerers.items():
        lines = _probe_lines(comp.probe_log)
        assert any(e.get("ev") == "patched" for e in lines), f"{name}: the poller probe did not load"
        ends = {e["seq"]: e for e in lines if e.get("ev") == "end"}
        cycles = [dict(e, end=ends.get(e["seq"])) for e in lines if e.get("ev") == "begin"]
        cycles.sort(key=lambda c: c["t"])
        for prev, cur in itertools.pairwise(cycles):
            assert prev["end"] is not None, f"{name}: cycle {prev['seq']} never ended but another began"
            assert cur["t"] >= prev["end"]["t"], (
                f"{name}: overlapping poll cycles {prev['seq']}, {cur['seq']}"
            )
        reqs = [r for r in recent if r["path"].startswith(f"{comp.prefix}/luma/")]
        assert all(r["route"] == "tasks" for r in reqs), Counter(r["route"] for r in reqs)
        for c in cycles:
            c["reqs"] = []
        for r in reqs:
            home = None
            for c in cycles:
                end = c["end"]["t"] if c["end"] is not None else math.inf
                if c["t"] - 0.001 <= r["time"] <= end + 0.001:  # the sandbox rounds times to ms
                    home = c
            assert home is not None, f"{name}: status request at {r['time']} outside every poll cycle"
            home["reqs"].append(r)
        worst = 0
        for c in cycles:
            bound = math.ceil(c["wanted"] / DEFAULT_BATCH_SIZE)
            answered = sum(r["status"] == 200 for r in c["reqs"])
            limited = sum(r["status"] == 429 for r in c["reqs"])
            assert answered + limited == len(c["reqs"]), c["reqs"]
            assert answered <= bound, (
                f"{name}: cycle {c['seq']} ({c['wanted']} ids) had {answered} answered requests"
            )
            assert len(c["reqs"]) <= bound * (1 + POLL_RETRIES), (name, c["seq"], c["wanted"], len(c["reqs"]))
            if c["end"] is not None:
                assert len(c["reqs"]) == c["end"]["requests"], (name, c["seq"], len(c["reqs"]), c["end"])
            worst = max(worst, answered)
        report[name] = {
            "cycles": len(cycles),
            "requests": len(reqs),
            "answered": sum(r["status"] == 200 for r in reqs),
            "limited": sum(r["status"] == 429 for r in reqs),
            "max_ids": max((c["wanted"] for c in cycles), default=0),
            "max_waiters": max((c["waiters"] for c in cycles), default=0),
            "max_answered": worst,
            "last_begin": max((c["t"] for c in cycles), default=0.0),
        }
    return report


def _try_log(
    dep: Distributed, run_id: str, task_id: str, map_index: int, attempt: int
) -> list[dict[str, Any]]:
    folder = (
        dep.home
        / "logs"
        / f"dag_id={DAG_ID}"
        / f"run_id={run_id}"
        / f"task_id={task_id}"
        / f"map_index={map_index}"
    )
    path = folder / f"attempt={attempt}.log"
    assert path.exists(), sorted(p.name for p in folder.glob("*"))
    return json_log_lines(path)


def _scan_db(dep: Distributed) -> tuple[list[str], int]:
    """Every column of every table of the Postgres metadata DB (text, bytea, json, compressed)."""
    tables = [
        r[0]
        for r in dep.db.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema='public' AND table_type='BASE TABLE'"
        )
    ]
    assert "task_instance" in tables and "trigger" in tables, tables
    hits, cells = set(), 0
    con = dep.pg.connect() if dep.pg is not None else None
    assert con is not None
    try:
        for table in tables:
            with con.cursor() as cur:
                cur.execute(f'SELECT * FROM "{table}"')
                cols = [d[0] for d in cur.description]
                for row in cur:
                    for col, value in zip(cols, row, strict=False):
                        cells += 1
                        if isinstance(value, (dict, list)):
                            value = json.dumps(value)
                        if any(API_KEY in t for t in text_values(value)):
                            hits.add(f"{table}.{col}")
    finally:
        con.close()
    return sorted(hits), cells
