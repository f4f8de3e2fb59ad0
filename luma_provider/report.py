"""Write a batch's manifest and gallery: states from one status call, files from the downloads."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from luma_provider.gallery import GALLERY_NAME, MANIFEST_NAME, build_manifest, render_gallery, render_manifest

log = logging.getLogger(__name__)


def write_run_report(*, ti: Any, run_id: str, output_dir: str, group_id: str,
                     luma_conn_id: str = "luma_default", title: str = "Luma video batch") -> dict[str, Any]:
    """Report on every mapped instance of a submit/wait/download ``group_id`` (see ``write_report``).

    Reads ``load_prompts``'s XCom (the prompt rows), each submit's ``generation`` XCom and the
    download results, which carry their generation id: pulled all at once, because a failed
    prompt has no download XCom and asking for it by index only produces error lines.
    Zero, one or many download results all work (Airflow 3 returns one result unwrapped).
    """
    # Non-dict rows are kept (as a bare prompt) so list positions stay aligned with map indexes.
    prompts = [p if isinstance(p, dict) else {"prompt": str(p)}
               for p in _as_list(ti.xcom_pull(task_ids="load_prompts"))]
    submitted = [ti.xcom_pull(task_ids=f"{group_id}.submit", key="generation", map_indexes=i)
                 for i in range(len(prompts))]
    downloads = _as_list(ti.xcom_pull(task_ids=f"{group_id}.download"))
    by_id = {d["generation_id"]: d for d in downloads if isinstance(d, dict) and d.get("generation_id")}
    rows = []
    for p, s in zip(prompts, submitted):
        gen_id = s.get("id") if isinstance(s, dict) else None
        rows.append({"prompt": p.get("prompt"), "aspect_ratio": p.get("aspect_ratio"),
                     "generation_id": gen_id, "download": by_id.get(gen_id) if gen_id else None})
    return write_report(run_id=run_id, output_dir=output_dir, rows=rows, title=title, luma_conn_id=luma_conn_id)


def write_report(*, run_id: str, output_dir: str, rows: Sequence[dict[str, Any]],
                 title: str = "Luma video batch", luma_conn_id: str = "luma_default") -> dict[str, Any]:
    """Write ``manifest.json`` + ``index.html`` into ``output_dir`` (any ``ObjectStoragePath`` URI).

    Each row is ``{"prompt": ..., "generation_id": id or None, "download": the download
    operator's ``include_thumbnail`` result or None, **extra fields kept as they are}``. States
    and failure reasons come from one batch status call (the authority), so a prompt whose
    wait failed is still reported with Luma's ``failure_reason``.

    :return: the manifest.
    """
    from airflow.sdk import ObjectStoragePath

    from luma_provider.hooks.luma import LumaHook

    ids = [r["generation_id"] for r in rows if r.get("generation_id")]
    current = {g.id: g for g in LumaHook(luma_conn_id).get_generations(ids)} if ids else {}
    now = dt.datetime.now(dt.timezone.utc)
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
            "timings": _timings(gen.created_at if gen else None, now),
        })
    manifest = build_manifest(run_id, entries, output_dir=output_dir)
    folder = ObjectStoragePath(output_dir if "://" in output_dir else f"file://{output_dir}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).write_text(render_manifest(manifest), encoding="utf-8")
    (folder / GALLERY_NAME).write_text(render_gallery(manifest, title=title), encoding="utf-8")
    log.info("Wrote %s and %s in %s: %s", MANIFEST_NAME, GALLERY_NAME, output_dir, manifest["counts"])
    return manifest


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


def _file_name(uri: str | None) -> str | None:
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri else None


def _timings(created: str | None, now: dt.datetime) -> dict[str, Any]:
    try:
        start = dt.datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
    except ValueError:
        start = None
    seconds = round((now - start).total_seconds(), 1) if start else None
    return {"submitted_at": created, "reported_at": now.isoformat(), "seconds": seconds}
