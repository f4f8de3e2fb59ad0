"""Operators: submit a Luma generation (or extend one), download videos."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from luma_provider import api
from luma_provider.exceptions import LumaAmbiguousSubmitError, LumaError, LumaValidationError
from luma_provider.hooks.base import LABEL_TEMPLATE, LumaHookMixin
from luma_provider.ledger import DEFAULT_CLAIM_WAIT, GenerationLedger, key_for_request
from luma_provider.links.luma import LumaVideoDownloadLink, LumaVideoLink, push_video_link
from luma_provider.models import LumaGeneration, LumaState
from luma_provider.reuse import GenerationReuse

if TYPE_CHECKING:
    from airflow.sdk import Context

#: XCom key holding the full normalized generation (``return_value`` holds just the id).
XCOM_GENERATION = "generation"
#: What a generate task does when a submit's outcome is unknown (the gateway may have the job).
AMBIGUOUS_SUBMIT_CHOICES = ("fail", "retry")
#: Mapped instances show the start of their prompt instead of a bare index. Uses only the
#: rendered task, so it also renders after a deferral (execute_complete has a fresh context).
PROMPT_LABEL_TEMPLATE = "{{ (task.prompt | string).split() | join(' ') | truncate(48, True, '…', 0) }}"


class LumaGenerateOperator(LumaHookMixin, BaseOperator):
    """Submit a Luma video generation (or extend one) and optionally wait for it.

    The submit happens here on the worker, never in a trigger, and the returned id is written
    to the task state store at once, so a retry of this task reconnects to the same generation
    instead of paying for a second one.

    :param prompt: text prompt. Templated.
    :param aspect_ratio: ``1:1``, ``4:3``, ``3:4``, ``16:9`` or ``9:16`` (official flavour also
        ``21:9``, ``9:21``). Templated.
    :param loop: loop the video. Templated.
    :param expand_prompt: let Luma enhance the prompt (gateway flavour only). Templated.
    :param image_url: start keyframe (http(s) URL or ``data:image/...;base64,``). Templated.
    :param image_end_url: end keyframe, same forms. Templated.
    :param model: gateway: ``ray-2`` or ``ray-1-6``; official: ``ray-2`` (default) or ``ray-flash-2``.
        Templated.
    :param resolution: ``540p``, ``720p``, ``1080p`` or ``4k``. Templated.
    :param duration: ``5s`` or ``9s`` (``5``/``9`` accepted). Templated.
    :param concepts: camera concepts such as ``["dolly_zoom"]`` (official flavour). Templated.
    :param callback_url: URL Luma POSTs the generation to on progress (official flavour). Templated.
    :param extend_generation_id: extend this completed generation instead of starting fresh. Templated.
    :param reverse: with ``extend_generation_id``, lead *into* that generation (official flavour).
    :param extra: other fields passed through in the body as they are. Templated.
    :param idempotency_key: opt-in reuse across runs. A generation recorded in the ledger under
        the same key *and* the same prompt/options is reused instead of paying again, unless it
        failed. E.g. ``"{{ ds }}"``: re-running a day's batch reuses its videos, the next day
        generates new ones; ``"auto"``: reuse forever. Templated.
    :param ledger_path: folder URI of the ledger (default ``$AIRFLOW_HOME/luma_ledger``); use
        object storage all workers can see. Templated.
        Two runs using the same key at the same moment submit once: the key is claimed in the
        ledger first (exclusive create; on stores without it, runs starting within the same
        second may both submit) and the second run waits up to ``claim_wait`` seconds for the
        first one's record.
    :param ledger_conn_id: Airflow connection for the ledger's object store, if needed.
    :param claim_wait: seconds to wait for another run's claim on the same idempotency key.
    :param ambiguous_submit: what to do when the gateway may have accepted a submit but its
        answer was lost or unreadable (timeout, 502/504, a reset, a body that does not parse).
        ``"fail"`` (default, safe): fail at once *without* Airflow retries, with a message saying
        how to check whether the job exists; ``"retry"``: let the task's retries submit again,
        accepting that the video may be paid twice.
    :param luma_conn_id: Airflow connection id of type ``luma``.
    :param wait_for_completion: wait for the generation and return it completed.
    :param deferrable: when waiting, wait in the triggerer (no worker slot held). True by default,
        deliberately not ``[operators] default_deferrable``: Airflow ships that as False, and a
        render that takes minutes must not hold a worker slot unless you ask for it.
    :param poll_interval: seconds between status checks while waiting (at least 0.1).
    :param timeout: seconds to wait for completion before failing.
    :return: the generation id, or the completed generation dict with ``wait_for_completion``.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "aspect_ratio",
        "loop",
        "expand_prompt",
        "image_url",
        "image_end_url",
        "model",
        "resolution",
        "duration",
        "concepts",
        "callback_url",
        "extend_generation_id",
        "extra",
        "idempotency_key",
        "ledger_path",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"extra": "json", "prompt": "md"}
    operator_extra_links = (LumaVideoLink(), LumaVideoDownloadLink())
    ui_color = "#e3d7fb"

    def __init__(
        self,
        *,
        prompt: str,
        aspect_ratio: str | None = None,
        loop: bool | None = None,
        expand_prompt: bool | None = None,
        image_url: str | None = None,
        image_end_url: str | None = None,
        model: str | None = None,
        resolution: str | None = None,
        duration: str | int | None = None,
        concepts: list[str] | None = None,
        callback_url: str | None = None,
        extend_generation_id: str | None = None,
        reverse: bool = False,
        extra: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        ledger_path: str | None = None,
        ledger_conn_id: str | None = None,
        claim_wait: float = DEFAULT_CLAIM_WAIT,
        ambiguous_submit: str = "fail",
        luma_conn_id: str = api.DEFAULT_CONN_ID,
        wait_for_completion: bool = False,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        timeout: float = 60 * 60,
        # A real parameter, not kwargs.setdefault: .partial() reads defaults from the signature.
        map_index_template: str | None = PROMPT_LABEL_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        super().__init__(map_index_template=map_index_template, **kwargs)
        self.prompt = prompt
        self.aspect_ratio = aspect_ratio
        self.loop = loop
        self.expand_prompt = expand_prompt
        self.image_url = image_url
        self.image_end_url = image_end_url
        self.model = model
        self.resolution = resolution
        self.duration = duration
        self.concepts = concepts
        self.callback_url = callback_url
        self.extend_generation_id = extend_generation_id
        self.reverse = reverse
        self.extra = extra
        self.idempotency_key = idempotency_key
        self.ledger_path = ledger_path
        self.ledger_conn_id = ledger_conn_id
        self.claim_wait = api.validate_seconds(claim_wait, "claim_wait", minimum=0.0)
        if ambiguous_submit not in AMBIGUOUS_SUBMIT_CHOICES:
            raise LumaValidationError(
                "ambiguous_submit",
                f"{ambiguous_submit!r} is not one of {', '.join(AMBIGUOUS_SUBMIT_CHOICES)}",
            )
        self.ambiguous_submit = ambiguous_submit
        self.luma_conn_id = luma_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = api.validate_seconds(poll_interval, "poll_interval")
        self.timeout = api.validate_seconds(timeout, "timeout")

    def _options(self) -> api.GenerationOptions:
        """Every option checked before any HTTP call; errors name the field and allowed values."""
        options = {name: getattr(self, name) for name in api.OPTION_NAMES}
        flavour = self.hook.settings.api_flavour
        return api.GenerationOptions.build(self.prompt, flavour=flavour, extra=self.extra, **options)

    def execute(self, context: Context) -> Any:
        options = self._options()
        source_id = (
            api.validate_generation_id(self.extend_generation_id, "extend_generation_id")
            if self.extend_generation_id
            else None
        )
        generation = self._submit_once(context, options, source_id)
        context["ti"].xcom_push(key=XCOM_GENERATION, value=generation.to_dict())
        push_video_link(context, generation)
        if not self.wait_for_completion:
            return generation.id
        if generation.state == LumaState.COMPLETED:
            return generation.to_dict()
        if self.deferrable:
            from luma_provider.triggers.luma import DEFER_TIMEOUT_GRACE, LumaTrigger

            self.defer(
                trigger=LumaTrigger(
                    generation_ids=[generation.id],
                    luma_conn_id=self.luma_conn_id,
                    poll_interval=self.poll_interval,
                    deadline=time.time() + self.timeout,
                ),
                method_name="execute_complete",
                # The trigger owns the deadline so execute_complete still runs and says why.
                timeout=timedelta(seconds=self.timeout + DEFER_TIMEOUT_GRACE),
            )
        (done,) = self.hook.wait_for_generations(
            [generation.id], poll_interval=self.poll_interval, timeout=self.timeout
        )
        return self._finish(done, context)

    @cached_property
    def ledger(self) -> GenerationLedger:
        return GenerationLedger(self.ledger_path, conn_id=self.ledger_conn_id)

    def _submit_once(
        self, context: Context, options: api.GenerationOptions, source_id: str | None
    ) -> LumaGeneration:
        ti = context["ti"]
        reuse = GenerationReuse(
            self.hook,
            store=context.get("task_state_store"),
            ledger=self.ledger,
            claim_wait=self.claim_wait,
            # The key scopes reuse; the request itself is always part of the entry, so one key
            # shared by many mapped prompts (e.g. "{{ ds }}") never hands out another prompt's video.
            key=f"{self.idempotency_key}:{key_for_request(options.body(), source_id)}"
            if self.idempotency_key
            else None,
            owner=f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}",
            logger=self.log,
        )
        try:
            return reuse.submit_once(lambda: self._submit(options, source_id))
        except LumaAmbiguousSubmitError as err:
            if self.ambiguous_submit == "retry":
                raise LumaError(
                    f"{err} [ambiguous_submit='retry': the task's retries will submit again, "
                    "and the video may be paid twice]"
                ) from err
            raise

    def _submit(self, options: api.GenerationOptions, source_id: str | None) -> LumaGeneration:
        if source_id:
            generation = self.hook.extend_generation(source_id, options, reverse=self.reverse)
        else:
            generation = self.hook.submit_generation(options)
        self.log.info("Submitted Luma generation %s for prompt %r", generation.id, _label(options.prompt))
        return generation

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        from luma_provider.triggers.luma import generations_from_event

        recorded = context["ti"].xcom_pull(
            task_ids=self.task_id, key=XCOM_GENERATION, map_indexes=context["ti"].map_index
        )
        ids = [recorded["id"]] if recorded else list((event or {}).get("generation_ids") or [])
        (done,) = generations_from_event(self.hook, ids, event)
        return self._finish(done, context)

    def _finish(self, generation: LumaGeneration, context: Context) -> dict[str, Any]:
        self.log.info("Generation %s completed: %s", generation.id, generation.video_url)
        context["ti"].xcom_push(key=XCOM_GENERATION, value=generation.to_dict())
        push_video_link(context, generation)
        return generation.to_dict()


