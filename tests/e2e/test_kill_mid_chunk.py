"""End-to-end: a batch task SIGKILLed mid-chunk on a real Airflow 3.3 pays once per prompt.

One ``LumaGenerateOperator(prompts=[30 prompts], max_concurrent_submits=2, retries=1,
wait_for_completion=True)`` task (``chunk``) runs against a *gateway-flavour* sandbox (in this
process) whose submit route answers after 0.3 s, so the chunk takes seconds to submit. Twice,
on one deployment, one run each:

1. the run is triggered through the REST API; once the sandbox has accepted ``GATE_AT`` submits
   it answers further submits ``429 Retry-After: 60`` (a rate limit: provably not accepted).
   The submits already in its hands complete, their ids reach the task state store, and both
   submit threads park in the hook's shared rate gate: nothing is in flight at the gateway and
   every accepted id is recorded (see "the window" below);
2. ``SIGKILL``, no ``on_kill``, no ``finally``, no last log line, of

   * ``task_runner``: the process running the operator, titled ``airflow worker -- <ti id>``,
     forked by the LocalExecutor worker (``airflow worker -- LocalExecutor: <ti id>``), which
     is the task's supervisor. The supervisor sees exit -9 and logs "Process terminated by
     signal" into the try's log; it computes ``up_for_retry`` but sends nothing (task SDK
     1.3.2 treats that state as already reported by the task), and reports the *workload* as
     a success to the executor; the scheduler finds the TI still ``running``, logs "Executor
     ... reported that the task instance ... finished with state success, but the task
     instance's state attribute is running" and fails the try: ``up_for_retry``, ~1 s after the
     kill;
   * ``worker``: the supervisor first, then the task runner. Nobody reports anything; the TI
     stays ``running`` until the scheduler fails it for a missing heartbeat (``HEARTBEAT_ENV``
     makes that 15 s instead of 5 minutes; "heartbeat timeout" row in Airflow's ``log`` table),
     then ``up_for_retry``;
3. try 2 (after ``retry_delay``, 1 s) finds every id try 1 recorded ("Reusing generation ...
   recorded for an earlier try of this task", once per accepted prompt), submits only the
   others, defers, resumes, and the run succeeds.

Checked: run ``success``; ``chunk`` ends on try 2 after ``up_for_retry`` on try 1; exactly 30
submissions at the gateway; try 2's log reuses exactly the ids try 1 recorded; the return value
(REST API) has 30 completed prompts with 30 distinct ids, equal to the task state store's.

The window: a submit the gateway is processing when the worker dies is still created (the
sandbox, like a real gateway, does not undo a request whose client went away), but its id never
reaches the store, so try 2 pays for that prompt again (up to ``max_concurrent_submits``
prompts). No client closes that window without an idempotency key on the gateway; the 429 gate
makes the kill land outside it, so the count is exact.

Run: ``pytest tests/e2e/test_kill_mid_chunk.py -s`` (about 80 s on 2 cores for both kills).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2e_stack import (
    E2E,
    Deadline,
    airflow_stack,
    json_log_lines,
    task_runner_process,
    timeline,
    wait_for,
)

pytestmark = pytest.mark.system

DAG_ID = "luma_e2e_kill_mid_chunk"
TASK_ID = "chunk"
API_KEY = "sk-E2E-KILL-5d0e"
PROMPTS = [
    f"Take {i:02d}: a paper boat drifting down a rain-soaked gutter, {lens}"
    for i, lens in enumerate(
        ["macro lens", "low angle", "drone shot", "slow motion", "handheld", "tilt-shift"] * 5
    )
]
#: The gateway takes this long to answer a submit (so 30 submits, 2 at a time, take ~5 s).
SUBMIT_DELAY_S = 0.3
#: Close the gateway to new submits once it has accepted this many (6 <= accepted <= 20).
GATE_AT = 8
#: The gate's Retry-After: longer than the rest of try 1 can possibly live.
GATE_RETRY_AFTER_S = 60
QUEUE_S = 1.0
PROCESS_S = 2.0
START_BUDGET_S = 150.0
RUN_BUDGET_S = 120.0
REUSED = "recorded for an earlier try of this task"
STORE_KEY = "luma_generation_id:"

DAG_FILE = f"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from luma_provider.operators.luma import LumaGenerateOperator

with DAG(
    {DAG_ID!r},
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    is_paused_upon_creation=False,
):
    LumaGenerateOperator(
        task_id={TASK_ID!r},
        prompts={PROMPTS!r},
        max_concurrent_submits=2,
        retries=1,
        retry_delay=timedelta(seconds=1),
        wait_for_completion=True,
        poll_interval=1,
    )
"""


