"""What every Luma operator and sensor shares, importable at DAG-parse time for free.

The hook itself (requests, aiohttp) is imported only when a task first uses it.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from luma_provider.hooks.luma import LumaHook

#: Mapped waits and downloads show their ``map_label`` (e.g. the prompt) when one is given.
LABEL_TEMPLATE = (
    "{{ (task.map_label | string).split() | join(' ') | truncate(48, True, '…', 0) "
    "if task.map_label else ti.map_index }}"
)


class LumaHookMixin:
    """The ``hook`` property of every Luma operator and sensor (``luma_conn_id`` set by them)."""

    luma_conn_id: str

    @cached_property
    def hook(self) -> LumaHook:
        from luma_provider.hooks.luma import LumaHook  # lazy: DAG parsing never pays for HTTP libraries

        return LumaHook(self.luma_conn_id)
