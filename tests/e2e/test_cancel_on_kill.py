"""End-to-end: ``cancel_on_kill`` on a real Airflow 3.3 (scheduler, triggerer, api-server).

A DAG with two deferrable ``LumaGenerateOperator(wait_for_completion=True)`` tasks runs against an
*official-flavour* sandbox whose generations stay ``dreaming`` for 15 minutes:

* ``cancel`` (``cancel_on_kill=True``, the default) and ``keep`` (``cancel_on_kill=False``,
  the control) both submit and defer; the test waits until both task instances are
  ``deferred`` and the triggerer polls both generations;
* both are marked ``failed`` through the public REST API, as the UI does
  (``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}`` ``{"new_state": "failed"}``);
* the triggerer cancels both triggers *as a user action* ("Trigger cancelled by user action,
  invoking on_kill" in each task's trigger log, ``attempt=1.log.trigger.<job id>.log``; the
  triggerer's own stdout does not carry per-trigger lines), ``LumaTrigger.on_kill`` sends
  ``DELETE /dream-machine/v1/generations/<id>`` (204) for ``cancel`` only, after which a GET of
  that id is 404, while ``keep``'s generation gets no DELETE and is still dreaming.

The two tasks run side by side in one run (one trigger each), which halves the wall time of
running the control as a second run. Run: ``pytest tests/e2e/test_cancel_on_kill.py -s``
(about 35 s on 2 cores; budget 4 minutes).
"""

from __future__ import annotations

import contextlib
import json
import sys
import textwrap
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_stack import E2E, Deadline, airflow_stack, http_json, timeline, wait_for

pytestmark = pytest.mark.system

DAG_ID = "luma_e2e_cancel_on_kill"
API_KEY = "sk-E2E-CANCEL-91c2"
PROMPTS = {
    "cancel": "A glass of water tipping over in slow motion, studio light",
    "keep": "A candle flame flickering in a dark room, macro lens",
}
#: The generations stay dreaming far longer than the test: only a DELETE can end them early.
QUEUE_S = 1.0
PROCESS_S = 900.0
BUDGET_S = 240.0
#: How long the DELETE may take after the task instance is marked failed.
CANCEL_WITHIN_S = 60.0
USER_ACTION = "Trigger cancelled by user action, invoking on_kill"

DAG_FILE = f"""
from __future__ import annotations

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
    for task_id, prompt, cancel in [
        ("cancel", {PROMPTS["cancel"]!r}, True),
        ("keep", {PROMPTS["keep"]!r}, False),
    ]:
        LumaGenerateOperator(
            task_id=task_id,
            prompt=prompt,
            aspect_ratio="16:9",
            wait_for_completion=True,
            deferrable=True,
            poll_interval=1,
            cancel_on_kill=cancel,
        )
"""


@pytest.fixture
def e2e(tmp_path: Path) -> Iterator[E2E]:
    from luma_provider.sandbox import LumaSandbox

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(textwrap.dedent(DAG_FILE))
    sandbox = LumaSandbox(
        port=0, api_key=API_KEY, api_flavour="official", queue_seconds=QUEUE_S, process_seconds=PROCESS_S
    )
    with airflow_stack(tmp_path, sandbox, dag_id=DAG_ID, dags_folder=dags, parallelism=4) as deployment:
        yield deployment


def test_marking_a_deferred_task_failed_cancels_its_generation(e2e: E2E) -> None:
    try:
        _scenario(e2e, Deadline(BUDGET_S))
    except BaseException:
        print(e2e.diagnostics(), file=sys.stderr)
        raise


