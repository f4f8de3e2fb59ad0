"""End-to-end: the human review gate of ``luma_reviewed_release`` on a real Airflow 3.3.

The repo's ``dags/`` folder on a fresh deployment (api-server, scheduler, dag-processor,
triggerer; LocalExecutor on SQLite; see ``e2e_stack``) and a gateway sandbox. The test plays the
reviewer through the public REST API, as a review tool (or the UI's *Required Actions* page) does:

* four prompts in two chunks, one of them failing (``#fail``); the run is triggered with
  ``POST /api/v2/dags/{dag_id}/dagRuns``;
* the ``review`` task parks in ``awaiting_input`` (no trigger, no worker slot) once the batch is
  reported; the pending request shows up in ``GET /api/v2/dags/~/dagRuns/~/hitlDetails
  ?response_received=false`` and ``GET .../taskInstances/review/-1/hitlDetails`` has options built
  at run time (one per completed video, plus "Publish none of them"), ``multiple``, the default
  for a timeout, a ``note`` field and a body linking the gallery and naming the manifest;
* an answer naming the failed prompt is refused (400, the options are the run's own), the real
  answer (two of the three videos, with a note) is accepted, a second answer is refused (409);
* the run then succeeds: exactly the two approved videos and their thumbnails are in
  ``published/``, and ``manifest.json`` records who answered, when, what and the note, with a
  ``published`` flag on every entry.

About 60 s on 2 cores, up to ~130 s on a heavily loaded machine (hard budget 4 minutes):
``pytest tests/e2e/test_review_gate.py -m system -q -s``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_stack import E2E, Deadline, airflow_stack, timeline, wait_for

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "luma_reviewed_release"
API_KEY = "sk-E2E-REVIEW-5d1e"
FAIL_REASON = "Brand guidelines: no flamingos"
PROMPTS = [
    ("A lighthouse at dawn, waves crashing in slow motion", "16:9"),
    ("Close-up of ink drops blooming in water, macro", "1:1"),
    (f"A flamingo preening in a pool #fail:{FAIL_REASON}", "9:16"),
    ("A paper plane gliding across a sunlit classroom", "4:3"),
]
#: The DAG's "publish nothing" option (``PUBLISH_NONE`` in the DAG file).
PUBLISH_NONE = "Publish none of them"
#: Which completed prompts (1-based positions in the prompt file) the reviewer approves.
APPROVE = (1, 4)
NOTE = "Lighthouse and plane go out today; ink drops need a colour pass."
QUEUE_S = 0.5
PROCESS_S = 2.0
BUDGET_S = 240.0


@pytest.fixture
def e2e(tmp_path: Path) -> Iterator[E2E]:
    from luma_provider.sandbox import LumaSandbox

    sandbox = LumaSandbox(port=0, api_key=API_KEY, queue_seconds=QUEUE_S, process_seconds=PROCESS_S)
    with airflow_stack(
        tmp_path, sandbox, dag_id=DAG_ID, dags_folder=REPO / "dags", parallelism=4
    ) as deployment:
        yield deployment


def test_reviewer_approves_a_subset_through_the_rest_api(e2e: E2E) -> None:
    try:
        _scenario(e2e, Deadline(BUDGET_S))
    except BaseException:
        print(e2e.diagnostics(), file=sys.stderr)
        raise


def _scenario(e2e: E2E, deadline: Deadline) -> None:
    stack, db = e2e.stack, e2e.db
    log = timeline("e2e-review")
    e2e.start_airflow(deadline, log)

    # ---- 1. trigger a run over four prompts (one fails), two chunks ------------------------------
    prompts_file = e2e.root / "prompts.yaml"
    prompts_file.write_text(
        "".join(f"- prompt: {json.dumps(p)}\n  aspect_ratio: {json.dumps(a)}\n" for p, a in PROMPTS)
    )
    status, body = e2e.rest("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
    assert status == 200, (status, body)
    status, run = e2e.rest(
        "POST",
        f"/dags/{DAG_ID}/dagRuns",
        {"logical_date": None, "conf": {"prompts_file": str(prompts_file), "chunk_size": 2}},
    )
    assert status == 200, (status, run)
    run_id = run["dag_run_id"]
    e2e.run_ids.append(run_id)
    run_path = f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
    hitl_path = f"{run_path}/taskInstances/review/-1/hitlDetails"
    log(f"triggered {run_id}")

    # ---- 2. the review waits for a human: awaiting_input, listed as pending ------------------------
    def review_waiting() -> dict[str, Any] | None:
        stack.assert_alive()
        state = db.run_state(run_id)
        assert state not in ("success", "failed"), f"run ended before the review: {db.tis(run_id)}"
        rows = db.tis(run_id, "review")
        if not rows or rows[0][2] != "awaiting_input":
            return None
        status, pending = e2e.rest("GET", "/dags/~/dagRuns/~/hitlDetails?response_received=false")
        assert status == 200, (status, pending)
        mine = [d for d in pending["hitl_details"] if d["task_instance"]["dag_run_id"] == run_id]
        return mine[0] if mine else None

    listed = wait_for("the review to wait for an answer", review_waiting, deadline.left(150), interval=1)
    log("review is awaiting input")
    # A human answers minutes later; this test answers at once. Answering before the scheduler has
    # taken the paused workload's exit (executor event "success" for try 1) makes Airflow fail the
    # resumed try ("Cannot start Task Instance in invalid state", the defer/resume race's HITL twin),
    # so wait for that event first.
    exit_seen = f"Received executor event with state success for task instance TaskInstanceKey(dag_id='{DAG_ID}', task_id='review'"
    wait_for(
        "the scheduler to take the paused review's exit",
        lambda: exit_seen in stack.logs["scheduler"].read_text(errors="replace"),
        deadline.left(60),
        interval=0.5,
    )
    _, _, state, try_number, trigger_id = db.tis(run_id, "review")[0]
    assert (state, try_number, trigger_id) == ("awaiting_input", 1, None), "HITL on 3.3 uses no trigger"
    running = db.query("SELECT task_id FROM task_instance WHERE state='running'")
    assert running == [], f"nothing holds a worker slot while the review waits: {running}"

    status, detail = e2e.rest("GET", hitl_path)
    assert status == 200, (status, detail)
    assert detail["subject"] == listed["subject"]
    assert detail["response_received"] is False and detail["chosen_options"] is None

    # Options were built at run time from the manifest: the three completed videos, then "none".
    labels = {p: f"{i}. {p}" for i, (p, _) in enumerate(PROMPTS, start=1)}
    completed = [p for p, _ in PROMPTS if "#fail" not in p]
    assert detail["options"] == [labels[p] for p in completed] + [PUBLISH_NONE], detail["options"]
    assert detail["multiple"] is True
    assert detail["defaults"] == [PUBLISH_NONE]
    assert set(detail["params"]) == {"note"}
    run_date = run["run_after"][:10]  # RUN_DATE: manual runs have no logical date
    assert detail["subject"] == f"Publish which of 3 Luma videos of {run_date}?", detail["subject"]

    # The body links the gallery and names the manifest; both are already on storage.
    manifests = list((e2e.root / "out").rglob("manifest.json"))
    assert len(manifests) == 1, manifests
    folder = manifests[0].parent
    assert folder.parent.name == "reviewed", folder
    gallery_uri = f"file://{folder}/index.html"
    assert f"[{gallery_uri}]({gallery_uri})" in detail["body"], detail["body"]
    assert f"`file://{folder}/manifest.json`" in detail["body"], detail["body"]
    assert FAIL_REASON in detail["body"], "the reviewer is told what failed and why"
    assert (folder / "index.html").is_file()
    before = json.loads(manifests[0].read_text())
    assert "review" not in before and not list(folder.glob("published/*"))
    assert [e["state"] for e in before["generations"]] == ["completed", "completed", "failed", "completed"]

    # ---- 3. answer through the REST API --------------------------------------------------------
    failed_label = labels[PROMPTS[2][0]]
    status, refused = e2e.rest("PATCH", hitl_path, {"chosen_options": [failed_label]})
    assert status == 400, (status, refused)
    assert db.tis(run_id, "review")[0][2] == "awaiting_input", "a refused answer leaves it waiting"

    chosen = [labels[PROMPTS[i - 1][0]] for i in APPROVE]
    status, answer = e2e.rest("PATCH", hitl_path, {"chosen_options": chosen, "params_input": {"note": NOTE}})
    assert status == 200, (status, answer)
    assert answer["chosen_options"] == chosen and answer["params_input"] == {"note": NOTE}
    reviewer = answer["responded_by"]
    log(f"answered as {reviewer}: {chosen}")
    status, again = e2e.rest("PATCH", hitl_path, {"chosen_options": [PUBLISH_NONE]})
    assert status == 409, (status, again)

    # ---- 4. the run publishes exactly the approved videos ---------------------------------------------
    def finished() -> str | None:
        stack.assert_alive()
        state = db.run_state(run_id)
        return state if state in ("success", "failed") else None

    state = wait_for(f"run {run_id} to finish", finished, deadline.left(90), interval=1)
    tis = db.tis(run_id)
    log(f"run finished: {state}")
    assert state == "success", tis
    assert all(r[2] == "success" for r in tis), tis

    manifest = json.loads(manifests[0].read_text())
    entries = {e["prompt"]: e for e in manifest["generations"]}
    approved = [entries[PROMPTS[i - 1][0]] for i in APPROVE]
    published = folder / "published"
    assert sorted(p.name for p in published.iterdir()) == sorted(
        [e["video"] for e in approved] + [e["thumbnail"] for e in approved]
    )
    for entry in approved:
        assert (published / entry["video"]).read_bytes() == (folder / entry["video"]).read_bytes()
        assert entry["published"] is True
        assert entry["published_uri"] == f"file://{published}/{entry['video']}"
    for prompt, entry in entries.items():
        if entry not in approved:
            assert entry["published"] is False and entry["published_uri"] is None, prompt
            assert entry["video"] is None or (folder / entry["video"]).is_file(), "originals stay"

    review = manifest["review"]
    assert review["decided_by"] == reviewer
    assert review["chosen_options"] == chosen
    assert review["note"] == NOTE
    assert review["timed_out"] is False
    assert review["offered"] == 3
    assert review["approved"] == [e["generation_id"] for e in approved]
    assert review["published_to"] == f"file://{published}"
    decided_at = dt.datetime.fromisoformat(review["decided_at"])
    assert decided_at == dt.datetime.fromisoformat(answer["responded_at"].replace("Z", "+00:00"))
    # Everything the report wrote is still there, untouched by the rewrite.
    assert {k: v for k, v in manifest.items() if k not in ("review", "generations")} == {
        k: v for k, v in before.items() if k != "generations"
    }
    added = ("published", "published_uri")
    assert [{k: v for k, v in e.items() if k not in added} for e in manifest["generations"]] == before[
        "generations"
    ]
    assert e2e.sandbox.stats()["submissions"] == len(PROMPTS)
    log(f"published {[e['video'] for e in approved]}; decision recorded by {reviewer['name']}")
