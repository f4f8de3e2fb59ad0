"""LumaHook: every HTTP call the provider makes to a Luma API gateway.

The hook holds two transports — requests (one keep-alive ``requests.Session``) for workers and
aiohttp for the triggerer — and nothing else protocol-specific: request building,
response parsing, error mapping and the retry policy come from ``luma_provider.api``, and each
operation is a flow from there, run by ``api.drive`` (sync) or ``api.adrive`` (async).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import requests
import requests.adapters
import requests.auth
import tenacity
import urllib3
from airflow.providers.common.compat.sdk import BaseHook

from luma_provider import __version__, api
from luma_provider.concurrency import arun_bounded, run_bounded
from luma_provider.exceptions import (
    LumaDownloadError,
    LumaError,
    LumaGenerationFailed,
    LumaNotFoundError,
    LumaNotStartedError,
    LumaRateLimitError,
    LumaResponseTooLargeError,
    LumaTimeoutError,
    LumaTransportError,
    LumaValidationError,
)
from luma_provider.models import LumaGeneration, LumaState

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")

#: 64 KiB: measured ~0.9x curl on loopback; 1 MiB chunks were ~0.4x (BENCHMARKS.md).
DOWNLOAD_CHUNK = 64 * 1024
DEFAULT_MAX_DOWNLOAD_BYTES = 2 * 1024**3
MAX_THUMBNAIL_BYTES = 50 * 1024**2
USER_AGENT = f"airflow-provider-luma/{__version__}"
#: Connections kept open per host (the aiohttp side uses the same number).
HTTP_POOL_SIZE = 16
#: Seconds an idle aiohttp connection is kept for the next poll.
KEEPALIVE_SECONDS = 60
#: Only encodings BodyReader decodes itself (requests would also offer br/zstd when installed).
ACCEPT_ENCODING = "gzip, deflate"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,160}$")


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <key>``, only on requests to the gateway's own origin."""

    def __init__(self, settings: api.ConnectionSettings) -> None:
        self.settings = settings

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self.settings.auth_headers_for(request.url or ""))
        return request


