"""LumaTaskSensor: wait for one or many Luma generations to complete."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from luma_provider import api, batch
from luma_provider.exceptions import LumaTimeoutError
from luma_provider.hooks.base import LABEL_TEMPLATE, LumaHookMixin
from luma_provider.links.luma import LumaVideoDownloadLink, LumaVideoLink, push_video_link
from luma_provider.models import LumaGeneration, LumaState
from luma_provider.triggers.luma import (
    check_event,
    finished_at_from_event,
    generations_from_event,
    raise_if_failed,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


class LumaTaskSensor(LumaHookMixin, BaseSensorOperator):
    """Wait until Luma generations are completed; fail with the reason if one fails.

    Deferrable by default: the wait happens in the triggerer and holds no worker slot.

    :param generation_id: one id, a list of ids, or generation dicts (e.g. the submit
        operator's XCom), or a batch ``LumaGenerateOperator``'s result: then the sensor waits
        until *every* submitted prompt has finished, failed or not, and returns the batch result
        with each prompt's outcome. Templated.
    :param max_failed_fraction: with a batch result, fail when more than this share of its
        prompts did not complete (default 0: any failure; 1: never, a later step decides).
    :param luma_conn_id: Airflow connection id of type ``luma``.
    :param poll_interval: seconds between status checks (also the poke interval; at least 0.1).
    :param timeout: seconds to wait in all before failing.
    :param deferrable: wait in the triggerer (default) instead of poking from a worker; True by
        default, not ``[operators] default_deferrable`` (see ``LumaGenerateOperator``).
    :param map_label: name of a mapped instance in the UI, e.g. the prompt (default: the map
        index). Templated.
    :param cancel_on_kill: when the task is killed, marked failed or succeeded, or cleared while a
        generation is still queued or dreaming, cancel it (official flavour). Default True.
    :return: the completed generation as a dict (a list of dicts when given a list).
    """

    template_fields: Sequence[str] = ("generation_id", "map_label")
    operator_extra_links = (LumaVideoLink(), LumaVideoDownloadLink())
    ui_color = "#c9b6f2"

    def __init__(
        self,
        *,
        generation_id: str | Sequence[Any] | dict[str, Any],
        luma_conn_id: str = api.DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        deferrable: bool = True,
        timeout: float = 60 * 60,
        map_label: str | None = None,
        map_index_template: str | None = LABEL_TEMPLATE,
        cancel_on_kill: bool = True,
        max_failed_fraction: float = 0.0,
        **kwargs: Any,
    ) -> None:
        poll_interval = api.validate_seconds(poll_interval, "poll_interval")
        max_failed_fraction = batch.validate_fraction(max_failed_fraction)
        timeout = api.validate_seconds(timeout, "timeout")
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(timeout=timeout, map_index_template=map_index_template, **kwargs)
        self.map_label = map_label
        self.generation_id = generation_id
        self.luma_conn_id = luma_conn_id
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self.max_failed_fraction = max_failed_fraction
        self._finished_at: dict[str, float] = {}

    @property
    def _batch(self) -> list[batch.Submitted] | None:
        """The prompts of a batch result given as ``generation_id`` (None for ids/dicts)."""
        value: Any = self.generation_id
        if not batch.is_result(value):
            return None
        return [batch.Submitted.from_result_entry(e) for e in value["prompts"] if isinstance(e, dict)]

    @property
    def generation_ids(self) -> list[str]:
        """The rendered ``generation_id`` as a validated list of ids."""
        prompts = self._batch
        if prompts is not None:
            return [x.generation_id for x in prompts if x.generation_id]
        value = self.generation_id
        items = value if isinstance(value, (list, tuple)) else [value]
        return [
            api.validate_generation_id(i["id"] if isinstance(i, dict) else i, "generation_id") for i in items
        ]

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        ids = self.generation_ids
        # One look before deferring: already-finished generations need no trigger at all.
        done = self.poke(context)
        if done.is_done:
            return done.xcom_value
        self.log.info("Deferring: waiting for %d generation(s) in the triggerer", len(ids))
        self.defer_until_done(ids, fail_fast=self._batch is None)

    def on_kill(self) -> None:
        """Killed while poking on the worker: cancel what is unfinished (official API)."""
        if not self.cancel_on_kill:
            return
        import asyncio

        from luma_provider.hooks.luma import LumaHook

        async def cancel() -> None:
            hook = LumaHook(self.luma_conn_id, max_retries=1)
            try:
                await hook.acancel_unfinished(self.generation_ids, log=self.log)
            finally:
                await hook.aclose()

        asyncio.run(cancel())

    def poke(self, context: Context) -> PokeReturnValue:
        prompts = self._batch
        if prompts is not None:
            return self._poke_batch(prompts, context)
        generations = self.hook.get_generations(self.generation_ids)
        raise_if_failed(generations)
        waiting = [g for g in generations if g.state != LumaState.COMPLETED]
        if waiting:
            self.log.info(
                "Waiting for %s", ", ".join(f"{g.id} ({g.raw_state or g.state.value})" for g in waiting)
            )
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._result(generations, context))

    def _poke_batch(self, prompts: list[batch.Submitted], context: Context) -> PokeReturnValue:
        ids = [x.generation_id for x in prompts if x.generation_id]
        generations = self.hook.get_generations(ids)
        now = round(time.time(), 1)
        for gen in generations:  # the render time of each prompt, as precise as the poke interval
            if gen.is_terminal:
                self._finished_at.setdefault(gen.id, now)
        running = [g for g in generations if not g.is_terminal]
        if running:
            self.log.info("Waiting for %d of %d generations of the batch", len(running), len(ids))
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._batch_result(prompts, context))

    def _batch_result(
        self, prompts: list[batch.Submitted], context: Context, finished_at: dict[str, float] | None = None
    ) -> dict[str, Any]:
        result = batch.settle(
            self.hook, prompts, finished=True, log=self.log, finished_at=finished_at or self._finished_at
        )
        # Submit problems were the submit task's to judge; here only the outcomes count.
        error = batch.judge(result, [], max_failed_fraction=self.max_failed_fraction)
        if error is not None:
            context["ti"].xcom_push(key=batch.XCOM_RESULT, value=result)
            raise error
        return result

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: refetch on the worker (events carry no URLs)."""
        prompts = self._batch
        try:
            if prompts is not None:
                check_event(self.generation_ids, event)
                return self._batch_result(prompts, context, finished_at_from_event(event))
            generations = generations_from_event(self.hook, self.generation_ids, event)
        except LumaTimeoutError as err:
            # common-compat: airflow.sdk.exceptions on 3.2+, airflow.exceptions before (the floor, 3.1)
            from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException

            if self.soft_fail:
                raise AirflowSkipException(f"{err} (soft_fail)") from err
            raise AirflowSensorTimeout(str(err)) from err
        return self._result(generations, context)

    def _result(self, generations: list[LumaGeneration], context: Context) -> Any:
        for gen in generations:
            self.log.info("Generation %s completed: %s", gen.id, gen.video_url or "(no video URL)")
        push_video_link(context, generations[0] if len(generations) == 1 else None)
        dicts = [g.to_dict() for g in generations]
        single = not isinstance(self.generation_id, (list, tuple))
        return dicts[0] if single else dicts