#: Heartbeat-timeout detection in seconds, not 5 minutes: only the killed *worker* needs it.
HEARTBEAT_ENV = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "1",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """One deployment for both kills (each test triggers its own run on a reset sandbox)."""
    from luma_provider.sandbox import LumaSandbox

    root = tmp_path_factory.mktemp("kill_mid_chunk")
    dags = root / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(textwrap.dedent(DAG_FILE))
    sandbox = LumaSandbox(port=0, api_key=API_KEY, queue_seconds=QUEUE_S, process_seconds=PROCESS_S)
    with airflow_stack(
        root, sandbox, dag_id=DAG_ID, dags_folder=dags, parallelism=4, extra_env=HEARTBEAT_ENV
    ) as deployment:
        try:
            deployment.start_airflow(Deadline(START_BUDGET_S), timeline("e2e-kill"))
        except BaseException:
            print(deployment.diagnostics(), file=sys.stderr)
            raise
        yield deployment


@pytest.mark.parametrize("kill", ["task_runner", "worker"])
def test_sigkill_mid_chunk_retry_pays_each_prompt_once(e2e: E2E, kill: str) -> None:
    """``task_runner``: only the process running the operator dies; its supervisor survives and
    the executor's event tells the scheduler. ``worker``: the LocalExecutor worker (the
    supervisor) dies with it; only the missing heartbeats tell the scheduler."""
    e2e.sandbox.reset()
    try:
        _scenario(e2e, Deadline(RUN_BUDGET_S), kill)
    except BaseException:
        print(e2e.diagnostics(), file=sys.stderr)
        raise