class LumaDownloadVideoOperator(LumaHookMixin, BaseOperator):
    """Download completed generations' videos (and thumbnails) to any ``ObjectStoragePath``.

    :param generation_id: an id, a generation dict (e.g. a sensor's XCom), or a list of either. Templated.
    :param destination: local path or object-storage URI, a folder (ending in ``/``) or a file. Templated.
    :param storage_conn_id: Airflow connection for the destination's object store, if it needs one.
    :param include_thumbnail: also download ``<id>.jpg`` next to the video.
    :param luma_conn_id: Airflow connection id of type ``luma``.
    :param max_bytes: refuse videos larger than this.
    :param map_label: name of a mapped instance in the UI, e.g. the prompt (default: the map
        index). Templated.
    :return: the final URI (a list of them for a list input). With ``include_thumbnail``, a dict
        ``{"video": uri, "thumbnail": uri_or_None, "generation_id": id}`` per video instead.
    """

    template_fields: Sequence[str] = ("generation_id", "destination", "map_label")
    ui_color = "#d7f2e3"

    def __init__(
        self,
        *,
        generation_id: Any,
        destination: str,
        storage_conn_id: str | None = None,
        include_thumbnail: bool = False,
        luma_conn_id: str = api.DEFAULT_CONN_ID,
        max_bytes: int | None = None,
        map_label: str | None = None,
        map_index_template: str | None = LABEL_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        super().__init__(map_index_template=map_index_template, **kwargs)
        self.map_label = map_label
        self.generation_id = generation_id
        self.destination = destination
        self.storage_conn_id = storage_conn_id
        self.include_thumbnail = include_thumbnail
        self.luma_conn_id = luma_conn_id
        if max_bytes is not None and (
            isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1
        ):
            raise LumaValidationError("max_bytes", f"must be a positive number of bytes, got {max_bytes!r}")
        self.max_bytes = max_bytes

    def execute(self, context: Context) -> Any:
        items = self.generation_id if isinstance(self.generation_id, (list, tuple)) else [self.generation_id]
        folder = len(items) > 1 or str(self.destination).endswith("/")
        results = [self._download(item, folder) for item in items]
        return results if isinstance(self.generation_id, (list, tuple)) else results[0]

    def _download(self, item: Any, folder: bool) -> Any:
        generation = self.hook.resolve_generation(
            item if isinstance(item, dict) else api.validate_generation_id(item, "generation_id")
        )
        if generation.state != LumaState.COMPLETED or not generation.result_url:
            generation = self.hook.get_generation(generation.id)  # XCom may be stale
        destination = self._destination(folder)
        kwargs = {"max_bytes": self.max_bytes} if self.max_bytes else {}
        video = self.hook.download_video(
            generation, destination, storage_conn_id=self.storage_conn_id, **kwargs
        )
        if not self.include_thumbnail:
            return video
        thumb = self.hook.download_thumbnail(generation, destination, storage_conn_id=self.storage_conn_id)
        return {"generation_id": generation.id, "video": video, "thumbnail": thumb}

    def _destination(self, folder: bool) -> str:
        dest = str(self.destination)
        return dest if not folder or dest.endswith("/") else f"{dest}/"


def _label(prompt: Any, limit: int = 48) -> str:
    text = " ".join(str(prompt or "").split())
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
