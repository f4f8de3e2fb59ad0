"""Write a batch's manifest and gallery: states from one status call, files from the downloads.

The caller hands in the rows (prompt, generation id, download result); where they come from
(XCom task ids of a particular DAG) is the DAG's business, see ``dags/luma_common.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from luma_provider.api import DEFAULT_CONN_ID
from luma_provider.gallery import GALLERY_NAME, MANIFEST_NAME, build_manifest, render_gallery, render_manifest

log = logging.getLogger(__name__)


def write_report(
    *,
    run_id: str,
    output_dir: str,
    rows: Sequence[dict[str, Any]],
    title: str = "Luma video batch",
    luma_conn_id: str = DEFAULT_CONN_ID,
) -> dict[str, Any]:
    """Write ``manifest.json`` + ``index.html`` into ``output_dir`` (any ``ObjectStoragePath`` URI).

    Each row is ``{"prompt": ..., "generation_id": id or None, "download": the download
    operator's ``include_thumbnail`` result or None, "failure_reason": why it was never
    submitted (optional), **extra fields kept as they are}``. States
    and failure reasons come from one batch status call (the authority), so a prompt whose
    wait failed is still reported with Luma's ``failure_reason``.

    :return: the manifest.
    """
    from airflow.sdk import ObjectStoragePath

    from luma_provider.hooks.luma import LumaHook

    ids = [r["generation_id"] for r in rows if r.get("generation_id")]
    current = {g.id: g for g in LumaHook(luma_conn_id).get_generations(ids)} if ids else {}
    now = dt.datetime.now(dt.UTC)
    entries = []
    for row in rows:
        row = dict(row)
        gen = current.get(row.pop("generation_id", None) or "")
        down = row.pop("download", None) or {}
        submit_error = row.pop("failure_reason", None)  # why a prompt has no generation at all
        entries.append(
            {
                **row,
                "generation_id": gen.id if gen else None,
                "state": gen.state.value if gen else "not_submitted",
                "failure_reason": gen.failure_reason
                if gen
                else submit_error or "submit task failed; see its log",
                "video": _file_name(down.get("video")),
                "thumbnail": _file_name(down.get("thumbnail")),
                "video_uri": down.get("video"),
                "duration": gen.duration if gen else None,
                "width": gen.width if gen else None,
                "height": gen.height if gen else None,
                "timings": _timings(gen.created_at if gen else None, now),
            }
        )
    manifest = build_manifest(run_id, entries, output_dir=output_dir)
    folder = ObjectStoragePath(output_dir if "://" in output_dir else f"file://{output_dir}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).write_text(render_manifest(manifest), encoding="utf-8")
    (folder / GALLERY_NAME).write_text(render_gallery(manifest, title=title), encoding="utf-8")
    log.info("Wrote %s and %s in %s: %s", MANIFEST_NAME, GALLERY_NAME, output_dir, manifest["counts"])
    return manifest


def _file_name(uri: str | None) -> str | None:
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri else None


def _timings(created: str | None, now: dt.datetime) -> dict[str, Any]:
    try:
        start = dt.datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
    except ValueError:
        start = None
    seconds = round((now - start).total_seconds(), 1) if start else None
    return {"submitted_at": created, "reported_at": now.isoformat(), "seconds": seconds}
