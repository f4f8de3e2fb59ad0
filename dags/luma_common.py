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
#: The run's date: the logical date, or when the run was created for manual/API runs, which
#: have no logical date on Airflow 3 (so ``{{ ds }}`` would be undefined there).
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"


def video_group(destination: str, group_id: str = "generate", idempotency_key: str | None = None):
    """A task group for one prompt: submit -> wait (deferred) -> download video + thumbnail.

    Map it over prompt rows (``luma_provider.prompts.load_prompt_file`` output)::

        video_group(f"{{{{ params.output_root }}}}/{RUN_DATE}/").expand_kwargs(load_prompts())

    :param destination: folder URI (templated, ends with ``/``) the files are downloaded to.
    :param group_id: the group's id; ``write_run_report`` needs it.
    :param idempotency_key: reuse scope for already-paid videos (see ``LumaGenerateOperator``);
        e.g. ``RUN_DATE``: re-running or clearing a day's batch reuses that day's videos.
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
            pool=POOL,
            idempotency_key=idempotency_key,
            retries=2,
            retry_delay=timedelta(seconds=30),
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
            pool=POOL,
            retries=2,
            retry_delay=timedelta(seconds=30),
            destination=destination,
            map_label=prompt,
        )

    return generate


def raise_if_any_failed(summary: dict[str, Any]) -> None:
    """Fail a ``check`` task (after the report is written) if any prompt produced no video."""
    failed = [g for g in summary["generations"] if g["state"] != "completed"]
    if failed:
        lines = "; ".join(f"{g['prompt'][:40]!r}: {g.get('failure_reason') or g['state']}" for g in failed)
        raise RuntimeError(f"{len(failed)} of {summary['total']} generations did not complete: {lines}")


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
