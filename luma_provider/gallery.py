"""Run manifest (JSON) and HTML gallery for a batch of generations. Pure rendering, no I/O."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

MANIFEST_NAME = "manifest.json"
GALLERY_NAME = "index.html"


def build_manifest(run_id: str, entries: Sequence[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    """The run manifest: one entry per prompt (completed or not), plus counts.

    Each entry holds ``prompt``, ``generation_id``, ``state``, ``failure_reason``, ``video``
    (file name relative to the manifest), ``thumbnail``, ``duration``, ``width``, ``height`` and
    ``timings`` (``submitted_at``, ``completed_at``, ``seconds``).
    """
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.get("state") or "unknown"] = counts.get(entry.get("state") or "unknown", 0) + 1
    return {"run_id": run_id, **meta, "counts": counts, "total": len(entries), "generations": list(entries)}


def usage_line(manifest: dict[str, Any]) -> str:
    """One line on what the run produced and spent.

    E.g. ``4 videos, 20 s of 720p ray-2 · credits spent: 1,280 (USD cents)``; ``n/a`` where the
    API has no balance (gateways).
    """
    usage = manifest.get("usage") or {}
    videos = int(usage.get("videos") or 0)
    kinds = ", ".join(
        f"{seconds:g} s of {label}"
        for label, seconds in sorted((usage.get("video_seconds_by") or {}).items())
    )
    spent = usage.get("credits_spent")
    credits = (
        f"{spent:,.0f} (USD cents)"
        if isinstance(spent, (int, float))
        else f"n/a ({usage.get('flavour') or '?'} API)"
    )
    return (
        f"{videos} video{'s' if videos != 1 else ''}"
        + (f", {kinds}" if kinds else "")
        + f" · credits spent: {credits}"
    )


def render_manifest(manifest: dict[str, Any]) -> str:
    """The manifest as indented JSON."""
    return json.dumps(manifest, indent=2, sort_keys=False, default=str)


def render_gallery(manifest: dict[str, Any], title: str = "Luma video batch") -> str:
    """A self-contained page: every completed video playable, with its prompt; failures listed."""
    cards = []
    for entry in manifest["generations"]:
        prompt = html.escape(entry.get("prompt") or "")
        gen_id = html.escape(entry.get("generation_id") or "not submitted")
        if entry.get("video"):
            poster = f' poster="{html.escape(entry["thumbnail"])}"' if entry.get("thumbnail") else ""
            media = (
                f'<video controls loop muted playsinline preload="metadata"{poster} '
                f'src="{html.escape(entry["video"])}"></video>'
            )
            duration = f"{entry['duration']:.1f}" if isinstance(entry.get("duration"), (int, float)) else "?"
            status = f"{duration} s · {entry.get('width') or '?'}×{entry.get('height') or '?'}"  # noqa: RUF001 - a real multiplication sign
            css = "ok"
        else:
            reason = html.escape(entry.get("failure_reason") or entry.get("state") or "no video")
            media = f'<div class="missing">{reason}</div>'
            status = html.escape(entry.get("state") or "unknown")
            css = "bad"
        cards.append(
            f'<figure class="{css}">{media}<figcaption><p class="prompt">{prompt}</p>'
            f'<p class="meta">{status} · <code>{gen_id}</code></p></figcaption></figure>'
        )
    counts = ", ".join(f"{n} {state}" for state, n in sorted(manifest.get("counts", {}).items()))
    heading = html.escape(f"{title} — {manifest.get('run_id', '')}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{heading}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;background:#0f0f14;color:#eee}}
h1{{font-weight:600;font-size:1.4rem}} .summary{{color:#aaa}}
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:1.25rem}}
figure{{margin:0;background:#1b1b24;border-radius:10px;overflow:hidden;border:1px solid #2a2a38}}
figure.bad{{border-color:#a33}} video{{width:100%;display:block;background:#000;aspect-ratio:16/9}}
.missing{{aspect-ratio:16/9;display:flex;align-items:center;justify-content:center;color:#f88;padding:1rem;text-align:center}}
figcaption{{padding:.75rem 1rem}} .prompt{{margin:0 0 .4rem}} .meta{{margin:0;color:#999;font-size:.85rem}}
</style></head>
<body><h1>{heading}</h1><p class="summary">{manifest.get("total", 0)} prompts: {html.escape(counts)}</p>
<p class="summary usage">{html.escape(usage_line(manifest))}</p>
<div class="grid">
{chr(10).join(cards)}
</div></body></html>
"""
