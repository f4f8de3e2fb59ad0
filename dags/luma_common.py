"""Building blocks shared by the Luma example DAGs (a plain module beside them, not a DAG).

Airflow puts the DAGs folder on ``sys.path``, so the example DAGs import this as ``luma_common``.
If you copy one example DAG into your own project, copy this file next to it.
``.airflowignore`` keeps the DAG processor from parsing it as a DAG file.

Everything here is cheap to import: no network, no provider hooks, no file reads at parse time.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import task_group

from luma_provider.operators.luma import LumaDownloadVideoOperator, LumaGenerateOperator
from luma_provider.sensors.luma import LumaTaskSensor

AIRFLOW_HOME = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))

#: Where videos, thumbnails, manifests and galleries go: any ``ObjectStoragePath`` URI.
OUTPUT_ROOT = os.environ.get("LUMA_OUTPUT_ROOT", f"file://{os.path.join(AIRFLOW_HOME, 'luma_output')}")
#: Airflow pool capping submissions and downloads (``airflow pools set luma 5 "Luma gateway"``).
POOL = os.environ.get("LUMA_POOL", "default_pool")
#: Seconds between status checks while a generation renders (the sandbox demo uses 1).
POLL_INTERVAL = float(os.environ.get("LUMA_POLL_INTERVAL", "15"))
#: Submits (and downloads) one chunk runs at once; every chunk shares the gateway's rate limit.
CHUNK_CONCURRENCY = int(os.environ.get("LUMA_CHUNK_CONCURRENCY", "4"))
#: The run's date: the logical date, or when the run was created for manual/API runs, which
#: have no logical date on Airflow 3 (so ``{{ ds }}`` would be undefined there).
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"
#: The steps that pay or fetch (submit, download): in the gateway's pool, retried after 30 s.
PAID_STEP: dict[str, Any] = {"pool": POOL, "retries": 2, "retry_delay": timedelta(seconds=30)}


def video_group(
    destination: str,
    group_id: str = "generate",
    idempotency_key: str | None = None,
    prompt_source: str | None = None,
):
    """A task group for one prompt: submit -> wait (deferred) -> download video + thumbnail.

    Map it over prompt rows (``luma_provider.prompts.load_prompt_file`` output)::

        video_group(f"{{{{ params.output_root }}}}/{RUN_DATE}/").expand_kwargs(load_prompts())

    :param destination: folder URI (templated, ends with ``/``) the files are downloaded to.
    :param group_id: the group's id; ``write_run_report`` needs it.
    :param idempotency_key: reuse scope for already-paid videos (see ``LumaGenerateOperator``);
        e.g. ``RUN_DATE``: re-running or clearing a day's batch reuses that day's videos.
    :param prompt_source: URI of the prompts file (templated, e.g. ``"{{ params.prompts_file }}"``):
        the input dataset of each submit's OpenLineage events.
    """

    @task_group(group_id=group_id)
    # One parameter per prompt-file column (luma_provider.prompts.PROMPT_FIELDS).
    def generate(
        prompt,
        aspect_ratio,
        loop,
        expand_prompt,
        image_url,
        image_end_url,
        model,
        resolution,
        duration,
        concepts,
        callback_url,
    ):
        submit = LumaGenerateOperator(
            task_id="submit",
            prompt=prompt,
            aspect_ratio=aspect_ratio,
            loop=loop,
            expand_prompt=expand_prompt,
            image_url=image_url,
            image_end_url=image_end_url,
            model=model,
            resolution=resolution,
            duration=duration,
            concepts=concepts,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
            prompt_source=prompt_source,
            **PAID_STEP,
        )
        # map_label=prompt: every step of a prompt shows that prompt in the UI, like submit does.
        wait = LumaTaskSensor(
            task_id="wait",
            generation_id=submit.output,
            poll_interval=POLL_INTERVAL,
            timeout=60 * 60,
            map_label=prompt,
        )
        # Returning the tail makes a downstream `report` wait for every step of every prompt.
        return LumaDownloadVideoOperator(
            task_id="download",
            generation_id=wait.output,
            include_thumbnail=True,
            destination=destination,
            map_label=prompt,
            **PAID_STEP,
        )

    return generate


def chunk_group(
    destination: str,
    group_id: str = "chunks",
    idempotency_key: str | None = None,
    prompt_source: str | None = None,
    storage_conn_id: str | None = None,
    ledger_path: str | None = None,
    ledger_conn_id: str | None = None,
):
    """A task group for a chunk of prompts: submit all -> wait for all (deferred) -> download all.

    Map it over ``chunk_prompts`` output; 10,000 prompts in chunks of 100 are 300 task
    instances, not 30,000. ``submit`` records every accepted id at once, so its retries submit
    only the prompts not accepted yet; ``wait`` re-attaches to the same ids on a retry and never
    submits. Neither fails for a prompt Luma refused or failed (``max_failed_fraction=1``): the
    report lists every prompt and ``check`` fails the run afterwards.

    :param destination: folder URI (templated, ends with ``/``) the files are downloaded to.
    :param group_id: the group's id; ``write_chunk_report`` needs it.
    :param idempotency_key: reuse scope for already-paid videos across runs (e.g. ``RUN_DATE``).
    :param prompt_source: URI of the prompts file (templated): the OpenLineage input of ``submit``.
    :param storage_conn_id: Airflow connection of the destination's object store (e.g. an ``aws``
        connection for ``s3://``), if it needs one.
    :param ledger_path: where ``idempotency_key`` records live (default ``$AIRFLOW_HOME/luma_ledger``;
        with workers on several machines use object storage they all see, e.g. ``s3://…/ledger``).
    :param ledger_conn_id: Airflow connection of the ledger's object store, if it needs one.
    """

    @task_group(group_id=group_id)
    def chunk(prompts, label):
        submit = LumaGenerateOperator(
            task_id="submit",
            prompts=prompts,
            map_label=label,
            max_concurrent_submits=CHUNK_CONCURRENCY,
            max_failed_fraction=1.0,
            idempotency_key=idempotency_key,
            ledger_path=ledger_path,
            ledger_conn_id=ledger_conn_id,
            prompt_source=prompt_source,
            **PAID_STEP,
        )
        wait = LumaTaskSensor(
            task_id="wait",
            generation_id=submit.output,
            max_failed_fraction=1.0,
            poll_interval=POLL_INTERVAL,
            timeout=60 * 60,
            map_label=label,
            retries=2,
            # A retried wait only re-attaches to its ids; Airflow's defer/resume race
            # (apache/airflow#72716) can fail a resumed wait, so come back quickly.
            retry_delay=timedelta(seconds=5),
        )
        return LumaDownloadVideoOperator(
            task_id="download",
            generation_id=wait.output,
            include_thumbnail=True,
            max_concurrent_downloads=CHUNK_CONCURRENCY,
            destination=destination,
            storage_conn_id=storage_conn_id,
            map_label=label,
            **PAID_STEP,
        )

    return chunk


def plan_run(
    rows: list[dict[str, Any]], chunk_size: int, max_generations: int | None = None, *, ti: Any = None
) -> list[dict[str, Any]]:
    """The run's chunks within its budget (``chunk_prompts`` of the first ``max_generations`` rows).

    The rows beyond the budget are not submitted: they go to this task's XCom ``skipped`` for the
    report (``skipped: budget``), and the log says so. On the official API the credit balance
    before the run goes to XCom ``credits_before``, so the report can say what the run spent.
    """
    import logging

    log = logging.getLogger("airflow.task")
    budget = len(rows) if max_generations is None else max(0, int(max_generations))
    run, skipped = rows[:budget], rows[budget:]
    if skipped:
        log.warning(
            "Budget: this run submits %d of %d prompts (max_generations=%d); %d are skipped",
            len(run),
            len(rows),
            budget,
            len(skipped),
        )
    if ti is not None:
        reason = f"budget: max_generations={budget}"
        ti.xcom_push(key="skipped", value=[{**row, "skip_reason": reason} for row in skipped])
        ti.xcom_push(key="credits_before", value=credit_balance())
    return chunk_prompts(run, chunk_size) if run else []


def credit_balance(luma_conn_id: str = "luma_default") -> float | None:
    """The official API's credit balance (USD cents); None on a gateway, which has none."""
    from luma_provider.hooks.luma import LumaHook

    hook = LumaHook(luma_conn_id)
    return hook.get_credits() if hook.settings.official else None


def chunk_prompts(rows: list[dict[str, Any]], chunk_size: int) -> list[dict[str, Any]]:
    """Prompt rows as ``chunk_group`` kwargs: ``{"prompts": [...], "label": "1-100: <first prompt>"}``."""
    from luma_provider.batch import chunked, short_label

    # Only the options a row sets: every mapped task start pulls this whole list (Airflow 3.3),
    # so at 10,000 prompts the empty columns alone would cost ~2 MB per task start.
    rows = [{k: v for k, v in row.items() if v is not None} for row in rows]
    chunks, start = [], 1
    for part in chunked(rows, chunk_size):
        end = start + len(part) - 1
        span = f"{start}" if end == start else f"{start}-{end}"
        chunks.append({"prompts": part, "label": f"{span}: {short_label(part[0]['prompt'], 40)}"})
        start = end + 1
    return chunks


def raise_if_any_failed(summary: dict[str, Any]) -> None:
    """Fail a ``check`` task (after the report is written) if any prompt has no video on storage.

    Checks the files themselves, not only the states: a completed generation whose download
    never ran (e.g. a deferred task lost to Airflow's defer/trigger race) must fail the run.
    """
    from airflow.sdk import ObjectStoragePath

    # Skipped by the run's budget is by design, not a failure (the manifest lists them).
    failed = [g for g in summary["generations"] if g["state"] not in ("completed", "skipped")]

    def on_storage(uri: str | None) -> bool:
        return bool(uri) and ObjectStoragePath(uri).exists()

    missing = [
        g for g in summary["generations"] if g["state"] == "completed" and not on_storage(g.get("video_uri"))
    ]
    problems = [f"{g['prompt'][:40]!r}: {g.get('failure_reason') or g['state']}" for g in failed]
    problems += [f"{g['prompt'][:40]!r}: completed, but its video is not on storage" for g in missing]
    if problems:
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise RuntimeError(f"{len(problems)} of {summary['total']} prompts have no video: {shown}")


def write_run_report(
    *, ti: Any, run_id: str, output_dir: str, group_id: str, title: str = "Luma video batch"
) -> dict[str, Any]:
    """Report on every mapped instance of a ``video_group`` (``luma_provider.report.write_report``).

    Reads ``load_prompts``'s XCom (the prompt rows), each submit's ``generation`` XCom and the
    download results, which carry their generation id: pulled all at once, because a failed
    prompt has no download XCom and asking for it by index only produces error lines.
    Zero, one or many download results all work (Airflow 3 returns one result unwrapped).
    """
    # Non-dict rows are kept (as a bare prompt) so list positions stay aligned with map indexes.
    prompts = [
        p if isinstance(p, dict) else {"prompt": str(p)}
        for p in _as_list(ti.xcom_pull(task_ids="load_prompts"))
    ]
    submitted = [
        ti.xcom_pull(task_ids=f"{group_id}.submit", key="generation", map_indexes=i)
        for i in range(len(prompts))
    ]
    downloads = _as_list(ti.xcom_pull(task_ids=f"{group_id}.download"))
    by_id = {d["generation_id"]: d for d in downloads if isinstance(d, dict) and d.get("generation_id")}
    rows = []
    for p, s in zip(prompts, submitted, strict=False):
        gen_id = s.get("id") if isinstance(s, dict) else None
        rows.append(
            {
                "prompt": p.get("prompt"),
                "aspect_ratio": p.get("aspect_ratio"),
                "generation_id": gen_id,
                "download": by_id.get(gen_id) if gen_id else None,
            }
        )
    from luma_provider.report import write_report

    return write_report(run_id=run_id, output_dir=output_dir, rows=rows, title=title)


def write_chunk_report(
    *, ti: Any, run_id: str, output_dir: str, group_id: str = "chunks", title: str = "Luma video batch"
) -> dict[str, Any]:
    """Report on every prompt of every ``chunk_group`` instance (one manifest entry per prompt).

    Per chunk (by map index, so one chunk or many read the same way): the newest batch result
    (wait, else submit; ``batch_result`` when that task failed; else what was submitted) and
    the downloads. A chunk whose submit never ran lists its prompts as not submitted.
    """
    chunks = _as_list(ti.xcom_pull(task_ids="load_prompts"))
    rows = []
    for index, chunk in enumerate(chunks):
        # The most finished view of the chunk first: the wait's result, then the submit's.
        entries: list[Any] = []
        for task_id, key in (
            (f"{group_id}.wait", "return_value"),
            (f"{group_id}.wait", "batch_result"),
            (f"{group_id}.submit", "return_value"),
            (f"{group_id}.submit", "batch_result"),
        ):
            result = ti.xcom_pull(task_ids=task_id, key=key, map_indexes=index)
            if isinstance(result, dict) and isinstance(result.get("prompts"), list):
                entries = result["prompts"]
                break
        else:  # the submit failed before its result: the ids are in what it submitted
            entries = _as_list(
                ti.xcom_pull(task_ids=f"{group_id}.submit", key="batch_submitted", map_indexes=index)
            )
        downloads = _as_list(
            ti.xcom_pull(task_ids=f"{group_id}.download", map_indexes=index)
            # a download task that failed for some videos still names the ones that landed
            or ti.xcom_pull(task_ids=f"{group_id}.download", key="downloaded", map_indexes=index)
        )
        by_id = {d["generation_id"]: d for d in downloads if isinstance(d, dict) and d.get("generation_id")}
        for position, prompt in enumerate(chunk["prompts"]):
            entry = entries[position] if position < len(entries) else {}
            entry = entry if isinstance(entry, dict) else {}
            gen_id = entry.get("generation_id")
            rows.append(
                {
                    "prompt": prompt.get("prompt"),
                    "aspect_ratio": prompt.get("aspect_ratio"),
                    "chunk": chunk.get("label"),
                    "generation_id": gen_id,
                    "failure_reason": entry.get("failure_reason") or entry.get("error"),
                    "skip_reason": entry.get("skip_reason") or entry.get("skipped"),
                    "seconds": entry.get("seconds"),
                    **{k: prompt.get(k) for k in ("model", "resolution", "duration")},
                    "download": by_id.get(gen_id) if gen_id else None,
                }
            )
    # Prompts over the run's budget were never chunked: listed as skipped, after the others.
    for prompt in _as_list(ti.xcom_pull(task_ids="load_prompts", key="skipped")):
        if isinstance(prompt, dict):
            rows.append(
                {
                    "prompt": prompt.get("prompt"),
                    "aspect_ratio": prompt.get("aspect_ratio"),
                    "chunk": None,
                    "generation_id": None,
                    "skip_reason": prompt.get("skip_reason") or "budget",
                    "download": None,
                }
            )
    from luma_provider.report import write_report

    credits_before = ti.xcom_pull(task_ids="load_prompts", key="credits_before")
    return write_report(
        run_id=run_id,
        output_dir=output_dir,
        rows=rows,
        title=title,
        credits_before=credits_before if isinstance(credits_before, (int, float)) else None,
    )


def _as_list(value: Any) -> list[Any]:
    """An XCom pull of every map index as a list.

    Airflow 3 returns the bare value, not a one-item list, when exactly one mapped instance
    pushed, and None when none did; iterating a bare dict would walk its keys.
    """
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]