def _scenario(e2e: E2E, deadline: Deadline) -> None:
    stack, sandbox, db = e2e.stack, e2e.sandbox, e2e.db
    log = timeline("e2e-cancel")
    e2e.start_airflow(deadline, log)

    # ---- 1. one run, both tasks deferred and polled by the triggerer ----------------------------
    status, run = e2e.rest("POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": None})
    assert status == 200, (status, run)
    run_id = run["dag_run_id"]
    e2e.run_ids.append(run_id)
    log(f"triggered {run_id}")

    def both_deferred() -> dict[str, int] | None:
        stack.assert_alive()
        tis = {r[0]: r for r in db.tis(run_id)}
        ended = {t: r[2] for t, r in tis.items() if r[2] in ("success", "failed", "up_for_retry")}
        assert not ended, f"a task ended before it was deferred: {tis}"
        if set(tis) == set(PROMPTS) and all(r[2] == "deferred" and r[4] for r in tis.values()):
            return {t: r[4] for t, r in tis.items()}
        return None

    trigger_ids = wait_for("both tasks to be deferred", both_deferred, deadline.left(120))
    gen_ids = _generation_ids(sandbox)
    assert set(gen_ids) == set(PROMPTS), gen_ids
    log(f"both deferred: triggers {trigger_ids}, generations {gen_ids}")

    # Each trigger's lines go to its task's trigger log (attempt=1.log.trigger.<triggerer job>.log).
    names = {task_id: f"{DAG_ID}/{run_id}/{task_id}/-1/1 (ID {trigger_ids[task_id]})" for task_id in gen_ids}

    def trigger_log(task_id: str) -> list[dict[str, Any]]:
        folder = e2e.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
        return [
            line for path in sorted(folder.glob("attempt=1.log.trigger.*.log")) for line in _json_lines(path)
        ]

    def running_in_triggerer() -> bool:
        started = all(_logged(trigger_log(t), f"trigger {name} starting") for t, name in names.items())
        return started and all(_requests(sandbox, "GET", gen_id) for gen_id in gen_ids.values())

    # on_kill runs only for a trigger the triggerer has started (a cancel landing before that
    # just drops it): wait until both triggers started and polled their generation.
    wait_for(
        "the triggerer to run both triggers",
        running_in_triggerer,
        deadline.left(60),
        interval=0.5,
        on_tick=stack.assert_alive,
    )
    for task_id, gen_id in gen_ids.items():
        assert _official_get(sandbox, gen_id)[1]["state"] in ("queued", "dreaming"), task_id
    assert not _requests(sandbox, "DELETE")

    # ---- 2. mark both failed, as the UI does ----------------------------------------------------
    for task_id in ("keep", "cancel"):
        status, body = e2e.rest(
            "PATCH",
            f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}",
            {"new_state": "failed"},
        )
        assert status == 200, (task_id, status, body)
        assert [ti["state"] for ti in body["task_instances"]] == ["failed"], body
    log("both marked failed through the REST API")

    # ---- 3. the cancel task's generation is deleted, the control's is not -------------------------
    cancel_id, keep_id = gen_ids["cancel"], gen_ids["keep"]
    deletes = wait_for(
        f"DELETE of generation {cancel_id}",
        lambda: _requests(sandbox, "DELETE", cancel_id),
        CANCEL_WITHIN_S,
        interval=0.5,
        on_tick=stack.assert_alive,
    )
    log(f"sandbox got {[(r['method'], r['path'], r['status']) for r in deletes]}")
    assert [r["status"] for r in deletes] == [204], deletes

    def on_kill_done() -> bool:
        return all(
            _logged(trigger_log(t), USER_ACTION, name) and _logged(trigger_log(t), "trigger completed", name)
            for t, name in names.items()
        )

    wait_for(
        "the triggerer to log on_kill for both triggers",
        on_kill_done,
        deadline.left(30),
        interval=0.5,
        on_tick=stack.assert_alive,
    )
    # The provider's own line, from the cancel task's trigger only.
    cancelled = [e["event"] for e in trigger_log("cancel") if "Cancelled Luma generation" in e["event"]]
    assert len(cancelled) == 1 and cancel_id in cancelled[0], cancelled
    assert not [e for e in trigger_log("keep") if "Cancelled Luma generation" in e["event"]]
    log("triggerer logged the user-action cancel of both triggers")

    # Both on_kill calls are over: the control sent nothing, the cancelled generation is gone.
    assert _requests(sandbox, "DELETE") == deletes, _requests(sandbox, "DELETE")
    assert sandbox.stats()["by_route"].get("delete") == 1, sandbox.stats()["by_route"]
    assert _official_get(sandbox, cancel_id)[0] == 404
    status, keep = _official_get(sandbox, keep_id)
    assert status == 200 and keep["state"] == "dreaming", (status, keep)
    tis = {r[0]: r for r in db.tis(run_id)}
    assert {t: (r[2], r[3]) for t, r in tis.items()} == {"cancel": ("failed", 1), "keep": ("failed", 1)}, tis
    log(f"done; sandbox by_route={sandbox.stats()['by_route']}")


# ------------------------------------------------------------------------------------------ helpers


def _generation_ids(sandbox: Any) -> dict[str, str]:
    """Task id -> generation id, by prompt, from the sandbox's official list route."""
    status, page = http_json(
        "GET",
        f"{sandbox.api_base_url}/generations?limit=100",
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert status == 200, (status, page)
    by_prompt = {g["request"]["prompt"]: g["id"] for g in page["generations"]}
    return {task_id: by_prompt[p] for task_id, p in PROMPTS.items() if p in by_prompt}


def _official_get(sandbox: Any, gen_id: str) -> tuple[int, Any]:
    return http_json(
        "GET",
        f"{sandbox.api_base_url}/generations/{urllib.parse.quote(gen_id)}",
        headers={"Authorization": f"Bearer {API_KEY}"},
    )


def _requests(sandbox: Any, method: str, gen_id: str | None = None) -> list[dict[str, Any]]:
    """Requests the sandbox recorded with ``method`` (on ``/generations/<gen_id>`` if given)."""
    path = None if gen_id is None else f"/dream-machine/v1/generations/{gen_id}"
    return [
        r for r in sandbox.stats()["recent"] if r["method"] == method and (path is None or r["path"] == path)
    ]


def _json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("event"), str):
                out.append(entry)
    return out


def _logged(entries: list[dict[str, Any]], event: str, name: str | None = None) -> bool:
    """A log entry ``event`` (about the trigger called ``name``, if given)."""
    return any(e["event"] == event and (name is None or e.get("name") == name) for e in entries)
