"""Write a batch run's manifest and gallery from the XComs of a mapped submit/wait/download group."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from luma_provider.gallery import GALLERY_NAME, MANIFEST_NAME, build_manifest, render_gallery, render_manifest

log = logging.getLogger(__name__)


def write_run_report(*, ti: Any, run_id: str, output_dir: str, group_id: str,
                     luma_conn_id: str = "luma_default") -> dict[str, Any]:
    """Collect every mapped instance of ``group_id`` and write ``manifest.json`` + ``index.html``.

    States come from one batch status call (the authority), not from XComs that a failed task
    may never have written, so failed prompts carry their ``failure_reason``.

    :return: the manifest (also the task's XCom).
    """
    from airflow.sdk import ObjectStoragePath

    from luma_provider.hooks.luma import LumaHook

    prompts = ti.xcom_pull(task_ids="load_prompts") or []
    submitted = [ti.xcom_pull(task_ids=f"{group_id}.submit", key="generation", map_indexes=i)
                 for i in range(len(prompts))]
    downloads = [ti.xcom_pull(task_ids=f"{group_id}.download", map_indexes=i) for i in range(len(prompts))]
    ids = [s["id"] for s in submitted if s]
    current = {g.id: g for g in LumaHook(luma_conn_id).get_generations(ids)} if ids else {}
    now = dt.datetime.now(dt.timezone.utc)
    entries = []
    for prompt, sub, down in zip(prompts, submitted, downloads):
        gen = current.get(sub["id"]) if sub else None
        created = gen.created_at if gen else None
        entries.append({
            "prompt": prompt["prompt"],
            "aspect_ratio": prompt.get("aspect_ratio"),
            "generation_id": sub["id"] if sub else None,
            "state": gen.state.value if gen else "not_submitted",
            "failure_reason": gen.failure_reason if gen else "submit task failed; see its log",
            "video": _name(down, "video"),
            "thumbnail": _name(down, "thumbnail"),
            "video_uri": down.get("video") if isinstance(down, dict) else None,
            "duration": gen.duration if gen else None,
            "width": gen.width if gen else None,
            "height": gen.height if gen else None,
            "timings": {"submitted_at": created, "reported_at": now.isoformat(),
                        "seconds": _seconds(created, now)},
        })
    manifest = build_manifest(run_id, entries, output_dir=output_dir)
    folder = ObjectStoragePath(output_dir if "://" in output_dir else f"file://{output_dir}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).write_text(render_manifest(manifest), encoding="utf-8")
    (folder / GALLERY_NAME).write_text(render_gallery(manifest), encoding="utf-8")
    log.info("Wrote %s and %s in %s: %s", MANIFEST_NAME, GALLERY_NAME, output_dir, manifest["counts"])
    return manifest


def _name(download: Any, key: str) -> str | None:
    uri = download.get(key) if isinstance(download, dict) else None
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri else None


def _seconds(created: str | None, now: dt.datetime) -> float | None:
    try:
        start = dt.datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
    except ValueError:
        return None
    return round((now - start).total_seconds(), 1) if start else None