class LumaHook(BaseHook):
    """Talk to Luma video generation behind an API gateway (``/luma/generations`` and friends).

    Connection (type ``luma``): host = gateway base URL, password = API key; extra fields
    ``timeout``, ``max_retries``, ``batch_size``, ``path_prefix``, ``verify_ssl``.

    :param luma_conn_id: Airflow connection id of type ``luma``.
    :param timeout: overrides the connection's request timeout, in seconds.
    :param max_retries: overrides the connection's retry count for 429 / 5xx / connection errors.
    """

    conn_name_attr = "luma_conn_id"
    default_conn_name = api.DEFAULT_CONN_ID
    conn_type = "luma"
    hook_name = "Luma"

    def __init__(
        self,
        luma_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> None:
        super().__init__()
        self.luma_conn_id = luma_conn_id
        self._timeout_override = timeout
        self._max_retries_override = max_retries
        self._settings: api.ConnectionSettings | None = None
        self._aiohttp_session: aiohttp.ClientSession | None = None
        self._batch = api.BatchSupport()
        #: HTTP requests this hook sent (every attempt), for logs, tests and benchmarks.
        self.requests_sent = 0
        self._count_lock = threading.Lock()  # status GETs may run in threads
        #: One 429 pauses every request of this hook (all threads of a batch share the hook).
        self.rate_gate = api.RateGate()

    # ------------------------------------------------------------------ connection
    def _settings_from(self, conn: Any, extra: Mapping[str, Any]) -> api.ConnectionSettings:
        settings = api.settings_from_connection(
            self.luma_conn_id, conn.conn_type, conn.host, conn.password, conn.port, extra
        )
        overrides = {
            k: v
            for k, v in (("timeout", self._timeout_override), ("max_retries", self._max_retries_override))
            if v is not None
        }
        return api.ConnectionSettings(**{**settings.__dict__, **overrides}) if overrides else settings

    @property
    def settings(self) -> api.ConnectionSettings:
        """Validated connection settings (sync lookup; the async side uses ``aget_settings``)."""
        if self._settings is None:
            conn = self.get_connection(self.luma_conn_id)
            self._settings = self._settings_from(conn, conn.extra_dejson)
            _mask(self._settings.api_key)
        return self._settings

    async def aget_settings(self) -> api.ConnectionSettings:
        """Connection settings without blocking the event loop (safe in a trigger)."""
        if self._settings is None:
            conn, extra = await _aget_connection(self, self.luma_conn_id)
            self._settings = self._settings_from(conn, extra)
            _mask(self._settings.api_key)
        return self._settings

    @property
    def retry_policy(self) -> api.RetryPolicy:
        return api.RetryPolicy(max_retries=self.settings.max_retries)

    @cached_property
    def session(self) -> requests.Session:
        """One keep-alive session per hook; the key is added by ``BearerAuth``, per request."""
        settings = self.settings
        session = requests.Session()
        session.auth = BearerAuth(settings)
        session.verify = settings.verify_ssl
        session.headers.update(
            {"Accept": "application/json", "User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING}
        )
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=HTTP_POOL_SIZE)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    # ------------------------------------------------------------------ public API (sync)
    def submit_generation(self, prompt: str | api.GenerationOptions, **options: Any) -> LumaGeneration:
        """Start a video generation. Costs money: see ``RetryPolicy``.

        Gateway flavour: ``POST /luma/generations``; official: ``POST /generations/video`` (the
        older ``POST /generations`` where that 404s).

        :param prompt: the text prompt, or a ready ``GenerationOptions`` (then no other option).
        :param options: ``aspect_ratio`` (``1:1``, ``4:3``, ``3:4``, ``16:9``, ``9:16``; official also
            ``21:9``, ``9:21``), ``loop``, ``expand_prompt`` (gateway only), ``image_url`` /
            ``image_end_url`` (start/end keyframe: http(s) URL or ``data:image/...;base64,``),
            ``model`` (gateway: ``ray-2``, ``ray-1-6``, ``ray-vN``; official: ``ray-2`` (default),
            ``ray-flash-2``), ``resolution`` (``540p``, ``720p``, ``1080p``, ``4k``), ``duration``
            (``5s``, ``9s``; ``5``/``9`` accepted), ``concepts`` and ``callback_url`` (official
            only); any other keyword is passed through in the body.
        """
        options_ = self._options(prompt, options)
        if self.settings.official:
            generation = self._drive(api.official_submit_flow(options_.body()))
        else:
            generation = self._drive(api.submit_flow(options_.body()))
        self.log.info("Luma accepted generation %s (state %s)", generation.id, generation.raw_state)
        return generation

    def extend_generation(
        self,
        generation_id: str,
        prompt: str | api.GenerationOptions,
        *,
        reverse: bool = False,
        **options: Any,
    ) -> LumaGeneration:
        """Extend a completed generation; returns the *new* generation (poll its id).

        :param generation_id: id of the completed generation to extend.
        :param prompt: prompt for the extension, or a ``GenerationOptions``.
        :param reverse: official flavour: lead *into* the generation (it becomes ``frame1``).
        :param options: as in ``submit_generation``.
        """
        generation_id = api.validate_generation_id(generation_id)
        options_ = self._options(prompt, options)
        if self.settings.official:
            body = api.official_extend_body(options_, generation_id, reverse=reverse)
            generation = self._drive(api.official_submit_flow(body))
        elif reverse:
            raise LumaValidationError("reverse", "is only available in the official API flavour")
        else:
            generation = self._drive(api.extend_flow(generation_id, options_.body()))
        self.log.info("Luma accepted extension %s of generation %s", generation.id, generation_id)
        return generation

    def interpolate_generations(
        self, start_id: str, end_id: str, prompt: str | api.GenerationOptions, **options: Any
    ) -> LumaGeneration:
        """A video from the end of ``start_id`` to the start of ``end_id`` (official flavour)."""
        options_ = self._options(prompt, options)
        self._require_official("interpolate_generations")
        body = api.official_extend_body(options_, start_id, end_id=end_id)
        return self._drive(api.official_submit_flow(body))

    def cancel_generation(self, generation_id: str) -> None:
        """Stop a queued or dreaming generation (official ``DELETE /generations/{id}``)."""
        generation_id = api.validate_generation_id(generation_id)
        self._require_official("cancel_generation", "the gateways have no cancel route")
        self._drive(api.official_cancel_flow(generation_id))
        self.log.info("Cancelled Luma generation %s", generation_id)

    def list_generations(self, *, limit: int = 100, offset: int = 0) -> Iterator[LumaGeneration]:
        """Every generation of the account, newest first, page by page (official flavour)."""
        self._require_official("list_generations")
        api.validate_count(limit, "limit", low=1, high=1000)
        while True:
            page, more = self._drive(api.official_list_flow(limit, offset))
            yield from page
            if not more or not page:
                return
            offset += len(page)

    def get_credits(self) -> float:
        """The account's credit balance, in USD cents as the API returns it (official flavour)."""
        self._require_official("get_credits")
        return self._drive(api.official_credits_flow())

    def submit_image_generation(
        self, prompt: str, *, model: str | None = None, **options: Any
    ) -> LumaGeneration:
        """Start an image generation (official ``POST /generations/image``, photon models).

        :param model: ``photon-1`` (default) or ``photon-flash-1``.
        :param options: ``aspect_ratio``, ``format`` (``jpg``/``png``), ``image_ref``, ``style_ref``,
            ``character_ref``, ``modify_image_ref``, ``callback_url`` as the API defines them.
        """
        self._require_official("submit_image_generation")
        body = api.image_body(prompt, model=model, **options)
        return self._official_create("image", "/generations/image", body, "image generation")

    def upscale_generation(self, generation_id: str, resolution: str, **options: Any) -> LumaGeneration:
        """Upscale a completed video (official ``POST /generations/{id}/upscale``)."""
        self._require_official("upscale_generation")
        generation_id = api.validate_generation_id(generation_id)
        body = api.upscale_body(resolution, **options)
        path = f"/generations/{generation_id}/upscale"
        return self._official_create("upscale", path, body, f"upscale to {body['resolution']}")

    def add_audio(
        self, generation_id: str, prompt: str, *, negative_prompt: str | None = None, **options: Any
    ) -> LumaGeneration:
        """Add a sound track to a completed video (official ``POST /generations/{id}/audio``)."""
        self._require_official("add_audio")
        generation_id = api.validate_generation_id(generation_id)
        body = api.audio_body(prompt, negative_prompt=negative_prompt, **options)
        path = f"/generations/{generation_id}/audio"
        return self._official_create("audio", path, body, "sound track")

    def modify_video(
        self,
        media_url: str,
        prompt: str | None = None,
        *,
        mode: str = api.DEFAULT_MODIFY_MODE,
        model: str | None = None,
        first_frame_url: str | None = None,
        callback_url: str | None = None,
        **extra: Any,
    ) -> LumaGeneration:
        """Restyle or edit a video (official ``POST /generations/video/modify``); a new, paid video.

        :param media_url: http(s) URL of the source video (``media.url``), e.g. a completed
            generation's ``video_url``.
        :param prompt: what the modified video should show (optional, as in the API).
        :param mode: how far the result may depart from the source: ``adhere_1``..``adhere_3``
            (closest), ``flex_1``..``flex_3``, ``reimagine_1``..``reimagine_3`` (freest);
            default ``flex_1``.
        :param model: ``ray-2`` (default) or ``ray-flash-2``.
        :param first_frame_url: http(s) URL of an image the modified video starts from.
        :param callback_url: Luma POSTs the generation there when dreaming, completed or failed.
        :param extra: nothing else is accepted: an unknown keyword is a ``LumaValidationError``.
        """
        self._require_official("modify_video")
        body = api.modify_video_body(
            media_url,
            prompt,
            mode=mode,
            model=model,
            first_frame_url=first_frame_url,
            callback_url=callback_url,
            **extra,
        )
        what = f"video modification ({body['mode']})"
        return self._official_create("modify", "/generations/video/modify", body, what)

    def reframe_video(
        self,
        media_url: str,
        aspect_ratio: str,
        *,
        prompt: str | None = None,
        model: str | None = None,
        first_frame_url: str | None = None,
        callback_url: str | None = None,
        **geometry: Any,
    ) -> LumaGeneration:
        """Change a video's aspect ratio (official ``POST /generations/video/reframe``); a new, paid video.

        :param media_url: http(s) URL of the source video (``media.url``).
        :param aspect_ratio: the new ratio (required): ``1:1``, ``4:3``, ``3:4``, ``16:9``, ``9:16``,
            ``21:9``, ``9:21``.
        :param prompt: what the areas added around the source should show (optional).
        :param model: ``ray-2`` (default) or ``ray-flash-2``.
        :param first_frame_url: http(s) URL of an image the reframed video starts from.
        :param callback_url: Luma POSTs the generation there when dreaming, completed or failed.
        :param geometry: optional whole pixel values: ``grid_position_x``, ``grid_position_y``
            (where the source sits in the new frame), ``resized_width``, ``resized_height``
            (the source's size in it), ``x_start``, ``x_end``, ``y_start``, ``y_end`` (crop
            bounds); any other keyword is a ``LumaValidationError``.
        """
        self._require_official("reframe_video")
        body = api.reframe_video_body(
            media_url,
            aspect_ratio,
            prompt=prompt,
            model=model,
            first_frame_url=first_frame_url,
            callback_url=callback_url,
            **geometry,
        )
        path, what = "/generations/video/reframe", f"video reframe to {body['aspect_ratio']}"
        return self._official_create("reframe_video", path, body, what)

    def reframe_image(
        self,
        media_url: str,
        aspect_ratio: str,
        *,
        prompt: str | None = None,
        model: str | None = None,
        format: str | None = None,
        callback_url: str | None = None,
        **geometry: Any,
    ) -> LumaGeneration:
        """Change an image's aspect ratio (official ``POST /generations/image/reframe``); a new image.

        :param media_url: http(s) URL of the source image (``media.url``).
        :param aspect_ratio: the new ratio (required), as in ``reframe_video``.
        :param prompt: what the areas added around the source should show (optional).
        :param model: ``photon-1`` (default) or ``photon-flash-1``.
        :param format: ``jpg`` or ``png``: the result's file format.
        :param callback_url: Luma POSTs the generation there when it is done.
        :param geometry: as in ``reframe_video``.
        """
        self._require_official("reframe_image")
        body = api.reframe_image_body(
            media_url,
            aspect_ratio,
            prompt=prompt,
            model=model,
            format=format,
            callback_url=callback_url,
            **geometry,
        )
        path, what = "/generations/image/reframe", f"image reframe to {body['aspect_ratio']}"
        return self._official_create("reframe_image", path, body, what)

    def _official_create(self, kind: str, path: str, body: dict[str, Any], what: str) -> LumaGeneration:
        """POST one official create-type request (a new, paid generation) and log the accepted id."""
        generation = self._drive(api.official_post_flow(kind, path, body))
        self.log.info("Luma accepted %s: generation %s", what, generation.id)
        return generation

    def get_generation(self, generation_id: str) -> LumaGeneration:
        """Current status of one generation."""
        generation_id = api.validate_generation_id(generation_id)
        if self.settings.official:
            return self._drive(api.official_get_flow(generation_id))
        return self._drive(api.get_flow(generation_id))

    def get_generations(self, ids: Iterable[str], *, skip_missing: bool = False) -> list[LumaGeneration]:
        """Status of many generations in input order, via ``POST /luma/tasks`` in chunks.

        Without a batch route (official API, some gateways), one GET per id with up to
        ``status_concurrency`` in flight (threads sharing the session's connection pool).

        :param skip_missing: leave ids the API does not know out of the result instead of raising.
        """
        settings = self.settings
        ids = _unique_ids(ids)
        if not self._per_id_gets(settings):
            return self._drive(self._get_many(ids, settings, skip_missing=skip_missing))
        get = self._single_get(settings)
        _ = self.session  # created once, before the threads share it

        def missing(err: Exception) -> bool:
            return skip_missing and isinstance(err, LumaNotFoundError)

        results = run_bounded(
            ids,
            lambda gen_id: self._drive(get(gen_id)),
            max_workers=settings.status_concurrency,
            stop_on=lambda err: not missing(err),
            name="luma-status",
        )
        errors = [
            r
            for r in results
            if isinstance(r, Exception) and not isinstance(r, LumaNotStartedError) and not missing(r)
        ]
        if errors:  # the first failure stopped the others
            raise errors[0]
        return [r for r in results if isinstance(r, LumaGeneration)]

    def get_download_url(self, generation_id: str) -> str | None:
        """Watermark-free URL from the optional ``download_video_url`` route (None if absent)."""
        generation_id = api.validate_generation_id(generation_id)
        if self.settings.official:
            return None  # the official API has no such route: assets.video is the file
        return self._drive(api.download_url_flow(generation_id))

    def wait_for_generations(
        self,
        ids: Iterable[str],
        *,
        poll_interval: float = 10.0,
        timeout: float | None = None,
        fail_fast: bool = True,
    ) -> list[LumaGeneration]:
        """Block (on a worker) until every generation completes.

        :param fail_fast: raise as soon as one generation fails (default); False: return once
            every generation has finished, failed ones included.
        :raises LumaGenerationFailed: as soon as one generation fails (with its failure_reason).
        :raises LumaTimeoutError: when ``timeout`` seconds pass first.
        """
        ids = [api.validate_generation_id(i, "ids") for i in ids]
        poll_interval = api.validate_seconds(poll_interval, "poll_interval")
        timeout = None if timeout is None else api.validate_seconds(timeout, "timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: dict[str, str] = {}
        while True:
            generations = self.get_generations(ids)
            for gen in generations:
                if seen.get(gen.id) != gen.state.value:
                    self.log.info("Generation %s is %s (raw %r)", gen.id, gen.state.value, gen.raw_state)
                    seen[gen.id] = gen.state.value
                if gen.state == LumaState.FAILED and fail_fast:
                    raise LumaGenerationFailed(gen.id, gen.failure_reason)
            if all(g.is_terminal for g in generations):
                return generations
            if deadline is not None and time.monotonic() + poll_interval > deadline:
                raise LumaTimeoutError(
                    f"Generations {ids} not completed after {timeout:.0f}s (states: {seen})"
                )
            time.sleep(poll_interval)

    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated call; tells a bad key apart from an unreachable gateway."""
        try:
            return self._drive(api.official_probe_flow() if self.settings.official else api.probe_flow())
        except LumaError as err:
            return False, str(err)

    # ------------------------------------------------------------------ public API (async)
    async def aget_generation(self, generation_id: str) -> LumaGeneration:
        """Async twin of ``get_generation`` (same flow, aiohttp transport)."""
        generation_id = api.validate_generation_id(generation_id)
        settings = await self.aget_settings()
        flow = api.official_get_flow(generation_id) if settings.official else api.get_flow(generation_id)
        return await self._adrive(flow)

    async def aget_generations(
        self, ids: Iterable[str], *, skip_missing: bool = False
    ) -> list[LumaGeneration]:
        """Async twin of ``get_generations``; ``skip_missing`` leaves unknown ids out instead of raising."""
        settings = await self.aget_settings()
        ids = _unique_ids(ids)
        if not self._per_id_gets(settings):
            return await self._adrive(self._get_many(ids, settings, skip_missing=skip_missing))
        found = await self._aget_each(
            ids, settings, stop_on=lambda err: not (skip_missing and isinstance(err, LumaNotFoundError))
        )
        for result in found.values():
            if isinstance(result, LumaNotFoundError) and skip_missing:
                continue
            if isinstance(result, LumaError):
                raise result
        return [gen for gen in found.values() if isinstance(gen, LumaGeneration)]

    async def aget_each(self, ids: Iterable[str]) -> dict[str, LumaGeneration | LumaError]:
        """The status of each id, or the error for that id alone (the shared poller's view).

        Without a batch route every id is its own GET, so one failed GET (after its retries)
        must not fail the others; with a batch route one failed request fails its whole chunk.
        """
        settings = await self.aget_settings()
        ids = _unique_ids(ids)
        if self._per_id_gets(settings):
            return await self._aget_each(ids, settings, stop_on=lambda err: False)
        try:
            generations = await self._adrive(self._get_many(ids, settings, skip_missing=True))
        except LumaError as err:
            return dict.fromkeys(ids, err)
        found: dict[str, LumaGeneration | LumaError] = {g.id: g for g in generations}
        for gen_id in ids:
            found.setdefault(
                gen_id, LumaNotFoundError(404, f"generation {gen_id} not found", path="/luma/tasks")
            )
        return found

    async def _aget_each(
        self, ids: list[str], settings: api.ConnectionSettings, *, stop_on: Callable[[LumaError], bool]
    ) -> dict[str, LumaGeneration | LumaError]:
        """One GET per id, ``status_concurrency`` in flight; results in ``ids`` order.

        :param stop_on: an error for which the ids not fetched yet are left out.
        """
        get = self._single_get(settings)
        results = await arun_bounded(
            ids,
            lambda gen_id: self._adrive(get(gen_id)),
            max_workers=settings.status_concurrency,
            stop_on=lambda err: isinstance(err, LumaError) and stop_on(err),
        )
        found: dict[str, LumaGeneration | LumaError] = {}
        for gen_id, result in zip(ids, results, strict=True):
            if isinstance(result, LumaNotStartedError):
                continue
            if isinstance(result, Exception) and not isinstance(result, LumaError):
                raise result  # a bug, not an answer for this id
            found[gen_id] = result
        return found

    async def acancel_unfinished(self, ids: Iterable[str], *, log: Any = None) -> list[str]:
        """Cancel every generation of ``ids`` not finished yet (official flavour; else nothing).

        :return: the ids cancelled. Errors are logged, not raised: this runs on a kill path.
        """
        log = log or self.log
        settings = await self.aget_settings()
        if not settings.official:
            log.warning("Not cancelling %s: the gateway flavour has no cancel route", list(ids))
            return []
        cancelled: list[str] = []
        try:
            current = await self.aget_generations(ids, skip_missing=True)
        except LumaError as err:
            log.warning("Could not look up generations to cancel: %s", err)
            return cancelled
        for gen in current:
            if gen.is_terminal:
                continue
            try:
                await self._adrive(api.official_cancel_flow(gen.id))
            except LumaError as err:
                log.warning("Could not cancel generation %s: %s", gen.id, err)
                continue
            log.info("Cancelled Luma generation %s (was %s): the task was killed", gen.id, gen.state.value)
            cancelled.append(gen.id)
        return cancelled

    async def aclose(self) -> None:
        """Close the aiohttp session (triggers call this in ``cleanup``)."""
        if self._aiohttp_session is not None:
            await self._aiohttp_session.close()
            self._aiohttp_session = None

    def _per_id_gets(self, settings: api.ConnectionSettings) -> bool:
        """No batch status route (known after the first 404 on a gateway): one GET per id."""
        return settings.official or self._batch.available is False

    @staticmethod
    def _single_get(settings: api.ConnectionSettings) -> Callable[[str], api.Flow[LumaGeneration]]:
        return api.official_get_flow if settings.official else api.get_flow

    def _get_many(
        self, ids: list[str], settings: api.ConnectionSettings, skip_missing: bool = False
    ) -> api.Flow[list[LumaGeneration]]:
        return api.get_many_flow(ids, settings.batch_size, self._batch, skip_missing=skip_missing)

    def _options(self, prompt: str | api.GenerationOptions, options: dict[str, Any]) -> api.GenerationOptions:
        flavour = self.settings.api_flavour
        if isinstance(prompt, api.GenerationOptions):
            if options:
                raise LumaValidationError(
                    "options",
                    f"{', '.join(sorted(options))} given next to a GenerationOptions; set them there",
                )
            if prompt.flavour != flavour:
                raise LumaValidationError(
                    "options", f"built for the {prompt.flavour} flavour; the connection is {flavour}"
                )
            return prompt
        known = {k: options.pop(k) for k in list(options) if k in api.OPTION_NAMES}
        return api.GenerationOptions.build(prompt, flavour=flavour, **known, extra=options)

    def _require_official(self, what: str, why: str = "") -> None:
        if not self.settings.official:
            raise LumaError(
                f"{what} needs Luma's official API (connection extra api_flavour=official or a host ending "
                f"in /dream-machine/v1){'; ' + why if why else ''}"
            )

    # ------------------------------------------------------------------ drivers
    def _drive(self, flow: api.Flow[T]) -> T:
        return api.drive(flow, self._send)

    async def _adrive(self, flow: api.Flow[T]) -> T:
        return await api.adrive(flow, self._asend)

    def _send(self, request: api.Request) -> Any:
        policy = self.retry_policy

        def attempt(request: api.Request) -> Any:
            time.sleep(self.rate_gate.delay())
            try:
                return self._send_once(request)
            except LumaRateLimitError as err:
                self.rate_gate.hold(policy.pause_for(err))
                raise

        try:
            return tenacity.Retrying(**policy.tenacity_kwargs(request))(attempt, request)
        except LumaError as err:
            raise policy.final_error(request, err) from err

    async def _asend(self, request: api.Request) -> Any:
        settings = await self.aget_settings()
        policy = api.RetryPolicy(max_retries=settings.max_retries)

        async def attempt(request: api.Request) -> Any:
            await asyncio.sleep(self.rate_gate.delay())
            try:
                return await self._asend_once(request)
            except LumaRateLimitError as err:
                self.rate_gate.hold(policy.pause_for(err))
                raise

        try:
            return await tenacity.AsyncRetrying(**policy.tenacity_kwargs(request))(attempt, request)
        except LumaError as err:
            raise policy.final_error(request, err) from err

    # ------------------------------------------------------------------ transports
    def _send_once(self, request: api.Request) -> Any:
        settings = self.settings
        url = settings.url(request.path)
        with self._count_lock:
            self.requests_sent += 1
        # ``timeout`` bounds the whole request: every read gets only what is left of it.
        deadline = time.monotonic() + settings.timeout
        try:
            response = self.session.request(
                request.method,
                url,
                json=request.json,
                timeout=(settings.timeout, settings.timeout),
                allow_redirects=False,
                stream=True,
            )
            try:
                reader = api.BodyReader.for_reply(request, response.status_code, response.headers, settings)
                body = b"".join(_read_body(response, reader, deadline))
            finally:
                response.close()
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
            raise _transport_error(request, err, sent=not _never_connected(err), settings=settings) from None
        return api.decode(
            request, response.status_code, response.headers, body.decode("utf-8", "replace"), settings
        )

    async def _asend_once(self, request: api.Request) -> Any:
        import aiohttp

        settings = await self.aget_settings()
        url = settings.url(request.path)
        session = self._get_aiohttp_session(settings)
        self.requests_sent += 1
        try:
            async with session.request(
                request.method,
                url,
                json=request.json,
                headers=settings.auth_headers_for(url),
                allow_redirects=False,
                ssl=settings.verify_ssl,
            ) as response:
                reader = api.BodyReader.for_reply(request, response.status, response.headers, settings)
                pieces: list[bytes] = []
                async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK):
                    pieces.extend(reader.feed(chunk))
                    if reader.full:
                        break
                pieces.extend(reader.finish())
                status, headers = response.status, response.headers
        except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as err:
            never = isinstance(err, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
            raise _transport_error(request, err, sent=not never, settings=settings) from None
        # Lenient decode: a non-UTF-8 body must become a LumaTransportError in decode().
        return api.decode(request, status, headers, b"".join(pieces).decode("utf-8", "replace"), settings)

    def _get_aiohttp_session(self, settings: api.ConnectionSettings) -> aiohttp.ClientSession:
        import aiohttp

        if self._aiohttp_session is None or self._aiohttp_session.closed:
            self._aiohttp_session = aiohttp.ClientSession(
                # total: the documented timeout bounds the whole request, body included.
                timeout=aiohttp.ClientTimeout(total=settings.timeout),
                headers={
                    "Accept": "application/json",
                    "User-Agent": USER_AGENT,
                    "Accept-Encoding": ACCEPT_ENCODING,
                },
                connector=aiohttp.TCPConnector(limit=HTTP_POOL_SIZE, keepalive_timeout=KEEPALIVE_SECONDS),
                auto_decompress=False,  # BodyReader decodes, with a cap on the decoded size
            )
        return self._aiohttp_session

    # ------------------------------------------------------------------ downloads (sync, worker)
    def download_video(
        self,
        generation: LumaGeneration | Mapping[str, Any] | str,
        destination: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        storage_conn_id: str | None = None,
    ) -> str:
        """Stream a completed generation's video to a local path or any ``ObjectStoragePath`` URI.

        Writes to a temporary name beside the target and renames it only after the byte count
        matched ``Content-Length``, so an interrupted download never leaves a partial file.
        Downloads from loopback/private/link-local addresses are refused unless the connection
        extra ``allow_private_downloads`` is true (the gateway's own origin is always allowed);
        every redirect hop is checked again. A download fails when no byte arrives for
        ``download_stall_timeout`` seconds (connection extra, default 60).

        :param generation: a ``LumaGeneration``, its ``to_dict()`` form, or a generation id.
        :param destination: a file path/URI, or a folder (existing, or ending in ``/``) in which
            ``<generation id>.mp4`` is written.
        :param max_bytes: refuse bodies larger than this.
        :param storage_conn_id: Airflow connection for the destination's object store, if needed.
        :return: the final URI of the written file.
        """
        gen = self.resolve_generation(generation)
        url = gen.result_url or self.get_download_url(gen.id)
        if not url:
            raise LumaDownloadError(
                f"Generation {gen.id} (state {gen.state.value}) has no video URL to download"
            )
        # An image generation's result keeps its format; everything else is an MP4.
        suffix = ".png" if urlsplit(url).path.lower().endswith(".png") else ".jpg"
        return self.download_file(
            url,
            destination,
            default_name=f"{gen.id}{suffix if gen.is_image else '.mp4'}",
            max_bytes=max_bytes,
            storage_conn_id=storage_conn_id,
        )

    def download_thumbnail(
        self,
        generation: LumaGeneration | Mapping[str, Any] | str,
        destination: str | os.PathLike[str],
        *,
        storage_conn_id: str | None = None,
    ) -> str | None:
        """Like ``download_video`` for the thumbnail; None when the generation has none."""
        gen = self.resolve_generation(generation)
        if not gen.thumbnail_url:
            return None
        return self.download_file(
            gen.thumbnail_url,
            destination,
            default_name=f"{gen.id}.jpg",
            max_bytes=MAX_THUMBNAIL_BYTES,
            storage_conn_id=storage_conn_id,
        )

    def download_file(
        self,
        url: str,
        destination: str | os.PathLike[str],
        *,
        default_name: str,
        max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        storage_conn_id: str | None = None,
    ) -> str:
        """Stream ``url`` (http/https only) atomically into ``destination``; returns the final URI."""
        api.check_download_url(url, self.settings)
        target = _target_path(destination, default_name, storage_conn_id)
        request = api.Request("download", "GET", url)
        policy = self.retry_policy
        retrying = tenacity.Retrying(**policy.tenacity_kwargs(request))
        size = retrying(self._download_once, url, target, max_bytes)
        self.log.info("Downloaded %s (%d bytes)", target, size)
        return str(target)

    def _open_download(self, url: str) -> requests.Response:
        """GET ``url`` following redirects by hand, so every hop gets the same checks."""
        settings = self.settings
        for _ in range(api.MAX_REDIRECTS + 1):
            self._check_download_host(url)
            response = self.session.get(
                url,
                stream=True,
                timeout=(settings.timeout, settings.download_stall_timeout),
                headers={"Accept": "*/*"},
                allow_redirects=False,
            )
            if not response.is_redirect:
                return response
            response.close()
            url = api.redirect_target(url, response.headers.get("Location"))
        raise LumaDownloadError(f"Download took more than {api.MAX_REDIRECTS} redirects; refused")

    def _check_download_host(self, url: str) -> None:
        _, host, port = api.check_download_url(url, self.settings)
        if self.settings.allow_private_downloads or self.settings.is_gateway_origin(url):
            return
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as err:
            raise LumaTransportError(
                f"Download host {host[: api.NAME_LIMIT]!r} cannot be resolved ({err})"
            ) from None
        bad = api.refused_address(host, [str(info[4][0]) for info in infos])
        if bad:
            raise LumaDownloadError(
                f"Refusing to download from {host[: api.NAME_LIMIT]!r}: it resolves to {bad}, a loopback, "
                "private or link-local address. Set the connection extra allow_private_downloads=true "
                "if this host is meant to serve the videos."
            )

    def _download_once(self, url: str, target: Any, max_bytes: int) -> int:
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.part"
        settings = self.settings
        try:
            with self._open_download(url) as response:
                if response.status_code >= 400:
                    raise _download_refused(response, url, settings)
                expected = _content_length(response)
                encoding = response.headers.get("Content-Encoding")
                if expected is not None and not encoding and expected > max_bytes:
                    raise LumaDownloadError(
                        f"{target.name} is {expected} bytes, above the {max_bytes}-byte cap"
                    )
                reader = api.BodyReader(encoding, max_bytes, what=f"Download of {target.name}")
                # The temporary object gets the final name's type: S3's rename is a copy, which keeps it.
                with tmp.open("wb", **api.storage_write_options(target.protocol, target.name)) as out:
                    for piece in _read_body(response, reader, None):
                        out.write(piece)
            # Content-Length counts bytes on the wire (compressed, if the CDN gzips).
            if expected is not None and reader.wire_bytes != expected:
                raise LumaTransportError(
                    f"Short download of {target.name}: got {reader.wire_bytes} of {expected} bytes"
                )
            tmp.rename(target)
            return reader.size
        except LumaResponseTooLargeError:
            raise LumaDownloadError(f"{target.name} exceeded the {max_bytes}-byte cap") from None
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
            if isinstance(err, OSError) and not isinstance(
                err, (ConnectionError, TimeoutError, socket.timeout)
            ):
                raise LumaDownloadError(f"Download of {target.name} could not be written: {err}") from None
            raise LumaTransportError(f"Download of {target.name} failed: {type(err).__name__}") from None
        finally:
            if tmp.exists():
                tmp.unlink()

    def resolve_generation(self, generation: LumaGeneration | Mapping[str, Any] | str) -> LumaGeneration:
        """A ``LumaGeneration`` from itself, its ``to_dict()`` form (validated) or an id (fetched)."""
        if isinstance(generation, LumaGeneration):
            return generation
        if isinstance(generation, Mapping):
            try:
                return LumaGeneration.from_dict(generation)
            except (ValueError, TypeError) as err:
                raise LumaValidationError("generation", f"not a generation dict ({err})") from None
        return self.get_generation(api.validate_generation_id(generation, "generation"))

    # ------------------------------------------------------------------ UI fallback (Airflow < 3.2)
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Fallback for Airflow < 3.2: the extra fields as form widgets (newer ones read ``conn-fields``).

        Airflow 3.1's UI calls this with stand-ins for wtforms, which it does not need installed.
        """
        import importlib

        from luma_provider.connection_fields import CONNECTION_FIELDS

        wtforms = importlib.import_module("wtforms")
        validators = importlib.import_module("wtforms.validators")
        widgets: dict[str, Any] = {}
        for field in CONNECTION_FIELDS:
            text = {"label": field.label, "description": field.description}
            if field.kind == "boolean":
                widgets[field.name] = wtforms.BooleanField(default=field.default, **text)
                continue
            checks = [validators.Optional()]
            if field.choices:
                checks.append(validators.any_of([*field.choices, None]))
            kind = wtforms.IntegerField if field.kind == "integer" else wtforms.StringField
            widgets[field.name] = kind(validators=checks, **text)
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Fallback for Airflow < 3.2; newer versions read ``ui-field-behaviour`` from provider info."""
        from luma_provider import get_provider_info

        behaviour = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
        return {
            "hidden_fields": behaviour["hidden-fields"],
            "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"],
        }


def _unique_ids(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(api.validate_generation_id(i, "ids") for i in ids))


async def _aget_connection(hook: LumaHook, conn_id: str) -> tuple[Any, Mapping[str, Any]]:
    """The connection and its extra, from a coroutine, on every supported Airflow.

    A recent common-compat knows how on each Airflow (``get_async_connection(hook=)``,
    ``get_async_extra_dejson``). Where the floor's older one lacks them, the synchronous lookups
    run in a worker thread, as the newer compat itself does before Airflow 3.3.2 (whose
    ``BaseHook.aget_connection`` masks secrets with a blocking call to the supervisor).
    """
    import inspect

    from asgiref.sync import sync_to_async

    compat: Any
    try:
        from airflow.providers.common.compat import connection as compat
    except ImportError:  # common-compat < 1.9
        compat = None
    get_async_connection = getattr(compat, "get_async_connection", None)
    if get_async_connection is not None and "hook" in inspect.signature(get_async_connection).parameters:
        conn = await get_async_connection(conn_id, hook=hook)
    else:  # common-compat < 1.17
        conn = await sync_to_async(hook.get_connection)(conn_id)
    get_async_extra_dejson = getattr(compat, "get_async_extra_dejson", None)
    if get_async_extra_dejson is not None:
        return conn, await get_async_extra_dejson(conn)
    return conn, await sync_to_async(lambda: conn.extra_dejson)()


def _mask(secret: str | None) -> None:
    """Register the (stripped) key with Airflow's secrets masker: logs show *** instead."""
    if not secret:
        return
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # Airflow < 3.1
        from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef]
    mask_secret(secret)


def _read_body(
    response: requests.Response, reader: api.BodyReader, deadline: float | None
) -> Iterator[bytes]:
    """Wire bytes through ``reader``; with a deadline, no read may outlast it."""
    raw = response.raw
    while not reader.full:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise requests.exceptions.ReadTimeout("the request took longer than its timeout")
            sock = getattr(getattr(raw, "connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(remaining)
        # read1: whatever has arrived (at most one recv), so the deadline is checked while a
        # slow body drips in; read() would block until a whole chunk is there.
        chunk = raw.read1(DOWNLOAD_CHUNK, decode_content=False)
        if not chunk:
            break
        yield from reader.feed(chunk)
    yield from reader.finish()


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 18:
        raise LumaDownloadError(f"Download answered with an invalid Content-Length {value[:40]!r}")
    return int(value)


def _download_refused(response: requests.Response, url: str, settings: api.ConnectionSettings) -> LumaError:
    status = response.status_code
    host = urlsplit(url).hostname or "?"
    if status in (401, 403, 404, 410):
        # The video URL is signed or short-lived; this is not the API key's fault.
        return LumaDownloadError(
            f"The video URL was refused by {host} (HTTP {status}): it may have expired. Fetch the "
            "generation again for a fresh URL, or check that the CDN is reachable from the worker."
        )
    return api.error_for_status(
        api.Request("download", "GET", urlsplit(url).path[:200]), status, response.headers, "", settings
    )


def _never_connected(err: BaseException) -> bool:
    # ConnectTimeout and refused connections happen before any byte of the request was sent.
    if isinstance(err, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(err, requests.exceptions.ConnectionError):
        text = repr(err)
        return "NewConnectionError" in text or "Connection refused" in text or "NameResolutionError" in text
    return False


def _transport_error(
    request: api.Request, err: BaseException, *, sent: bool, settings: api.ConnectionSettings
) -> LumaTransportError:
    kind = type(err).__name__
    detail = settings.redact(str(err))[: api.DETAIL_LIMIT]
    hint = ""
    if settings.scheme_assumed and ("SSL" in kind or "SSL" in detail or "ssl" in detail):
        hint = (
            f" (the connection host has no scheme, so https:// was assumed; if the gateway speaks "
            f"plain HTTP, set the host to http://{urlsplit(settings.base_url).netloc})"
        )
    return LumaTransportError(f"{request.method} {request.path}: {kind}: {detail}{hint}", sent=sent)


def _target_path(destination: str | os.PathLike[str], default_name: str, conn_id: str | None) -> Any:
    from airflow.sdk import ObjectStoragePath

    # Names come from generation ids: plain names only, so nothing lands outside the folder.
    if not _SAFE_NAME.match(default_name) or ".." in default_name:
        raise LumaDownloadError(f"Refusing to write a file named {default_name[: api.NAME_LIMIT]!r}")
    dest = str(destination)
    if "://" not in dest:
        dest = f"file://{os.path.abspath(dest)}{'/' if dest.endswith('/') else ''}"
    path = ObjectStoragePath(dest, conn_id=conn_id) if conn_id else ObjectStoragePath(dest)
    if dest.endswith("/") or path.is_dir():
        path = path / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