def _scenario(e2e: E2E, deadline: Deadline, kill: str) -> None:
    stack, sandbox, db = e2e.stack, e2e.sandbox, e2e.db
    assert len(set(PROMPTS)) == 30
    log = timeline(f"e2e-kill-{kill}")

    # ---- 1. trigger; the gateway slowly accepts the chunk's submits ------------------------------
    sandbox.add_fault(route="submit", kind="delay", seconds=SUBMIT_DELAY_S, times=1000)
    status, run = e2e.rest("POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": None})
    assert status == 200, (status, run)
    run_id = run["dag_run_id"]
    e2e.run_ids.append(run_id)
    log(f"triggered {run_id}")
    states = _StateLog(e2e, run_id, log)

    def still_on_try_1() -> None:
        stack.assert_alive()
        states.poll()
        rows = db.tis(run_id, TASK_ID)
        assert not rows or (rows[0][3] <= 1 and rows[0][2] not in ("success", "failed", "up_for_retry")), (
            f"the chunk ended before the kill: {rows}"
        )

    wait_for(
        f"the gateway to accept {GATE_AT} submits",
        lambda: sandbox.submissions >= GATE_AT,
        deadline.left(120),
        interval=0.05,
        on_tick=still_on_try_1,
    )
    log(f"gateway accepted {sandbox.submissions} submits; closing it to new ones (429)")

    # ---- 2. gate: in-flight submits finish and are recorded, the threads park on a 429 ------------
    sandbox.clear_faults()
    sandbox.add_fault(route="submit", kind="status", status=429, retry_after=GATE_RETRY_AFTER_S, times=1000)
    stable: dict[str, Any] = {}

    def parked() -> bool:
        still_on_try_1()
        accepted, in_flight = sandbox.submissions, _submits_in_flight(sandbox)
        recorded = _store_ids(e2e, run_id)
        rejected = sandbox.stats()["faults_applied"].get("status", 0)
        settled = (accepted, in_flight, len(recorded), rejected >= 1)
        if settled != (accepted, 0, accepted, True):
            stable.clear()
            return False
        if stable.get("state") != settled:
            stable.update(state=settled, since=time.monotonic())
        return time.monotonic() - stable["since"] >= 1.0

    wait_for("every accepted id to be recorded, nothing in flight", parked, deadline.left(30), interval=0.1)
    accepted = sandbox.submissions
    recorded_before = _store_ids(e2e, run_id)
    assert 6 <= accepted <= 20, accepted
    assert len(recorded_before) == accepted, (accepted, recorded_before)
    log(f"parked: {accepted} accepted and recorded in the task state store, 0 in flight")

    # ---- 3. SIGKILL: the task runner, or the whole worker (supervisor + task runner) --------------
    ti_id = db.ti_id(run_id, TASK_ID)
    assert ti_id, "no task instance id"
    runner = wait_for(
        f"the task runner of {ti_id}",
        lambda: task_runner_process(stack.procs["scheduler"].pid, ti_id),
        deadline.left(10),
        interval=0.2,
    )
    supervisor = runner.parent()
    assert " ".join(supervisor.cmdline()).startswith("airflow worker -- LocalExecutor"), supervisor.cmdline()
    log(
        f"task runner pid {runner.pid} {_title(runner)!r}, its supervisor pid {supervisor.pid} {_title(supervisor)!r}"
    )
    victims = [supervisor, runner] if kill == "worker" else [runner]
    for proc in victims:  # the supervisor first: it must not see its child die
        proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for("the killed processes to die", lambda: not any(_alive(p) for p in victims), 15, interval=0.1)
    log(
        f"SIGKILLed {' and '.join(f'{p.pid}' for p in victims)}; "
        f"supervisor alive: {_alive(supervisor)}, runner alive: {_alive(runner)}"
    )
    assert _alive(supervisor) == (kill != "worker")
    sandbox.clear_faults()
    assert sandbox.submissions == accepted, "nothing may be accepted after the kill"

    # ---- 4. Airflow retries; try 2 reuses what try 1 paid for -------------------------------------
    def finished() -> str | None:
        stack.assert_alive()
        states.poll()
        state = db.run_state(run_id)
        return state if state in ("success", "failed") else None

    def retried() -> bool:
        finished()
        rows = db.tis(run_id, TASK_ID)
        return bool(rows) and (rows[0][3] >= 2 or rows[0][2] in ("up_for_retry", "failed"))

    wait_for("Airflow to notice the kill", retried, deadline.left(90), interval=0.2)
    log(f"Airflow noticed the kill {time.monotonic() - killed_at:.1f}s after it: {db.tis(run_id, TASK_ID)}")
    state = wait_for(f"run {run_id} to finish", finished, deadline.left(), interval=0.5)
    log(f"run finished: {state}; chunk: {states.summary()}")

    rows = db.tis(run_id, TASK_ID)
    assert state == "success", (state, rows)
    assert [(r[2], r[3]) for r in rows] == [("success", 2)], rows
    assert ("up_for_retry", 1) in states.seen, states.seen
    history = _history(e2e, run_id)
    timeouts = _heartbeat_timeouts(e2e, run_id)
    log(f"task_instance_history (try, state): {history}; 'heartbeat timeout' log rows: {timeouts}")
    # Airflow files the interrupted try as failed once try 2 starts.
    assert history == [(1, "failed")], history
    # Only a dead supervisor leaves it to the heartbeat timeout.
    assert timeouts == ([1] if kill == "worker" else []), timeouts

    # ---- 5. the gateway was paid exactly once per prompt ------------------------------------------
    stats = sandbox.stats()
    log(
        f"sandbox: submissions={stats['submissions']} by_route={stats['by_route']} by_status={stats['by_status']}"
    )
    assert stats["submissions"] == len(PROMPTS), stats["submissions"]

    # ---- 6. the logs: try 1 died by SIGKILL, try 2 reused what try 1 recorded ---------------------
    folder = e2e.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={TASK_ID}"
    try1, try2 = (json_log_lines(folder / f"attempt={n}.log") for n in (1, 2))
    killed = [e for e in try1 if e.get("signal_name") == "SIGKILL"]
    log(f"try 1 log, from its supervisor: {[e['event'][:60] for e in killed]}")
    # The supervisor logs its child's SIGKILL into the try's log, unless it died too.
    assert len(killed) == (0 if kill == "worker" else 1), killed
    assert not [e for e in try1 if e["event"].startswith("Batch of")], "try 1 must not reach its summary"
    reused = [e["event"] for e in try2 if REUSED in e["event"]]
    summary = [e["event"] for e in try2 if e["event"].startswith(f"Batch of {len(PROMPTS)} prompts: ")]
    log(f"try 2 log: {len(reused)} x '{REUSED}'; {summary}")
    assert len(reused) == accepted >= 6, (len(reused), accepted)
    assert {_reused_id(e) for e in reused} == set(recorded_before.values()), reused
    assert any(s.startswith("Batch of 30 prompts: 30 accepted or reused, 0 not") for s in summary), summary
    assert any(s.startswith("Batch of 30 prompts: 30 completed, 0 failed") for s in summary), summary

    # ---- 7. the result: 30 completed prompts, 30 distinct ids, as recorded in the store ------------
    status, entry = e2e.rest(
        "GET",
        f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{TASK_ID}"
        "/xcomEntries/return_value",
    )
    assert status == 200, (status, entry)
    result = entry["value"] if isinstance(entry["value"], dict) else json.loads(entry["value"])
    prompts = result["prompts"]
    assert (result["total"], result["completed"], result["failed"]) == (30, 30, 0), {
        k: result[k] for k in ("total", "completed", "failed")
    }
    assert [e["prompt"] for e in prompts] == PROMPTS
    assert all(e["state"] == "completed" for e in prompts), [e["state"] for e in prompts]
    ids = [e["generation_id"] for e in prompts]
    assert len(set(ids)) == 30, ids
    store = _store_ids(e2e, run_id)
    assert sorted(store.values()) == sorted(ids), (store, ids)
    assert set(recorded_before.values()) <= set(ids)
    log(f"done: 30 prompts completed, 30 distinct ids, {accepted} of them paid by try 1 and reused")


