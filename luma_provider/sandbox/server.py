"""aiohttp application: the ``/luma`` gateway routes, the official ``/dream-machine/v1`` routes
(see :mod:`.official`; ``api_flavour`` picks which of the two answers), the fake CDN and the
admin routes.

Request flow (one middleware, so every route behaves the same):

1. find the route name (``submit``, ``get``, ...); admin routes only get their own guard
   (API key, JSON bodies) and skip everything below;
2. take a matching fault rule, if any;
3. unless the fault breaks the exchange *before* processing: check auth, run the handler;
4. apply the fault to the response (``after_processing`` rules and body faults);
5. record the request in the stats - including faulted and rejected ones.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from luma_provider.sandbox import errors, media, official
from luma_provider.sandbox.breakage import apply_fault, json_response
from luma_provider.sandbox.config import ASPECT_RATIOS, MODEL_NAMES, OFFICIAL_BASE_PATH, SandboxConfig
from luma_provider.sandbox.faults import FaultRule, FaultSet
from luma_provider.sandbox.state import (
    COMPLETED,
    PENDING,
    PROCESSING,
    Generation,
    GenerationStore,
    render_kling,
    render_native,
    render_newapi_task,
)
from luma_provider.sandbox.stats import Stats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Routes that create generations; a fault hitting them *before* processing must not.
MUTATING_ROUTES = (
    "submit",
    "extend",
    "image",
    "upscale",
    "audio",
    "modify",
    "reframe_video",
    "reframe_image",
)
PREFIXES = ("", "/pro", "/vip")


class SandboxState:
    """Everything the handlers share; only touched from the server's event loop."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.store = GenerationStore()
        self.faults = FaultSet()
        self.stats = Stats()
        #: Official flavour: USD cents spent since the start (or the last reset).
        self.credits_spent = 0.0
        #: Official flavour: the pending callback deliveries, by generation id.
        self.callback_tasks: dict[str, asyncio.Task[None]] = {}
        self._http: aiohttp.ClientSession | None = None

    @property
    def official(self) -> bool:
        return self.config.api_flavour == "official"

    @property
    def credit_balance(self) -> float:
        return round(self.config.starting_credits - self.credits_spent, 4)

    def http_session(self) -> aiohttp.ClientSession:
        """The client that delivers callbacks (created on the server loop when first needed)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    def cancel_callbacks(self) -> None:
        for task in list(self.callback_tasks.values()):
            task.cancel()
        self.callback_tasks.clear()

    async def close(self) -> None:
        """Stop callback deliveries and close their client (the app's cleanup)."""
        tasks = list(self.callback_tasks.values())
        self.cancel_callbacks()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    def reset(self) -> None:
        """Forget generations, stats, faults, callbacks and spent credits (the config is kept)."""
        self.cancel_callbacks()
        self.store.clear()
        self.faults.clear()
        self.stats.reset()
        self.credits_spent = 0.0

    def snapshot(self) -> dict[str, Any]:
        data = self.stats.snapshot()
        data["generations"] = len(self.store)
        data["credit_balance"] = self.credit_balance
        data["faults"] = self.faults.as_list()
        data["config"] = self.config.as_dict()
        return data


STATE_KEY = web.AppKey("luma_sandbox_state", SandboxState)
# RequestKey only exists in recent aiohttp; a plain string works everywhere.
FAULT_KEY: Any = (
    web.RequestKey("luma_sandbox_fault", object) if hasattr(web, "RequestKey") else "luma_sandbox_fault"
)
_ROUTE_NAMES: dict[Handler, str] = {}
#: Handlers of each API flavour; in the other flavour their paths answer "no such route".
_FLAVOUR_OF: dict[Handler, str] = {}


def _named(name: str, flavour: str | None = "gateway") -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _ROUTE_NAMES[handler] = name
        if flavour is not None:
            _FLAVOUR_OF[handler] = flavour
        return handler

    return register


# --------------------------------------------------------------------------- helpers


def _sb(request: web.Request) -> SandboxState:
    return request.app[STATE_KEY]


def _base_url(request: web.Request) -> str:
    configured = _sb(request).config.public_base_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


async def _json_body(request: web.Request) -> tuple[Any, web.Response | None]:
    """Parse the body as JSON whatever the Content-Type (some docs send text/plain)."""
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8") if raw else ""), None
    except (ValueError, UnicodeDecodeError):
        return None, json_response(
            errors.task_error("invalid_request", "request body must be valid JSON"), 400
        )


def _validate_generation_body(body: Any) -> web.Response | None:
    if not isinstance(body, dict):
        return json_response(errors.task_error("invalid_request", "request body must be a JSON object"), 400)
    prompt = body.get("user_prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return json_response(errors.task_error("invalid_request", "user_prompt is required"), 400)
    ratio = body.get("aspect_ratio")
    if ratio is not None and ratio not in ASPECT_RATIOS:
        message = f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}; got {ratio!r}"
        return json_response(errors.task_error("invalid_request", message), 400)
    model = body.get("model_name")
    if model is not None and model not in MODEL_NAMES:
        message = f"model_name must be one of {', '.join(MODEL_NAMES)}; got {model!r}"
        return json_response(errors.task_error("invalid_request", message), 400)
    return None


def _not_found(request: web.Request) -> web.Response:
    if _sb(request).config.not_found_style == "task_not_exist":
        return json_response(errors.task_error("task_not_exist"), 400)
    return json_response(errors.task_not_found(), 404)


def _invalid_url(request: web.Request) -> web.Response:
    return json_response(errors.invalid_url(request.method, request.path), 404)


def _generation_response(
    request: web.Request, gen: Generation, *, fresh: bool, status: int = 200
) -> web.Response:
    config = _sb(request).config
    if config.shape == "kling-wrapper":
        return json_response(render_kling(gen, fresh=fresh), status)
    obj = render_native(gen, config, _base_url(request), fresh=fresh)
    return json_response([obj] if config.shape == "native-array" else obj, status)


async def _create(request: web.Request, extend_of: str | None = None) -> web.Response:
    """Shared submit/extend logic: quota, body validation, creation."""
    sb = _sb(request)
    if sb.config.quota_exhausted:
        return json_response(errors.quota_exhausted(), 403)
    body, error = await _json_body(request)
    error = error or _validate_generation_body(body)
    if error:
        return error
    if extend_of is not None:
        source = sb.store.get(extend_of)
        if source is None:
            return _not_found(request)
        if source.state != COMPLETED:
            message = f"generation {extend_of} is {source.state}; only completed generations can be extended"
            return json_response(errors.task_error("invalid_request", message), 400)
    gen = sb.store.create(body, sb.config, extend_of=extend_of)
    sb.stats.submissions += 1
    return _generation_response(request, gen, fresh=True, status=sb.config.submit_status)


# --------------------------------------------------------------------------- /luma routes


@_named("submit")
async def submit(request: web.Request) -> web.Response:
    return await _create(request)


@_named("extend")
async def extend(request: web.Request) -> web.Response:
    return await _create(request, extend_of=request.match_info["task_id"])


@_named("get")
async def get_generation(request: web.Request) -> web.Response:
    gen = _sb(request).store.get(request.match_info["task_id"])
    return _generation_response(request, gen, fresh=False) if gen else _not_found(request)


@_named("tasks")
async def tasks(request: web.Request) -> web.Response:
    sb = _sb(request)
    if not sb.config.batch_route:
        return _invalid_url(request)
    body, error = await _json_body(request)
    if error:
        return error
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return json_response(
            errors.task_error("invalid_request", "ids must be an array of task id strings"), 400
        )
    found = [gen for gen in (sb.store.get(i) for i in ids) if gen is not None]
    base = _base_url(request)
    if sb.config.tasks_shape == "newapi-wrapper":
        data = [render_newapi_task(gen, sb.config, base) for gen in found]
        return json_response({"code": "success", "message": "", "data": data})
    return json_response([render_native(gen, sb.config, base) for gen in found])


@_named("download_url")
async def download_url(request: web.Request) -> web.Response:
    sb = _sb(request)
    if not sb.config.download_route:
        return _invalid_url(request)
    gen = sb.store.get(request.match_info["task_id"])
    if gen is None:
        return _not_found(request)
    if gen.state != COMPLETED:
        message = f"generation {gen.id} is {gen.state}; no video to download yet"
        return json_response(errors.task_error("task_not_completed", message), 400)
    return json_response({"url": f"{_base_url(request)}/media/{gen.id}.mp4?raw=1"})


# --------------------------------------------------------------------------- official routes
# Luma's Dream Machine API under /dream-machine/v1 (api_flavour="official"), see .official.


async def _official_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise official.OfficialError(422, "body: the request body is not valid JSON") from None


def _official_generation(gen: Generation, status: int = 200, *, state: str | None = None) -> web.Response:
    return json_response(official.render(gen, state=state), status)


def _official_lookup(sb: SandboxState, gen_id: str) -> Generation:
    gen = sb.store.get(gen_id)
    if gen is None or not gen.official:
        raise official.OfficialError(404, f"Generation {gen_id} not found")
    return gen


async def _official_create(request: web.Request, kind: str) -> web.Response:
    """Every official create (video, image, upscale, audio, modify, reframe): validate, charge, store."""
    sb = _sb(request)
    try:
        body = await _official_json(request)
        source: Generation | None = None
        if kind == "video":
            req = official.validate_video(body, sb.store)
        elif kind == "image":
            req = official.validate_image(body)
        elif kind == "modify":
            req = official.validate_modify(body)
        elif kind in ("reframe_video", "reframe_image"):
            req = official.validate_reframe(body, kind.removeprefix("reframe_"))
        else:
            req = official.validate_upscale(body) if kind == "upscale" else official.validate_audio(body)
            source = official.source_video(sb.store, request.match_info["gen_id"], "id")
        price = official.cost(req, source)
        if sb.config.quota_exhausted or price > sb.credit_balance:
            raise official.OfficialError(
                400,
                f"Insufficient credits: this generation costs {price:g} cents, the balance is "
                f"{sb.credit_balance:g}",
            )
    except official.OfficialError as err:
        return err.response()
    model = source.model if source is not None else req["model"]
    gen = official.new_generation(
        sb.store,
        sb.config,
        req,
        kind="image" if kind in ("image", "reframe_image") else "video",
        model=model,
        prompt=str(req.get("prompt") or ""),
        base_url=_base_url(request),
    )
    sb.credits_spent += price
    sb.stats.submissions += 1
    official.schedule_callbacks(sb, gen)
    if req.get("sync"):  # image create in synchronous mode: answer once it is done
        remaining = gen.phase()[1]
        await asyncio.sleep(min(remaining, float(req.get("sync_timeout") or 60.0)))
        return _official_generation(gen, 201)
    return _official_generation(gen, 201, state=PENDING)  # a create always answers "queued"


@_named("submit", "official")
async def official_video(request: web.Request) -> web.Response:
    return await _official_create(request, "video")


@_named("image", "official")
async def official_image(request: web.Request) -> web.Response:
    return await _official_create(request, "image")


@_named("upscale", "official")
async def official_upscale(request: web.Request) -> web.Response:
    return await _official_create(request, "upscale")


@_named("audio", "official")
async def official_audio(request: web.Request) -> web.Response:
    return await _official_create(request, "audio")


@_named("modify", "official")
async def official_modify(request: web.Request) -> web.Response:
    return await _official_create(request, "modify")


@_named("reframe_video", "official")
async def official_reframe_video(request: web.Request) -> web.Response:
    return await _official_create(request, "reframe_video")


@_named("reframe_image", "official")
async def official_reframe_image(request: web.Request) -> web.Response:
    return await _official_create(request, "reframe_image")


@_named("get", "official")
async def official_get(request: web.Request) -> web.Response:
    try:
        return _official_generation(_official_lookup(_sb(request), request.match_info["gen_id"]))
    except official.OfficialError as err:
        return err.response()


@_named("delete", "official")
async def official_delete(request: web.Request) -> web.Response:
    sb = _sb(request)
    try:
        gen = _official_lookup(sb, request.match_info["gen_id"])
    except official.OfficialError as err:
        return err.response()
    sb.store.delete(gen.id)
    task = sb.callback_tasks.pop(gen.id, None)
    if task is not None:
        task.cancel()
    return web.Response(status=204)


@_named("list", "official")
async def official_list(request: web.Request) -> web.Response:
    try:
        limit, offset = official.parse_page_params(request)
    except official.OfficialError as err:
        return err.response()
    gens = sorted((g for g in _sb(request).store.generations.values() if g.official), key=lambda g: -g.seq)
    page = gens[offset : offset + limit]
    return json_response(
        {
            "generations": [official.render(gen) for gen in page],
            "count": len(page),
            "has_more": offset + len(page) < len(gens),
            "limit": limit,
            "offset": offset,
        }
    )


@_named("credits", "official")
async def official_credits(request: web.Request) -> web.Response:
    return json_response({"credit_balance": _sb(request).credit_balance})


@_named("ping", "official")
async def official_ping(request: web.Request) -> web.Response:
    return json_response({"message": "pong"})


@_named("concepts", "official")
async def official_concepts(request: web.Request) -> web.Response:
    return json_response(list(official.CONCEPTS))


# --------------------------------------------------------------------------- fake CDN


@_named("media", flavour=None)
async def media_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    for suffix, reader, content_type in (
        ("_last_frame.jpg", media.last_frame_bytes, "image/jpeg"),
        (".jpg", media.thumbnail_bytes, "image/jpeg"),
        (".png", media.png_bytes, "image/png"),  # official image generations with format: png
        ("_progress.mp4", media.video_bytes, "video/mp4"),  # official assets.progress_video
        (".mp4", media.video_bytes, "video/mp4"),
    ):
        if name.endswith(suffix):
            gen = _sb(request).store.get(name[: -len(suffix)])
            ready = (PROCESSING, COMPLETED) if suffix == "_progress.mp4" else (COMPLETED,)
            if gen is None or gen.state not in ready:
                break
            # an image generation has just its image, in the format it asked for; a video no PNG
            if gen.kind == "image" and suffix != f".{official.image_format(gen)}":
                break
            if gen.kind != "image" and suffix == ".png":
                break
            headers = {"Cache-Control": "public, max-age=3600"}
            if request.query.get("raw"):
                headers["Content-Disposition"] = f'attachment; filename="{gen.id}.mp4"'
            return web.Response(body=reader(gen.id), content_type=content_type, headers=headers)
    return web.Response(status=404, text="Not Found")


@_named("media", flavour=None)
async def media_blob(request: web.Request) -> web.StreamResponse:
    """``N`` bytes of generated data, streamed in chunks (download benchmarks up to GiBs)."""
    try:
        size = int(request.query.get("size", "0"))
    except ValueError:
        size = -1
    if not 0 <= size <= media.MAX_BLOB_SIZE:
        return web.Response(status=400, text=f"size must be an integer between 0 and {media.MAX_BLOB_SIZE}")
    rule: FaultRule | None = request.get(FAULT_KEY)
    limit = size // 2 if rule and rule.kind in ("short_body", "reset_mid_body") else size
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = size
    await resp.prepare(request)
    chunk, sent = media.blob_chunk(), 0
    while sent < limit and request.method != "HEAD":
        piece = chunk[: min(len(chunk), limit - sent)]
        await resp.write(piece)  # awaits the socket drain, so memory stays flat
        sent += len(piece)
    if limit < size and request.transport is not None:
        request.transport.close()
    return resp


# --------------------------------------------------------------------------- admin


async def admin_health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def admin_stats(request: web.Request) -> web.Response:
    return json_response(_sb(request).snapshot())


async def admin_get_config(request: web.Request) -> web.Response:
    return json_response(_sb(request).config.as_dict())


async def admin_config(request: web.Request) -> web.Response:
    body, error = await _json_body(request)
    if error:
        return error
    try:
        if not isinstance(body, dict):
            raise ValueError("config must be a JSON object")
        _sb(request).config.update(**body)
    except (TypeError, ValueError) as exc:
        return json_response({"error": str(exc)}, 400)
    return json_response(_sb(request).config.as_dict())


async def admin_add_faults(request: web.Request) -> web.Response:
    body, error = await _json_body(request)
    if error:
        return error
    try:
        _sb(request).faults.add(body)
    except (TypeError, ValueError) as exc:
        return json_response({"error": str(exc)}, 400)
    return json_response(_sb(request).faults.as_list())


async def admin_list_faults(request: web.Request) -> web.Response:
    return json_response(_sb(request).faults.as_list())


async def admin_clear_faults(request: web.Request) -> web.Response:
    _sb(request).faults.clear()
    return json_response([])


async def admin_reset(request: web.Request) -> web.Response:
    _sb(request).reset()
    return json_response({"status": "reset"})


# --------------------------------------------------------------------------- middleware


def _auth_ok(request: web.Request, api_key: str | None) -> bool:
    if api_key is None:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and token.strip() == api_key


ADMIN_OPEN_PATHS = ("/_sandbox/health",)


def _admin_rejection(request: web.Request, sb: SandboxState) -> web.Response | None:
    """Guard the admin routes, which can reconfigure the sandbox (even turn auth off).

    The key check stops other local users and processes; requiring a JSON Content-Type
    on every write stops a web page the developer visits from posting a cross-site "simple"
    request (text/plain forms need no CORS preflight, application/json does).
    """
    if request.path in ADMIN_OPEN_PATHS and request.method in ("GET", "HEAD"):
        return None
    if not _auth_ok(request, sb.config.api_key):
        message = "admin routes need Authorization: Bearer <the sandbox's API key>"
        return json_response({"error": message}, 401)
    # Bodiless POST/DELETE too: a cross-site form could otherwise reset a keyless sandbox.
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and request.content_type != "application/json":
        message = f"admin writes must be Content-Type: application/json, got {request.content_type!r}"
        return json_response({"error": message}, 415)
    return None


@web.middleware
async def sandbox_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route_handler = getattr(request.match_info.route, "handler", None)
    if request.path.startswith("/_sandbox/"):
        return _admin_rejection(request, _sb(request)) or await handler(request)
    route = _ROUTE_NAMES.get(route_handler, "unmatched") if route_handler else "unmatched"
    sb = _sb(request)
    flavour = _FLAVOUR_OF.get(route_handler) if route_handler else None
    if flavour is not None and flavour != sb.config.api_flavour:
        route = "unmatched"  # the other flavour's routes do not exist on this API
    rule = sb.faults.take(route) if route != "unmatched" else None
    request[FAULT_KEY] = rule
    auth_ok: bool | None = None
    status: int | str = "error"  # kept if the handler raises or the client goes away
    sb.stats.begin(route)
    try:
        resp: web.StreamResponse | None = None
        processes = (
            rule is None
            or rule.processes_request
            or (
                rule.kind in ("truncated_json", "reset_mid_body", "short_body")
                and route not in MUTATING_ROUTES
            )
        )
        if processes:
            if rule is not None and rule.kind == "delay":
                await request.read()  # take the whole request first, like a slow gateway that got it
                await asyncio.sleep(rule.seconds)
            resp, auth_ok = await _process(request, handler, route, sb)
        elif route in MUTATING_ROUTES and sb.official:
            phantom = official.ghost(sb.config, _base_url(request))
            resp = _official_generation(phantom, 201, state=PENDING)
        elif route in MUTATING_ROUTES:
            # A believable body for body-breaking faults, from a job that is never stored.
            ghost = GenerationStore().create({"user_prompt": "ghost"}, sb.config)
            resp = _generation_response(request, ghost, fresh=True, status=sb.config.submit_status)
        if rule is not None and isinstance(resp, web.Response | None):
            default_body = official.error_body_for_status if sb.official else errors.default_body_for_status
            resp = await apply_fault(request, rule, resp, default_body=default_body)
        assert resp is not None
        status = "reset" if rule is not None and rule.kind == "reset" else resp.status
        return resp
    finally:
        sb.stats.record(
            method=request.method,
            path=request.path,
            route=route,
            status=status,
            auth_ok=auth_ok,
            fault=rule.kind if rule else None,
        )


async def _process(
    request: web.Request, handler: Handler, route: str, sb: SandboxState
) -> tuple[web.StreamResponse, bool | None]:
    """Auth check (not for the CDN) then the real handler; unknown paths get new-api's 404
    (the official API's ``{"detail": "Not Found"}`` in the official flavour)."""
    if route == "unmatched":
        if sb.official:
            return official.detail_response("Not Found", 404), None
        return _invalid_url(request), None
    if route == "media":
        return await handler(request), None
    if not _auth_ok(request, sb.config.api_key):
        if sb.official:
            return official.detail_response(official.INVALID_KEY, 401), False
        return json_response(errors.unauthorized(), 401), False
    return await handler(request), True


# --------------------------------------------------------------------------- app factory


def create_app(config: SandboxConfig | None = None, state: SandboxState | None = None) -> web.Application:
    """Build the sandbox application; pass ``state`` to share it with a controller."""
    app = web.Application(middlewares=[sandbox_middleware], client_max_size=32 * 1024**2)
    app[STATE_KEY] = state or SandboxState(config)
    for prefix in PREFIXES:
        base = f"{prefix}/luma"
        app.router.add_post(f"{base}/generations", submit)
        app.router.add_post(f"{base}/generations/", submit)
        app.router.add_get(f"{base}/generations/{{task_id}}", get_generation)
        app.router.add_post(f"{base}/generations/{{task_id}}/extend", extend)
        app.router.add_get(f"{base}/generations/{{task_id}}/download_video_url", download_url)
        app.router.add_post(f"{base}/tasks", tasks)
    v1 = OFFICIAL_BASE_PATH
    app.router.add_get(f"{v1}/ping", official_ping)
    app.router.add_get(f"{v1}/credits", official_credits)
    app.router.add_post(f"{v1}/generations/video", official_video)
    app.router.add_post(f"{v1}/generations", official_video)  # the older create route (OpenAPI v1.1.0)
    app.router.add_post(f"{v1}/generations/image", official_image)
    app.router.add_post(f"{v1}/generations/image/reframe", official_reframe_image)
    app.router.add_post(f"{v1}/generations/video/modify", official_modify)
    app.router.add_post(f"{v1}/generations/video/reframe", official_reframe_video)
    app.router.add_get(f"{v1}/generations", official_list)
    app.router.add_get(f"{v1}/generations/concepts/list", official_concepts)
    app.router.add_get(f"{v1}/generations/{{gen_id}}", official_get)
    app.router.add_delete(f"{v1}/generations/{{gen_id}}", official_delete)
    app.router.add_post(f"{v1}/generations/{{gen_id}}/upscale", official_upscale)
    app.router.add_post(f"{v1}/generations/{{gen_id}}/audio", official_audio)
    app.router.add_get("/media/blob", media_blob)
    app.router.add_get("/media/{name}", media_file)
    app.router.add_get("/_sandbox/health", admin_health)
    app.router.add_get("/_sandbox/stats", admin_stats)
    app.router.add_get("/_sandbox/config", admin_get_config)
    app.router.add_post("/_sandbox/config", admin_config)
    app.router.add_get("/_sandbox/faults", admin_list_faults)
    app.router.add_post("/_sandbox/faults", admin_add_faults)
    app.router.add_delete("/_sandbox/faults", admin_clear_faults)
    app.router.add_post("/_sandbox/reset", admin_reset)
    app.on_cleanup.append(_close_state)
    return app


async def _close_state(app: web.Application) -> None:
    await app[STATE_KEY].close()
