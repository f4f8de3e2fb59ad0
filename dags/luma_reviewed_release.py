"""Reviewed release: generate a batch, let a human pick the videos to publish, publish only those.

What it shows:

* the same chunked **submit -> wait (deferred) -> download** groups as ``luma_daily_content``
  (``luma_common.chunk_group``), prompts from the ``prompts_file`` param (read at run time),
  into ``{output_root}/reviewed/<run time>/``; ``report`` writes ``manifest.json`` and the
  ``index.html`` gallery there, whatever happened;
* a **human review gate** with Airflow's own human-in-the-loop operator (standard provider,
  Airflow 3.1+): ``review`` asks "which of these videos go out?" with one checkbox per video
  that is really on storage (``multiple=True``), plus "Publish none of them". The body links the
  gallery and names the manifest, and lists the prompts that failed and why. The reviewer
  answers in the UI (*Required Actions*, or the task's *Required Action* tab) or through the REST
  API (``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/review/-1/hitlDetails``);
  an optional ``note`` is recorded too. On Airflow 3.3 the task waits in the ``awaiting_input``
  state: no worker slot, no trigger;
* **options built at run time**: ``HITLOperator`` templates only ``subject`` and ``body``, and its
  options are fixed when the DAG is parsed. ``ReviewOperator`` (below) adds ``options`` to the
  template fields, so they can be an XCom (``review_request["options"]``): rendered before
  ``execute`` writes the request, and rendered again when the task resumes, where
  ``execute_complete`` checks the answer against them (the API server checks it against the
  stored request, answering 400 for anything else);
* ``publish`` copies only the approved videos (and their thumbnails) to
  ``<batch folder>/published/`` with ``ObjectStoragePath.copy`` (``file://``, ``s3://``, ...) and
  rewrites ``manifest.json`` with a ``review`` section (who, when, which, the note) and a
  ``published`` flag on every entry. No answer within ``REVIEW_TIMEOUT`` (3 days) counts as
  "Publish none of them", recorded as ``timed_out``.

Set ``gallery_base_url`` (e.g. ``https://cdn.example.com/videos`` serving ``output_root``) to give
the reviewer a clickable https link instead of the storage URI. The building blocks live in
``luma_common.py`` beside this file; copy both files together.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import DAG, Param, task
from luma_common import OUTPUT_ROOT, RUN_DATE, chunk_group

log = logging.getLogger(__name__)

PROMPTS_FILE = str(Path(__file__).parent / "prompts" / "daily_prompts.yaml")
#: One folder per run (two runs on the same day never share a manifest or a ``published/``).
BATCH_DIR = "{{ params.output_root }}/reviewed/{{ dag_run.run_after | ts_nodash }}"
#: The option that publishes nothing; also what an unanswered review resolves to.
PUBLISH_NONE = "Publish none of them"
#: How long a run waits for its reviewer.
REVIEW_TIMEOUT = timedelta(days=3)
_HAS_RESPONSE_TIMEOUT = "response_timeout" in inspect.signature(HITLOperator.__init__).parameters


class ReviewOperator(HITLOperator):
    """``HITLOperator`` whose ``options`` are templated, so they can come from an upstream XCom.

    Airflow renders template fields before ``execute`` (which stores the request the UI shows)
    and again before ``execute_complete`` when the task resumes, so both see the same options.
    ``defaults`` are checked against the rendered options, not at parse time.
    """

    template_fields = (*HITLOperator.template_fields, "options")

    def validate_defaults(self) -> None:
        if isinstance(self.options, list):  # an XComArg until rendered: checked again in execute
            super().validate_defaults()

    def execute(self, context: Any) -> Any:
        self.validate_options()
        self.validate_defaults()
        with contextlib.suppress(ValueError):  # no [api] base_url configured
            self.log.info("Answer it at %s", self.generate_link_to_ui_from_context(context=context))
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        result = super().execute_complete(context, event)
        # The scheduler applies ``defaults`` when nobody answers in time; say so in the result.
        return {**result, "timed_out": bool(event.get("timedout"))}


# ------------------------------------------------------------------------------ run-time helpers


def storage_path(uri: str) -> Any:
    """An ``ObjectStoragePath`` for a URI or a plain local path."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri if "://" in uri else f"file://{uri}")


