"""What every Luma operator and sensor shares, importable at DAG-parse time for free.

The hook itself (requests, aiohttp) is imported only when a task first uses it.
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from luma_provider.hooks.luma import LumaHook

#: Mapped waits and downloads show their ``map_label`` (e.g. the prompt) when one is given.
LABEL_TEMPLATE = (
    "{{ (task.map_label | string).split() | join(' ') | truncate(48, True, '…', 0) "
    "if task.map_label else ti.map_index }}"
)


class LumaHookMixin:
    """The ``hook`` property and the deferral of every Luma operator and sensor.

    The operator or sensor sets ``luma_conn_id``, ``poll_interval``, ``timeout`` and
    ``cancel_on_kill``.
    """

    luma_conn_id: str
    poll_interval: float
    timeout: Any  # float here; BaseSensorOperator declares it as its own type
    cancel_on_kill: bool

    def defer_until_done(
        self, ids: list[str], method_name: str = "execute_complete", *, fail_fast: bool = True
    ) -> None:
        """Hand the wait for ``ids`` to ``LumaTrigger`` (no worker slot held meanwhile).

        :param fail_fast: end the wait at the first failed generation (False: when all finished).
        """
        from luma_provider.triggers.luma import DEFER_TIMEOUT_GRACE, LumaTrigger

        if self.cancel_on_kill and not _triggerer_calls_on_kill() and self.hook.settings.official:
            getattr(self, "log").warning(  # noqa: B009 - BaseOperator.log, as defer below
                "cancel_on_kill: this Airflow's triggerer never calls a trigger's on_kill (it needs "
                "Airflow 3.3), so marking this deferred task failed/success or clearing it does not "
                "cancel its generations; they finish and are paid for"
            )
        defer: Any = getattr(self, "defer")  # noqa: B009 - BaseOperator.defer, mixed in after this class
        defer(
            trigger=LumaTrigger(
                generation_ids=ids,
                luma_conn_id=self.luma_conn_id,
                poll_interval=self.poll_interval,
                deadline=time.time() + float(self.timeout),
                cancel_on_kill=self.cancel_on_kill,
                fail_fast=fail_fast,
            ),
            method_name=method_name,
            # The trigger owns the deadline, so execute_complete still runs and says why.
            timeout=timedelta(seconds=float(self.timeout) + DEFER_TIMEOUT_GRACE),
        )

    @cached_property
    def hook(self) -> LumaHook:
        from luma_provider.hooks.luma import LumaHook  # lazy: DAG parsing never pays for HTTP libraries

        return LumaHook(self.luma_conn_id)


def _triggerer_calls_on_kill() -> bool:
    """Airflow 3.3's triggerer calls ``BaseTrigger.on_kill`` when a user ends a deferred task."""
    from airflow.triggers.base import BaseTrigger

    return hasattr(BaseTrigger, "on_kill")
