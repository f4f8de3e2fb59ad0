"""Operators: submit a Luma generation (video, extend, image, upscale, audio), download results."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from luma_provider import api, batch
from luma_provider.batch import short_label
from luma_provider.concurrency import run_bounded
from luma_provider.exceptions import (
    LumaAmbiguousSubmitError,
    LumaBudgetError,
    LumaDownloadError,
    LumaError,
    LumaValidationError,
)
from luma_provider.hooks.base import LABEL_TEMPLATE, LumaHookMixin
from luma_provider.ledger import DEFAULT_CLAIM_WAIT, GenerationLedger, key_for_request
from luma_provider.links.luma import LumaVideoDownloadLink, LumaVideoLink, push_video_link
from luma_provider.models import LumaGeneration, LumaState
from luma_provider.reuse import GenerationReuse, ScopedStore, retry_store

if TYPE_CHECKING:
    from airflow.sdk import Context

#: XCom key holding the full normalized generation (``return_value`` holds just the id).
XCOM_GENERATION = "generation"
#: What a generate task does when a submit's outcome is unknown (the gateway may have the job).
AMBIGUOUS_SUBMIT_CHOICES = ("fail", "retry")
#: Mapped instances show the start of their prompt instead of a bare index. Uses only the
#: rendered task, so it also renders after a deferral (execute_complete has a fresh context).
PROMPT_LABEL_TEMPLATE = (
    "{{ ((task.map_label or task.prompt) | string).split() | join(' ') | truncate(48, True, '…', 0) }}"
)
#: The generate operator's label also names a batch: "100 prompts: <the first one>".
GENERATE_LABEL_TEMPLATE = (
    "{% set text = task.map_label or task.prompt or ((task.prompts | length) ~ ' prompts: ' ~ "
    "(task.prompts[0].prompt if task.prompts[0] is mapping else task.prompts[0])) %}"
    "{{ (text | string).split() | join(' ') | truncate(48, True, '…', 0) }}"
)
#: XCom key of a batch's submits (prompt, id or error), kept for ``execute_complete``.
XCOM_BATCH_SUBMITTED = "batch_submitted"
#: XCom key of a batch's result when the task fails (on success it is the return value).
XCOM_BATCH_RESULT = batch.XCOM_RESULT
#: XCom key of the downloads that landed when others of the same task failed.
XCOM_DOWNLOADED = "downloaded"
#: Upper bound of ``max_concurrent_submits``/``max_concurrent_downloads`` (the hook's pool holds 16).
MAX_CONCURRENT_SUBMITS = 16


@dataclass(frozen=True)
class SubmitRequest:
    """A validated request, ready to submit.

    :param body: what is sent; with ``source_id`` it is the request digest of the idempotency key.
    :param source_id: the generation this request builds on (extend, upscale, audio), if any.
    :param payload: the operator's own validated input (e.g. ``GenerationOptions``).
    """

    body: Mapping[str, Any]
    source_id: str | None = None
    payload: Any = None


class _LumaSubmitOperator(LumaHookMixin, BaseOperator):
    """Submit one paid Luma generation once, then optionally wait for it.

    Everything but the request itself lives here: the never-pay-twice bookkeeping
    (``GenerationReuse``: task state store first, then the ledger under ``idempotency_key``
    + the request digest), ``ambiguous_submit``, the XComs and links, and the wait (deferred
    to ``LumaTrigger`` or polled on the worker). A subclass only says how to turn its
    parameters into a ``SubmitRequest`` (``_request``, before any HTTP call) and how to submit
    it (``_submit``).

    :param idempotency_key: opt-in reuse across runs: a generation recorded in the ledger under
        the same key *and* the same request is reused instead of paying again, unless it failed.
        Templated.
    :param ledger_path: folder URI of the ledger (default ``$AIRFLOW_HOME/luma_ledger``). Templated.
    :param ledger_conn_id: Airflow connection for the ledger's object store, if needed.
    :param claim_wait: seconds to wait for another run's claim on the same idempotency key.
    :param ambiguous_submit: ``"fail"`` (default) or ``"retry"`` when a submit's outcome is unknown.
    :param luma_conn_id: Airflow connection id of type ``luma``.
    :param wait_for_completion: wait for the generation and return it completed.
    :param deferrable: when waiting, wait in the triggerer (True by default).
    :param poll_interval: seconds between status checks while waiting (at least 0.1).
    :param timeout: seconds to wait for completion before failing.
    :param cancel_on_kill: when the task is killed, marked failed or succeeded, or cleared while
        its generation is still queued or dreaming, cancel it (official flavour; the gateways
        have no cancel), so no credits go to a video nobody will collect. Default True.
    :param map_label: name of a mapped instance in the UI (default: the start of its prompt).
        Templated.
    :param min_credits: credit floor in USD cents (official API): before submitting, the task
        reads the balance once (``GET /credits``) and fails without spending when it is below
        this. Default: the connection extra ``min_credits`` (none: no check).
    """

    template_fields: Sequence[str] = ("idempotency_key", "ledger_path", "map_label")
    operator_extra_links = (LumaVideoLink(), LumaVideoDownloadLink())
    #: The operator needs Luma's official API (checked before any HTTP call).
    official_only: ClassVar[bool] = False

    def __init__(
        self,
        *,
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
        cancel_on_kill: bool = True,
        map_label: str | None = None,
        min_credits: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.map_label = map_label
        self.min_credits = None if min_credits is None else api.validate_credits(min_credits, "min_credits")
        self.cancel_on_kill = cancel_on_kill
        self._submitted_id: str | None = None
        self._retry_store: tuple[tuple[str, int], Any] | None = None
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

    # ------------------------------------------------------------------ what a subclass says
    def _request(self) -> SubmitRequest:
        """Validate the parameters into a request; raises ``LumaValidationError`` before any HTTP."""
        raise NotImplementedError

    def _submit(self, request: SubmitRequest) -> LumaGeneration:
        """Send the request (once: the bookkeeping around it is done by the caller)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared flow
    def execute(self, context: Context) -> Any:
        if self.official_only and not self.hook.settings.official:
            raise LumaValidationError(
                "luma_conn_id",
                f"{type(self).__name__} needs Luma's official API; connection {self.luma_conn_id!r} "
                f"is {self.hook.settings.api_flavour} (set its extra api_flavour=official)",
            )
        request = self._request()
        self._check_credit_floor()
        generation = self._submit_once(context, request)
        self._submitted_id = generation.id
        context["ti"].xcom_push(key=XCOM_GENERATION, value=generation.to_dict())
        push_video_link(context, generation)
        if not self.wait_for_completion:
            return generation.id
        if generation.state == LumaState.COMPLETED:
            return generation.to_dict()
        if self.deferrable:
            self.defer_until_done([generation.id])
        (done,) = self.hook.wait_for_generations(
            [generation.id], poll_interval=self.poll_interval, timeout=self.timeout
        )
        return self._finish(done, context)

    def _check_credit_floor(self) -> None:
        """Fail before spending when the balance is below the floor (one ``GET /credits`` per task)."""
        floor = self.min_credits if self.min_credits is not None else self.hook.settings.min_credits
        if floor is None:
            return
        if not self.hook.settings.official:
            raise LumaValidationError(
                "min_credits", "needs Luma's official API (GET /credits); a gateway has no balance to read"
            )
        balance = self.hook.get_credits()
        if balance < floor:
            raise LumaBudgetError(
                f"Credit balance {balance:g} is below the floor {floor:g} (USD cents, min_credits): "
                "nothing was submitted"
            )
        self.log.info("Credit balance %g is above the floor %g (USD cents)", balance, floor)

    def on_kill(self) -> None:
        """Killed while waiting on the worker: cancel the unfinished generation (official API).

        A deferred wait is cancelled by ``LumaTrigger.on_kill`` instead.
        """
        if self.cancel_on_kill and self._submitted_id:
            import asyncio

            asyncio.run(self._cancel_unfinished([self._submitted_id]))

    async def _cancel_unfinished(self, ids: list[str]) -> None:
        from luma_provider.hooks.luma import LumaHook

        hook = LumaHook(self.luma_conn_id, max_retries=1)
        try:
            await hook.acancel_unfinished(ids, log=self.log)
        finally:
            await hook.aclose()

    @cached_property
    def ledger(self) -> GenerationLedger:
        return GenerationLedger(self.ledger_path, conn_id=self.ledger_conn_id)

    def _reuse(
        self,
        context: Context,
        request: SubmitRequest,
        *,
        scope: str | None = None,
        lock: threading.Lock | None = None,
    ) -> GenerationReuse:
        """The pay-once bookkeeping of one request.

        :param scope: tells the prompts of a batch apart in the task state store and ledger.
        :param lock: held around every task state store call (a batch's threads share it).
        """
        ti = context["ti"]
        store = self._task_state_store(context)
        digest = key_for_request(request.body, request.source_id)
        return GenerationReuse(
            self.hook,
            store=ScopedStore(store, scope, lock or threading.Lock())
            if scope and store is not None
            else store,
            ledger=self.ledger,
            claim_wait=self.claim_wait,
            # The key scopes reuse; the request itself is always part of the entry, so one key
            # shared by many mapped prompts (e.g. "{{ ds }}") never hands out another prompt's video.
            key=f"{self.idempotency_key}:{scope or digest}" if self.idempotency_key else None,
            owner=f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}",
            logger=self.log,
            first_try=ti.try_number == 1,
        )

    def _task_state_store(self, context: Context) -> Any:
        """Where a retry finds what earlier tries paid for; the choice is logged once per try.

        Airflow 3.3+: the task state store. Before: ``TaskInstanceStore`` in the ledger (none with
        an idempotency key: the ledger entries under the key already bring a retry back).
        """
        ti = context["ti"]
        owner = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}"
        if self._retry_store is None or self._retry_store[0] != (owner, ti.try_number):
            keyed = bool(self.idempotency_key)
            found = retry_store(context, self.ledger, owner, keyed=keyed, logger=self.log)
            self._retry_store = ((owner, ti.try_number), found)
        return self._retry_store[1]

    def _submit_once(self, context: Context, request: SubmitRequest) -> LumaGeneration:
        reuse = self._reuse(context, request)
        try:
            return reuse.submit_once(lambda: self._submit(request))
        except LumaAmbiguousSubmitError as err:
            if self.ambiguous_submit == "retry":
                raise LumaError(
                    f"{err} [ambiguous_submit='retry': the task's retries will submit again, "
                    "and the video may be paid twice]"
                ) from err
            raise

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        from luma_provider.triggers.luma import generations_from_event

        recorded = context["ti"].xcom_pull(
            task_ids=self.task_id, key=XCOM_GENERATION, map_indexes=context["ti"].map_index
        )
        ids = [recorded["id"]] if recorded else list((event or {}).get("generation_ids") or [])
        (done,) = generations_from_event(self.hook, ids, event)
        return self._finish(done, context)

    def _finish(self, generation: LumaGeneration, context: Context) -> dict[str, Any]:
        self.log.info("Generation %s completed: %s", generation.id, generation.result_url)
        context["ti"].xcom_push(key=XCOM_GENERATION, value=generation.to_dict())
        push_video_link(context, generation)
        return generation.to_dict()