def public_url(uri: str, output_root: str, base_url: str) -> str:
    """``uri`` under ``base_url`` when ``base_url`` serves ``output_root``; else ``uri`` itself."""
    root = output_root.rstrip("/")
    if base_url and uri.startswith(f"{root}/"):
        return f"{base_url.rstrip('/')}/{uri[len(root) + 1 :]}"
    return uri


def build_review_request(
    manifest: dict[str, Any], output_root: str, gallery_base_url: str, run_date: str
) -> dict[str, Any]:
    """What the reviewer is asked: one option per video on storage, subject and Markdown body.

    Options are ``"<n>. <start of the prompt>"``: ``n`` is the entry's position in the manifest
    and the gallery, which keeps labels unique. ``option_map`` maps each back to its generation id.
    """
    from luma_provider.batch import short_label

    output_dir = manifest["output_dir"]
    gallery = f"{output_dir}/index.html"
    option_map: dict[str, str] = {}
    ready, unusable = [], []
    for number, entry in enumerate(manifest["generations"], start=1):
        prompt = entry.get("prompt") or ""
        on_storage = bool(entry.get("video_uri")) and storage_path(entry["video_uri"]).exists()
        if entry.get("state") == "completed" and entry.get("generation_id") and on_storage:
            label = f"{number}. {short_label(prompt, 70)}"
            option_map[label] = entry["generation_id"]
            ready.append(f"- **{label}** (`{entry['video']}`)")
        else:
            why = entry.get("failure_reason") or entry.get("state") or "no video"
            if entry.get("state") == "completed":
                why = "completed, but its video is not on storage"
            unusable.append(f"- {number}. {short_label(prompt, 70)}: {why}")
    lines = [
        f"**{len(ready)} of {manifest['total']} videos** of run `{manifest['run_id']}` can be published.",
        "",
        f"- Gallery: [{gallery}]({public_url(gallery, output_root, gallery_base_url)})",
        f"- Manifest: `{output_dir}/manifest.json`",
        "",
        f"Tick the videos to copy to `{output_dir}/published/`, or choose *{PUBLISH_NONE}*"
        " (it wins over any ticked video). Your answer, name and the time go into the manifest.",
        "",
        *ready,
    ]
    if unusable:
        lines += ["", "Not publishable:", "", *unusable]
    return {
        "options": [*option_map, PUBLISH_NONE],
        "option_map": option_map,
        "subject": f"Publish which of {len(ready)} Luma videos of {run_date}?",
        "body": "\n".join(lines),
        "manifest": f"{output_dir}/manifest.json",
    }