# ------------------------------------------------------------------------------------------ helpers


class _StateLog:
    """The chunk's (state, try) transitions as the test saw them, printed to the timeline."""

    def __init__(self, e2e: E2E, run_id: str, log: Callable[[str], None]) -> None:
        self.e2e, self.run_id, self.log = e2e, run_id, log
        self.seen: list[tuple[str | None, int]] = []

    def poll(self) -> None:
        rows = self.e2e.db.tis(self.run_id, TASK_ID)
        now = (rows[0][2], rows[0][3]) if rows else (None, 0)
        if not self.seen or self.seen[-1] != now:
            self.seen.append(now)
            self.log(f"chunk: state={now[0]} try={now[1]}")

    def summary(self) -> str:
        return " -> ".join(f"{s}({t})" for s, t in self.seen)


def _store_ids(e2e: E2E, run_id: str) -> dict[str, str]:
    """The chunk's task state store: per-prompt scope -> accepted generation id."""
    rows = e2e.db.query(
        "SELECT key, value FROM task_state_store WHERE dag_id=? AND run_id=? AND task_id=? AND key LIKE ?",
        (DAG_ID, run_id, TASK_ID, f"{STORE_KEY}%"),
    )
    out = {}
    for key, value in rows:
        with contextlib.suppress(TypeError, ValueError):
            value = json.loads(value)
        out[key[len(STORE_KEY) :]] = str(value)
    return out


def _submits_in_flight(sandbox: Any) -> int:
    """Submits the sandbox is handling right now (its request counters, read on its own loop)."""
    return int(sandbox._call(lambda: sandbox._state.stats.in_flight["submit"]))


def _history(e2e: E2E, run_id: str) -> list[tuple]:
    """``(try_number, state)`` of the chunk's earlier tries (Airflow's ``task_instance_history``)."""
    return e2e.db.query(
        "SELECT try_number, state FROM task_instance_history WHERE dag_id=? AND run_id=? AND task_id=? "
        "ORDER BY try_number",
        (DAG_ID, run_id, TASK_ID),
    )


def _heartbeat_timeouts(e2e: E2E, run_id: str) -> list[int]:
    """Try numbers the scheduler failed for a missing heartbeat (Airflow's audit ``log`` table)."""
    rows = e2e.db.query(
        "SELECT try_number FROM log WHERE event='heartbeat timeout' AND dag_id=? AND run_id=? AND task_id=? "
        "ORDER BY id",
        (DAG_ID, run_id, TASK_ID),
    )
    return [r[0] for r in rows]


def _reused_id(event: str) -> str:
    # "Reusing generation <id> recorded for an earlier try of this task (state ...); ..."
    return event.split("Reusing generation ", 1)[1].split(" ", 1)[0]


def _title(proc: Any) -> str:
    return " ".join(proc.cmdline()).strip()


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