class LumaGenerateOperator(_LumaSubmitOperator):
    """Submit a Luma video generation (or extend one) and optionally wait for it.

    The submit happens here on the worker, never in a trigger, and the returned id is written
    to the task state store at once, so a retry of this task reconnects to the same generation
    instead of paying for a second one.

    :param prompt: text prompt (one video). Templated.
    :param prompts: a batch instead of ``prompt``: a list of prompt strings or dicts with
        ``prompt`` and any option below (a dict's non-None values override the operator's), up to
        1,000. Every prompt is validated before any HTTP call; each accepted id is recorded at
        once, so a retry pays only for the rest. Returns a batch result (see the README). Templated.
    :param max_concurrent_submits: a batch's submits in flight (1-16); one 429 pauses them all.
    :param max_failed_fraction: a batch fails when more than this share of its prompts did not
        complete (0, the default: any failure; 1: never for a prompt), decided after all finished.
    :param max_generations: a batch submits at most this many prompts (in order); the rest are
        reported as ``skipped`` (budget). Default: no limit.
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
    :param prompt_source: URI of the file/asset the prompts came from, for lineage (an input
        dataset of the task's OpenLineage events, like its ``inlets``), e.g.
        ``"{{ params.prompts_file }}"``; never read. Templated.
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
        "prompts",
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
        "prompt_source",
        "idempotency_key",
        "ledger_path",
        "map_label",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"extra": "json", "prompt": "md", "prompts": "json"}
    ui_color = "#e3d7fb"

    def __init__(
        self,
        *,
        prompt: str | None = None,
        prompts: list[str | dict[str, Any]] | None = None,
        max_concurrent_submits: int = 4,
        max_failed_fraction: float = 0.0,
        max_generations: int | None = None,
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
        prompt_source: str | None = None,
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
        map_index_template: str | None = GENERATE_LABEL_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            idempotency_key=idempotency_key,
            ledger_path=ledger_path,
            ledger_conn_id=ledger_conn_id,
            claim_wait=claim_wait,
            ambiguous_submit=ambiguous_submit,
            luma_conn_id=luma_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            map_index_template=map_index_template,
            **kwargs,
        )
        if (prompt is None) == (prompts is None):
            raise LumaValidationError("prompt", "give either prompt (one video) or prompts (a batch)")
        if prompts is not None and extend_generation_id is not None:
            raise LumaValidationError("prompts", "a batch cannot extend a generation; use prompt")
        self.max_concurrent_submits = api.validate_count(
            max_concurrent_submits, "max_concurrent_submits", low=1, high=MAX_CONCURRENT_SUBMITS
        )
        max_failed_fraction = batch.validate_fraction(max_failed_fraction)
        if max_generations is not None:
            api.validate_count(max_generations, "max_generations")
        self.max_generations = max_generations
        self.prompt = prompt
        self.prompts = prompts
        self.max_failed_fraction = float(max_failed_fraction)
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
        self.prompt_source = prompt_source

    def _options(self) -> api.GenerationOptions:
        """Every option checked before any HTTP call; errors name the field and allowed values."""
        options = {name: getattr(self, name) for name in api.OPTION_NAMES}
        flavour = self.hook.settings.api_flavour
        return api.GenerationOptions.build(self.prompt, flavour=flavour, extra=self.extra, **options)

    def _request(self) -> SubmitRequest:
        options = self._options()
        source_id = (
            api.validate_generation_id(self.extend_generation_id, "extend_generation_id")
            if self.extend_generation_id
            else None
        )
        return SubmitRequest(options.body(), source_id, options)

    # ------------------------------------------------------------------ batch (prompts=[...])
    def execute(self, context: Context) -> Any:
        if self.prompts is None:
            return super().execute(context)
        shared = {name: getattr(self, name) for name in api.OPTION_NAMES}
        options = batch.prompt_options(
            self.prompts, shared, flavour=self.hook.settings.api_flavour, extra=self.extra
        )
        budget = len(options) if self.max_generations is None else self.max_generations
        if budget < len(options):
            self.log.warning(
                "Budget: submitting %d of %d prompts (max_generations=%d); %d skipped",
                budget,
                len(options),
                budget,
                len(options) - budget,
            )
        lock = threading.Lock()
        jobs = [
            (o, self._reuse(context, SubmitRequest(o.body(), None, o), scope=scope, lock=lock))
            for o, scope in zip(options[:budget], batch.prompt_scopes(options)[:budget], strict=True)
        ]
        if jobs:
            self._check_credit_floor()
        if self.idempotency_key:
            self.ledger.prepare()
        results = batch.submit_all(self.hook, jobs, max_concurrent=self.max_concurrent_submits, log=self.log)
        skipped = f"budget: max_generations={budget}"
        submitted = [batch.Submitted.of(o, r) for o, r in zip(options, results, strict=False)]
        submitted += [batch.Submitted(o.prompt, skipped=skipped) for o in options[budget:]]
        context["ti"].xcom_push(key=XCOM_BATCH_SUBMITTED, value=[x.to_dict() for x in submitted])
        pending = [r.id for r in results if isinstance(r, LumaGeneration) and not r.is_terminal]
        if self.wait_for_completion and pending:
            if self.deferrable:
                self.defer_until_done(pending, fail_fast=False)
            self.hook.wait_for_generations(
                pending, poll_interval=self.poll_interval, timeout=self.timeout, fail_fast=False
            )
        return self._finish_batch(context, submitted)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if self.prompts is None:
            return super().execute_complete(context, event)
        from luma_provider.triggers.luma import check_event, finished_at_from_event

        ti = context["ti"]
        recorded = ti.xcom_pull(task_ids=self.task_id, key=XCOM_BATCH_SUBMITTED, map_indexes=ti.map_index)
        if not isinstance(recorded, list):
            raise LumaError("The batch's submits are missing from XCom; clear the task to resume it")
        submitted = [batch.Submitted.from_dict(x) for x in recorded]
        check_event([x.generation_id for x in submitted if x.generation_id], event)
        return self._finish_batch(context, submitted, finished_at_from_event(event))

    def _finish_batch(
        self,
        context: Context,
        submitted: list[batch.Submitted],
        finished_at: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Sort the prompts into completed and failed; fail the task as ``batch.judge`` says."""
        result = batch.settle(
            self.hook, submitted, finished=self.wait_for_completion, log=self.log, finished_at=finished_at
        )
        ti = context["ti"]
        error = batch.judge(
            result,
            submitted,
            max_failed_fraction=self.max_failed_fraction,
            ambiguous_submit=self.ambiguous_submit,
            last_try=ti.try_number > (self.retries or 0),
        )
        if error is not None:
            ti.xcom_push(key=XCOM_BATCH_RESULT, value=result)
            raise error
        return result

    def _submit(self, request: SubmitRequest) -> LumaGeneration:
        options: api.GenerationOptions = request.payload
        if request.source_id:
            generation = self.hook.extend_generation(request.source_id, options, reverse=self.reverse)
        else:
            generation = self.hook.submit_generation(options)
        self.log.info(
            "Submitted Luma generation %s for prompt %r", generation.id, short_label(options.prompt)
        )
        return generation

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: prompt source, inlets and keyframe URLs in; the submitted generations out.

        Called by the OpenLineage provider (extra ``[openlineage]``) after the task; the dataset
        naming is ``luma_provider.openlineage``'s.
        """
        from luma_provider import openlineage as ol

        if self.prompts is None:  # the id is on the operator unless the task resumed from a deferral
            result = self._submitted_id or ol.own_xcom(task_instance, XCOM_GENERATION)
        else:
            result = ol.own_xcom(task_instance, "return_value", XCOM_BATCH_RESULT, XCOM_BATCH_SUBMITTED)
        inputs, outputs = ol.generate_datasets(
            base_url=self.hook.settings.base_url,
            result=result,
            prompt_source=self.prompt_source,
            inlets=self.inlets,
            keyframes=ol.keyframe_urls(self.image_url, self.image_end_url, self.prompts),
            extend_generation_id=self.extend_generation_id,
        )
        return ol.operator_lineage(inputs, outputs)


class LumaGenerateImageOperator(_LumaSubmitOperator):
    """Generate an image with Luma's photon models (official API) and optionally wait for it.

    Pays once like ``LumaGenerateOperator``: a retry reuses the image an earlier try submitted.
    The completed generation's ``image_url`` (in XCom with ``wait_for_completion``) can be the
    keyframe ``image_url`` of a ``LumaGenerateOperator``; ``LumaDownloadVideoOperator`` downloads it.

    :param prompt: text prompt. Templated.
    :param model: ``photon-1`` (default) or ``photon-flash-1``. Templated.
    :param aspect_ratio: ``1:1``, ``4:3``, ``3:4``, ``16:9``, ``9:16``, ``21:9`` or ``9:21``. Templated.
    :param format: ``jpg`` or ``png``. Templated.
    :param image_ref: up to 4 ``{"url": ..., "weight": 0..1}`` images to guide the content. Templated.
    :param style_ref: ``{"url": ..., "weight": 0..1}`` images whose style to follow. Templated.
    :param character_ref: ``{"identity0": {"images": [url, ...]}}``: keep a character consistent.
        Templated.
    :param modify_image_ref: ``{"url": ..., "weight": 0..1}``: the image to modify. Templated.
    :param callback_url: URL Luma POSTs the generation to on progress. Templated.
    :param idempotency_key: opt-in reuse across runs (see ``LumaGenerateOperator``). Templated.
    :param ledger_path: folder URI of the ledger (default ``$AIRFLOW_HOME/luma_ledger``). Templated.
    :param ledger_conn_id: Airflow connection for the ledger's object store, if needed.
    :param claim_wait: seconds to wait for another run's claim on the same idempotency key.
    :param ambiguous_submit: ``"fail"`` (default) or ``"retry"`` when a submit's outcome is unknown.
    :param luma_conn_id: Airflow connection id of type ``luma`` (official flavour).
    :param wait_for_completion: wait for the image and return it completed.
    :param deferrable: when waiting, wait in the triggerer (True by default).
    :param poll_interval: seconds between status checks while waiting (at least 0.1).
    :param timeout: seconds to wait for completion before failing.
    :return: the generation id, or the completed generation dict with ``wait_for_completion``.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "model",
        "aspect_ratio",
        "format",
        "image_ref",
        "style_ref",
        "character_ref",
        "modify_image_ref",
        "callback_url",
        "idempotency_key",
        "ledger_path",
        "map_label",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "prompt": "md",
        "image_ref": "json",
        "style_ref": "json",
        "character_ref": "json",
        "modify_image_ref": "json",
    }
    ui_color = "#fbe7d7"
    official_only = True

    def __init__(
        self,
        *,
        prompt: str,
        model: str | None = None,
        aspect_ratio: str | None = None,
        format: str | None = None,
        image_ref: list[dict[str, Any]] | None = None,
        style_ref: list[dict[str, Any]] | None = None,
        character_ref: dict[str, Any] | None = None,
        modify_image_ref: dict[str, Any] | None = None,
        callback_url: str | None = None,
        map_index_template: str | None = PROMPT_LABEL_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        super().__init__(map_index_template=map_index_template, **kwargs)
        self.prompt = prompt
        self.model = model
        self.aspect_ratio = aspect_ratio
        self.format = format
        self.image_ref = image_ref
        self.style_ref = style_ref
        self.character_ref = character_ref
        self.modify_image_ref = modify_image_ref
        self.callback_url = callback_url

    def _image_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "aspect_ratio": self.aspect_ratio or None,
            "format": self.format or None,
            "callback_url": self.callback_url or None,
        }
        for name in ("image_ref", "style_ref"):
            value = getattr(self, name)
            if value not in (None, [], ""):
                if not isinstance(value, (list, tuple)) or not value:
                    raise LumaValidationError(name, "must be a list of {url, weight} objects")
                options[name] = [_image_ref(item, f"{name}[{i}]") for i, item in enumerate(value)]
        if self.modify_image_ref not in (None, {}, ""):
            options["modify_image_ref"] = _image_ref(self.modify_image_ref, "modify_image_ref")
        if self.character_ref not in (None, {}, ""):
            options["character_ref"] = _character_ref(self.character_ref)
        return {k: v for k, v in options.items() if v is not None}

    def _request(self) -> SubmitRequest:
        options = self._image_options()
        body = api.image_body(self.prompt, model=self.model or None, **dict(options))
        return SubmitRequest(body, None, options)

    def _submit(self, request: SubmitRequest) -> LumaGeneration:
        generation = self.hook.submit_image_generation(
            str(request.body["prompt"]), model=request.body["model"], **request.payload
        )
        self.log.info(
            "Submitted Luma image generation %s for prompt %r", generation.id, short_label(self.prompt)
        )
        return generation