def publish_approved(decision: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Copy the approved videos + thumbnails to ``published/``; record the decision in the manifest.

    Idempotent: a retry copies again, and a file of an entry that is not approved (left by an
    earlier, different decision) is removed, so ``published/`` holds exactly this decision.
    """
    from luma_provider.gallery import render_manifest
    from luma_provider.report import write_text

    manifest_path = storage_path(request["manifest"])
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    chosen = list(decision.get("chosen_options") or [])
    option_map: dict[str, str] = request["option_map"]
    approved = set() if PUBLISH_NONE in chosen else {option_map[o] for o in chosen if o in option_map}
    folder = storage_path(manifest["output_dir"])
    published = folder / "published"
    published.mkdir(parents=True, exist_ok=True)
    for entry in manifest["generations"]:
        names = [n for n in (entry.get("video"), entry.get("thumbnail")) if n]
        is_approved = bool(entry.get("generation_id")) and entry["generation_id"] in approved
        for name in names:
            if is_approved:
                (folder / name).copy(published / name)
            elif (published / name).exists():
                (published / name).unlink()
        entry["published"] = is_approved
        entry["published_uri"] = str(published / entry["video"]) if is_approved else None
    responded_at = decision.get("responded_at")
    manifest["review"] = {
        "task_id": "review",
        "decided_by": decision.get("responded_by_user"),
        "decided_at": responded_at.isoformat() if isinstance(responded_at, dt.datetime) else responded_at,
        "timed_out": bool(decision.get("timed_out")),
        "chosen_options": chosen,
        "note": (decision.get("params_input") or {}).get("note") or None,
        "offered": len(option_map),
        "approved": [e["generation_id"] for e in manifest["generations"] if e["published"]],
        "published_to": str(published),
    }
    write_text(manifest_path, render_manifest(manifest))
    review = manifest["review"]
    who = (review["decided_by"] or {}).get("name") or ("nobody (timed out)" if review["timed_out"] else "?")
    log.info("Published %d of %d offered videos to %s (%s)", len(approved), len(option_map), published, who)
    return review


# ------------------------------------------------------------------------------------------ DAG

with DAG(
    dag_id="luma_reviewed_release",
    description="Generate Luma videos, let a reviewer pick the ones to publish (HITL), publish only those",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["luma", "example"],
    params={
        "prompts_file": Param(PROMPTS_FILE, type="string", description="YAML or CSV file of prompts"),
        "output_root": Param(OUTPUT_ROOT, type="string", description="ObjectStoragePath URI for outputs"),
        "chunk_size": Param(
            100, type="integer", minimum=1, maximum=1000, description="Prompts per submit/wait/download task"
        ),
        "gallery_base_url": Param(
            "", type="string", description="https URL serving output_root, for a clickable gallery link"
        ),
    },
    doc_md=__doc__,
) as dag:

    @task
    def load_prompts(params: dict) -> list[dict]:
        """Read the prompt file (YAML list or CSV with a header) and cut it into chunks."""
        from luma_common import chunk_prompts

        from luma_provider.prompts import load_prompt_file

        return chunk_prompts(load_prompt_file(params["prompts_file"]), int(params["chunk_size"]))

    @task(trigger_rule="all_done", templates_dict={"batch_dir": BATCH_DIR})
    def report(run_id: str, templates_dict: dict, ti=None) -> dict:
        """Manifest + gallery for every prompt of the run, whatever state each ended in."""
        from luma_common import write_chunk_report

        return write_chunk_report(
            ti=ti, run_id=run_id, output_dir=templates_dict["batch_dir"], title="Luma videos for review"
        )

    @task(multiple_outputs=True, templates_dict={"run_date": RUN_DATE})
    def review_request(manifest: dict, params: dict, templates_dict: dict) -> dict:
        """The review's options (one per video on storage), subject and body, from the manifest."""
        from airflow.providers.common.compat.sdk import AirflowSkipException  # also on Airflow 3.1

        request = build_review_request(
            manifest, params["output_root"], params["gallery_base_url"], templates_dict["run_date"]
        )
        if not request["option_map"]:
            raise AirflowSkipException("No video to review: every prompt failed (see the gallery)")
        return request

    @task
    def publish(decision: dict, request: dict) -> dict:
        """Copy the approved videos to ``published/`` and record the decision in the manifest."""
        return publish_approved(decision, request)

    # One submit -> wait -> download group per chunk of prompts (see luma_common.chunk_group).
    chunks = chunk_group(f"{BATCH_DIR}/", idempotency_key=f"luma_reviewed_release/{RUN_DATE}").expand_kwargs(
        load_prompts()
    )
    manifest = report()
    chunks >> manifest
    request = review_request(manifest)
    review = ReviewOperator(
        task_id="review",
        subject=request["subject"],
        body=request["body"],
        options=request["options"],
        multiple=True,
        defaults=[PUBLISH_NONE],
        params={"note": Param("", type="string", description="Optional note, kept in the manifest")},
        # providers-standard of Airflow 3.1's era has no response_timeout: the wait is execution_timeout
        **{"response_timeout" if _HAS_RESPONSE_TIMEOUT else "execution_timeout": REVIEW_TIMEOUT},
    )
    publish(review.output, request)
