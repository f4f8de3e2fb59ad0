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


def video_group(destination: str, group_id: str = "generate"):
    """A task group for one prompt: submit -> wait (deferred) -> download video + thumbnail.

    Map it over prompt rows (``luma_provider.prompts.load_prompt_file`` output)::

        video_group("{{ params.output_root }}/{{ ds }}/").expand_kwargs(load_prompts())

    :param destination: folder URI (templated, ends with ``/``) the files are downloaded to.
    :param group_id: the group's id; ``luma_provider.report.write_run_report`` needs it.
    """

    @task_group(group_id=group_id)
    def generate(prompt, aspect_ratio, image_url, image_end_url, model, loop):
        submit = LumaGenerateOperator(
            task_id="submit", prompt=prompt, aspect_ratio=aspect_ratio, image_url=image_url,
            image_end_url=image_end_url, model=model, loop=loop, pool=POOL,
            retries=2, retry_delay=timedelta(seconds=30),
        )
        wait = LumaTaskSensor(
            task_id="wait", generation_id=submit.output, poll_interval=POLL_INTERVAL, timeout=60 * 60,
            map_index_template="{{ task.generation_id }}",
        )
        # Returning the tail makes a downstream `report` wait for every step of every prompt.
        return LumaDownloadVideoOperator(
            task_id="download", generation_id=wait.output, include_thumbnail=True, pool=POOL,
            retries=2, retry_delay=timedelta(seconds=30), destination=destination,
        )

    return generate


def raise_if_any_failed(summary: dict[str, Any]) -> None:
    """Fail a ``check`` task (after the report is written) if any prompt produced no video."""
    failed = [g for g in summary["generations"] if g["state"] != "completed"]
    if failed:
        lines = "; ".join(f"{g['prompt'][:40]!r}: {g.get('failure_reason') or g['state']}" for g in failed)
        raise RuntimeError(f"{len(failed)} of {summary['total']} generations did not complete: {lines}")


def write_report(*, run_id: str, output_dir: str, rows: list[dict[str, Any]],
                 title: str = "Luma video batch", luma_conn_id: str = "luma_default") -> dict[str, Any]:
    """``manifest.json`` + ``index.html`` for hand-wired (unmapped) generations.

    Mapped groups use ``luma_provider.report.write_run_report``; this is the same manifest for a
    DAG that submits a few generations itself. Each row is ``{"prompt": ..., "generation_id":
    id or None, "download": the download operator's result for it or None, **extra fields}``.
    States and failure reasons come from one status call, so failed steps are reported too.
    """
    from airflow.sdk import ObjectStoragePath

    from luma_provider.gallery import GALLERY_NAME, MANIFEST_NAME, build_manifest, render_gallery, render_manifest
    from luma_provider.hooks.luma import LumaHook

    ids = [r["generation_id"] for r in rows if r.get("generation_id")]
    current = {g.id: g for g in LumaHook(luma_conn_id).get_generations(ids)} if ids else {}
    entries = []
    for row in rows:
        row = dict(row)
        gen = current.get(row.pop("generation_id", None) or "")
        down = row.pop("download", None) or {}
        entries.append({
            **row,
            "generation_id": gen.id if gen else None,
            "state": gen.state.value if gen else "not_submitted",
            "failure_reason": gen.failure_reason if gen else "submit task failed; see its log",
            "video": _file_name(down.get("video")),
            "thumbnail": _file_name(down.get("thumbnail")),
            "video_uri": down.get("video"),
            "duration": gen.duration if gen else None,
            "width": gen.width if gen else None,
            "height": gen.height if gen else None,
        })
    manifest = build_manifest(run_id, entries, output_dir=output_dir)
    folder = ObjectStoragePath(output_dir if "://" in output_dir else f"file://{output_dir}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).write_text(render_manifest(manifest), encoding="utf-8")
    (folder / GALLERY_NAME).write_text(render_gallery(manifest, title=title), encoding="utf-8")
    return manifest


def _file_name(uri: str | None) -> str | None:
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri else None