class LumaUpscaleVideoOperator(_LumaSubmitOperator):
    """Upscale a completed video (official API) and optionally wait for the new generation.

    The upscale is a new paid generation with its own id; it pays once like
    ``LumaGenerateOperator`` (a retry reuses the upscale an earlier try submitted).

    :param generation_id: id of the completed video generation to upscale. Templated.
    :param resolution: ``540p``, ``720p``, ``1080p`` or ``4k``. Templated.
    :param callback_url: URL Luma POSTs the generation to on progress. Templated.
    :param idempotency_key: opt-in reuse across runs (see ``LumaGenerateOperator``). Templated.
    :param ledger_path: folder URI of the ledger (default ``$AIRFLOW_HOME/luma_ledger``). Templated.
    :param ledger_conn_id: Airflow connection for the ledger's object store, if needed.
    :param claim_wait: seconds to wait for another run's claim on the same idempotency key.
    :param ambiguous_submit: ``"fail"`` (default) or ``"retry"`` when a submit's outcome is unknown.
    :param luma_conn_id: Airflow connection id of type ``luma`` (official flavour).
    :param wait_for_completion: wait for the upscaled video and return it completed.
    :param deferrable: when waiting, wait in the triggerer (True by default).
    :param poll_interval: seconds between status checks while waiting (at least 0.1).
    :param timeout: seconds to wait for completion before failing.
    :return: the new generation's id, or the completed generation dict with ``wait_for_completion``.
    """

    template_fields: Sequence[str] = (
        "generation_id",
        "resolution",
        "callback_url",
        "idempotency_key",
        "ledger_path",
        "map_label",
    )
    ui_color = "#d7e7fb"
    official_only = True

    def __init__(
        self,
        *,
        generation_id: str,
        resolution: str,
        callback_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.generation_id = generation_id
        self.resolution = resolution
        self.callback_url = callback_url

    def _request(self) -> SubmitRequest:
        source_id = api.validate_generation_id(self.generation_id, "generation_id")
        body = api.upscale_body(self.resolution, callback_url=self.callback_url or None)
        return SubmitRequest(body, source_id)

    def _submit(self, request: SubmitRequest) -> LumaGeneration:
        assert request.source_id is not None
        options = {"callback_url": request.body["callback_url"]} if "callback_url" in request.body else {}
        generation = self.hook.upscale_generation(request.source_id, request.body["resolution"], **options)
        self.log.info(
            "Submitted Luma upscale %s of generation %s to %s",
            generation.id,
            request.source_id,
            request.body["resolution"],
        )
        return generation


class LumaAddAudioOperator(_LumaSubmitOperator):
    """Add a sound track to a completed video (official API) and optionally wait for it.

    The result is a new paid generation with its own id; it pays once like
    ``LumaGenerateOperator`` (a retry reuses the one an earlier try submitted).

    :param generation_id: id of the completed video generation. Templated.
    :param prompt: what the audio should sound like. Templated.
    :param negative_prompt: what it should not sound like. Templated.
    :param callback_url: URL Luma POSTs the generation to on progress. Templated.
    :param idempotency_key: opt-in reuse across runs (see ``LumaGenerateOperator``). Templated.
    :param ledger_path: folder URI of the ledger (default ``$AIRFLOW_HOME/luma_ledger``). Templated.
    :param ledger_conn_id: Airflow connection for the ledger's object store, if needed.
    :param claim_wait: seconds to wait for another run's claim on the same idempotency key.
    :param ambiguous_submit: ``"fail"`` (default) or ``"retry"`` when a submit's outcome is unknown.
    :param luma_conn_id: Airflow connection id of type ``luma`` (official flavour).
    :param wait_for_completion: wait for the video with audio and return it completed.
    :param deferrable: when waiting, wait in the triggerer (True by default).
    :param poll_interval: seconds between status checks while waiting (at least 0.1).
    :param timeout: seconds to wait for completion before failing.
    :return: the new generation's id, or the completed generation dict with ``wait_for_completion``.
    """

    template_fields: Sequence[str] = (
        "generation_id",
        "prompt",
        "negative_prompt",
        "callback_url",
        "idempotency_key",
        "ledger_path",
        "map_label",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"prompt": "md", "negative_prompt": "md"}
    ui_color = "#e7fbd7"
    official_only = True

    def __init__(
        self,
        *,
        generation_id: str,
        prompt: str,
        negative_prompt: str | None = None,
        callback_url: str | None = None,
        map_index_template: str | None = PROMPT_LABEL_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        super().__init__(map_index_template=map_index_template, **kwargs)
        self.generation_id = generation_id
        self.prompt = prompt
        self.negative_prompt = negative_prompt
        self.callback_url = callback_url

    def _request(self) -> SubmitRequest:
        source_id = api.validate_generation_id(self.generation_id, "generation_id")
        body = api.audio_body(
            self.prompt, negative_prompt=self.negative_prompt or None, callback_url=self.callback_url or None
        )
        return SubmitRequest(body, source_id)

    def _submit(self, request: SubmitRequest) -> LumaGeneration:
        assert request.source_id is not None
        options = {"callback_url": request.body["callback_url"]} if "callback_url" in request.body else {}
        generation = self.hook.add_audio(
            request.source_id,
            str(request.body["prompt"]),
            negative_prompt=request.body.get("negative_prompt"),
            **options,
        )
        self.log.info("Submitted Luma add-audio %s for generation %s", generation.id, request.source_id)
        return generation


class LumaDownloadVideoOperator(LumaHookMixin, BaseOperator):
    """Download completed generations' videos (and thumbnails) to any ``ObjectStoragePath``.

    :param generation_id: an id, a generation dict (e.g. a sensor's XCom), a list of either, or a
        batch ``LumaGenerateOperator``'s result (its completed prompts are downloaded). Templated.
    :param destination: local path or object-storage URI, a folder (ending in ``/``) or a file. Templated.
    :param storage_conn_id: Airflow connection for the destination's object store, if it needs one.
    :param include_thumbnail: also download ``<id>.jpg`` next to the video.
    :param luma_conn_id: Airflow connection id of type ``luma``.
    :param max_bytes: refuse videos larger than this.
    :param map_label: name of a mapped instance in the UI, e.g. the prompt (default: the map
        index). Templated.
    :param max_concurrent_downloads: downloads running at once for a list (each stays atomic and
        size-checked). When some fail, the others still finish; then the task fails naming them.
    :return: the final URI (a list of them for a list input or a batch result). With
        ``include_thumbnail``, a dict ``{"video": uri, "thumbnail": uri_or_None, "generation_id": id}``
        per video instead.
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
        max_concurrent_downloads: int = 4,
        map_index_template: str | None = LABEL_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        super().__init__(map_index_template=map_index_template, **kwargs)
        self.max_concurrent_downloads = api.validate_count(
            max_concurrent_downloads, "max_concurrent_downloads", low=1, high=MAX_CONCURRENT_SUBMITS
        )
        self.map_label = map_label
        self.generation_id = generation_id
        self.destination = destination
        self.storage_conn_id = storage_conn_id
        self.include_thumbnail = include_thumbnail
        self.luma_conn_id = luma_conn_id
        self.max_bytes = None if max_bytes is None else api.validate_count(max_bytes, "max_bytes", low=1)

    def execute(self, context: Context) -> Any:
        completed = batch.completed_generations(self.generation_id)
        many = completed is not None or isinstance(self.generation_id, (list, tuple))
        if completed is not None:
            items: list[Any] = completed
        else:
            items = list(self.generation_id) if many else [self.generation_id]
        folder = many or str(self.destination).endswith("/")
        _ = self.hook.settings, self.hook.session  # made once, on this thread, before the workers share them
        results = run_bounded(
            items,
            lambda item: self._download(item, folder),
            max_workers=self.max_concurrent_downloads,
            stop_on=lambda err: isinstance(err, LumaValidationError),
            name="luma-download",
        )
        errors = [(i, r) for i, r in enumerate(results) if isinstance(r, Exception)]
        if errors:
            # Everything else was downloaded first: one bad video does not cost the others.
            index, first = errors[0]
            if len(items) == 1:
                raise first
            # What did land stays visible (the report lists it) although the task fails.
            done = [r for r in results if not isinstance(r, Exception)]
            context["ti"].xcom_push(key=XCOM_DOWNLOADED, value=done)
            raise LumaDownloadError(
                f"{len(errors)} of {len(items)} downloads failed; first (item {index}): "
                f"{type(first).__name__}: {first}"
            ) from first
        return results if many else results[0]

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

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the downloaded generations (and inlets) in; the files written out.

        The outputs are the URIs the task returned (video and thumbnail files, named as the
        destination names them). Called by the OpenLineage provider (extra ``[openlineage]``).
        """
        from luma_provider import openlineage as ol

        inputs, outputs = ol.download_datasets(
            base_url=self.hook.settings.base_url,
            requested=self.generation_id,
            result=ol.own_xcom(task_instance, "return_value"),
            inlets=self.inlets,
        )
        return ol.operator_lineage(inputs, outputs)


def _image_ref(value: Any, field_name: str) -> dict[str, Any]:
    """A ``{url, weight}`` image reference: an http(s) URL and an optional weight in 0..1."""
    if not isinstance(value, Mapping):
        raise LumaValidationError(field_name, f"must be a {{url, weight}} object, got {type(value).__name__}")
    unknown = sorted(set(value) - {"url", "weight"})
    if unknown:
        raise LumaValidationError(field_name, f"has unknown key {unknown[0]!r}; allowed: url, weight")
    ref: dict[str, Any] = {"url": _http_image_url(value.get("url"), f"{field_name}.url")}
    weight = value.get("weight")
    if weight is not None:
        batch.validate_fraction(weight, f"{field_name}.weight")
        ref["weight"] = weight
    return ref


def _character_ref(value: Any) -> dict[str, Any]:
    images = value.get("identity0", {}).get("images") if isinstance(value, Mapping) else None
    if not isinstance(images, (list, tuple)) or not images or set(value) != {"identity0"}:
        raise LumaValidationError("character_ref", "must be {'identity0': {'images': [<url>, ...]}}")
    return {
        "identity0": {
            "images": [
                _http_image_url(u, f"character_ref.identity0.images[{i}]") for i, u in enumerate(images)
            ]
        }
    }


def _http_image_url(value: Any, field_name: str) -> str:
    url = api.validate_image_url(value, field_name)
    if url.startswith("data:"):
        raise LumaValidationError(field_name, "must be an http(s) URL (the image API takes no data URIs)")
    return url
