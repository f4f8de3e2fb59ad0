"""What differs between the two API dialects, for the tests that run in both flavours.

The ``flavour`` fixture (``tests/integration/conftest.py``) runs a test once against a gateway
sandbox (``/luma/...``) and once against an official one (``/dream-machine/v1``). The helpers
below read the flavour from the sandbox itself, so an assertion states the dialect's own
expectation instead of being dropped.
"""

from __future__ import annotations

from typing import Any

import requests

from luma_provider.sandbox import LumaSandbox

FLAVOURS = ("gateway", "official")
#: The official API's default video model (``model`` is required there).
OFFICIAL_MODEL = "ray-2"


def is_official(sb: LumaSandbox | str) -> bool:
    """Whether a sandbox (or a flavour name) speaks the official dialect."""
    return (sb if isinstance(sb, str) else sb.config.api_flavour) == "official"


def conn_extra(sb: LumaSandbox) -> dict[str, Any]:
    """Connection extra that selects ``sb``'s flavour (nothing for a gateway: it is the default)."""
    return {"api_flavour": "official"} if is_official(sb) else {}


def status_route(sb: LumaSandbox) -> str:
    """Sandbox route name of a status poll: gateways batch on ``POST /luma/tasks``, the official
    API has only ``GET /generations/{id}`` (one per id)."""
    return "get" if is_official(sb) else "tasks"


def probe_route(sb: LumaSandbox) -> str:
    """Sandbox route of ``test_connection``'s probe: a GET of an id that cannot exist on a gateway,
    ``GET /credits`` on the official API."""
    return "credits" if is_official(sb) else "get"


def submit_status(sb: LumaSandbox) -> int:
    """HTTP status of a successful create (the official API always answers 201)."""
    return 201 if is_official(sb) else sb.config.submit_status


def api_path(sb: LumaSandbox | str, path: str) -> str:
    """A path as the hook names it in errors (relative to the API base): ``/luma/generations...``
    on a gateway, ``/generations...`` on the official API. ``path`` is given in gateway form."""
    if not is_official(sb):
        return path
    assert path.startswith("/luma/generations"), path
    rest = path.removeprefix("/luma/generations")
    return "/generations/video" if rest == "" else f"/generations{rest}"


def generation_url(sb: LumaSandbox, gen_id: str) -> str:
    """Absolute URL of one generation on the API (an auth-checked route)."""
    if is_official(sb):
        return f"{sb.api_base_url}/generations/{gen_id}"
    return f"{sb.url}/luma/generations/{gen_id}"


def video_url(sb: LumaSandbox, gen_id: str) -> str:
    """The video URL a completed generation reports (gateways add ``?raw=1``)."""
    return f"{sb.url}/media/{gen_id}.mp4" + ("" if is_official(sb) else "?raw=1")


def create_body(sb: LumaSandbox, prompt: str, image_url: str | None = None) -> dict[str, Any]:
    """A create body in ``sb``'s dialect (gateway ``user_prompt``; official ``prompt`` + ``model``)."""
    if not is_official(sb):
        return {"user_prompt": prompt, **({"image_url": image_url} if image_url else {})}
    body: dict[str, Any] = {"prompt": prompt, "model": OFFICIAL_MODEL}
    if image_url:
        body["keyframes"] = {"frame0": {"type": "image", "url": image_url}}
    return body


def submit_direct(sb: LumaSandbox, prompt: str = "a direct job", image_url: str | None = None) -> str:
    """Create a generation without the hook (plain HTTP), for tests about reading it."""
    url = f"{sb.api_base_url}/generations/video" if is_official(sb) else f"{sb.url}/luma/generations"
    resp = requests.post(
        url,
        json=create_body(sb, prompt, image_url),
        headers={"Authorization": f"Bearer {sb.api_key}"},
        timeout=10,
    )
    assert resp.status_code == submit_status(sb), resp.text
    return resp.json()["id"]
