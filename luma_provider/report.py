"""Write a batch's manifest and gallery: states from one status call, files from the downloads.

The caller hands in the rows (prompt, generation id, download result); where they come from
(XCom task ids of a particular DAG) is the DAG's business, see ``dags/luma_common.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from luma_provider.api import DEFAULT_CONN_ID, storage_write_options
from luma_provider.exceptions import LumaError
from luma_provider.gallery import GALLERY_NAME, MANIFEST_NAME, build_manifest, render_gallery, render_manifest

log = logging.getLogger(__name__)


def write_report(
    *,
    run_id: str,
    output_dir: str,
    rows: Sequence[dict[str, Any]],
    title: str = "Luma video batch",
    luma_conn_id: str = DEFAULT_CONN_ID,
    credits_before: float | None = None,
) -> dict[str, Any]:
    """Write ``manifest.json`` + ``index.html`` into ``output_dir`` (any ``ObjectStoragePath`` URI).

    Each row is ``{"prompt": ..., "generation_id": id or None, "download": the download
    operator's ``include_thumbnail`` result or None, "failure_reason": why it was never
    submitted (optional), **extra fields kept as they are}``. States
    and failure reasons come from one batch status call (the authority), so a prompt whose
    wait failed is still reported with Luma's ``failure_reason``. Optional row fields: ``skip_reason``
    (a prompt deliberately not submitted: state ``skipped``), ``seconds`` (submit to completion, from
    the wait), ``model``/``resolution``/``duration`` (what was asked, when the API does not echo it).

    Each entry gets a ``usage`` block (what sets the price: flavour, generation type, model,
    resolution, duration, render seconds) and the manifest a ``usage`` summary; on the official
    API with ``credits_before`` (the balance read when the run started) also the balance after
    and the credits spent (shared by every run on the account at that time).

    :return: the manifest.
    """
    from airflow.sdk import ObjectStoragePath

    from luma_provider.hooks.luma import LumaHook

    hook = LumaHook(luma_conn_id)
    flavour = hook.settings.api_flavour
    ids = [r["generation_id"] for r in rows if r.get("generation_id")]
    current = {g.id: g for g in hook.get_generations(ids)} if ids else {}
    now = dt.datetime.now(dt.UTC)
    entries = []
    for row in rows:
        row = dict(row)
        gen = current.get(row.pop("generation_id", None) or "")
        down = row.pop("download", None) or {}
        submit_error = row.pop("failure_reason", None)  # why a prompt has no generation at all
        skip_reason = row.pop("skip_reason", None)
        render_seconds = row.pop("seconds", None)
        asked = {k: row.pop(k, None) for k in ("model", "resolution", "duration")}
        entries.append(
            {
                **row,
                "generation_id": gen.id if gen else None,
                "state": gen.state.value if gen else "skipped" if skip_reason else "not_submitted",
                **({"skip_reason": skip_reason} if skip_reason and not gen else {}),
                "failure_reason": gen.failure_reason
                if gen
                else None
                if skip_reason
                else submit_error or "submit task failed; see its log",
                "video": _file_name(down.get("video")),
                "thumbnail": _file_name(down.get("thumbnail")),
                "video_uri": down.get("video"),
                "duration": gen.duration if gen else None,
                "width": gen.width if gen else None,
                "height": gen.height if gen else None,
                "timings": _timings(gen.created_at if gen else None, now),
                "usage": _usage(flavour, gen, asked, render_seconds),
            }
        )
    manifest = build_manifest(run_id, entries, output_dir=output_dir)
    manifest["usage"] = _usage_summary(flavour, entries, hook, credits_before)
    folder = ObjectStoragePath(output_dir if "://" in output_dir else f"file://{output_dir}")
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / MANIFEST_NAME, render_manifest(manifest))
    write_text(folder / GALLERY_NAME, render_gallery(manifest, title=title))
    log.info("Wrote %s and %s in %s: %s", MANIFEST_NAME, GALLERY_NAME, output_dir, manifest["counts"])
    return manifest


def write_text(path: Any, text: str) -> None:
    """Write ``text`` (UTF-8) to an ``ObjectStoragePath``, with its content type where kept.

    A gallery opened from S3 must be served as HTML, not downloaded.
    """
    with path.open("w", encoding="utf-8", **storage_write_options(path.protocol, path.name)) as out:
        out.write(text)


def _usage(flavour: str, gen: Any, asked: dict[str, Any], render_seconds: Any) -> dict[str, Any] | None:
    """What sets the price of one generation: the API's echo of the request where it has one."""
    if gen is None:
        return None
    request = gen.raw.get("request") if isinstance(gen.raw.get("request"), dict) else {}
    return {
        "flavour": flavour,
        "generation_type": gen.generation_type or ("image" if gen.is_image else "video"),
        "model": gen.model or request.get("model") or asked.get("model"),
        "resolution": request.get("resolution") or asked.get("resolution"),
        "duration": request.get("duration") or asked.get("duration"),
        "video_seconds": gen.duration,
        "seconds_to_complete": render_seconds if isinstance(render_seconds, (int, float)) else None,
    }


def _usage_summary(
    flavour: str, entries: Sequence[dict[str, Any]], hook: Any, credits_before: float | None
) -> dict[str, Any]:
    done = [e for e in entries if e["state"] == "completed" and e.get("usage")]
    by: dict[str, float] = {}
    for entry in done:
        usage = entry["usage"]
        label = " ".join(str(v) for v in (usage.get("resolution"), usage.get("model")) if v) or "video"
        by[label] = round(by.get(label, 0.0) + float(usage.get("video_seconds") or 0), 1)
    summary: dict[str, Any] = {
        "flavour": flavour,
        "videos": len(done),
        "video_seconds": round(sum(by.values()), 1),
        "video_seconds_by": by,
        "credits_before": None,
        "credits_after": None,
        "credits_spent": None,
    }
    if flavour == "official" and credits_before is not None:
        try:
            after = hook.get_credits()
        except LumaError as err:  # the report must still be written
            log.warning("Could not read the credit balance after the run: %s", err)
        else:
            summary.update(
                credits_before=credits_before,
                credits_after=after,
                credits_spent=round(credits_before - after, 2),
            )
    return summary


def _file_name(uri: str | None) -> str | None:
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri else None


def _timings(created: str | None, now: dt.datetime) -> dict[str, Any]:
    try:
        start = dt.datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
    except ValueError:
        start = None
    seconds = round((now - start).total_seconds(), 1) if start else None
    return {"submitted_at": created, "reported_at": now.isoformat(), "seconds": seconds}
