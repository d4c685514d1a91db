"""Where a watcher trigger keeps what it has seen.

In Airflow 3.3's triggerer each watcher gets ``self.asset_state_store`` (persisted in the
metadata DB), so a restart neither re-fires nor misses a change. Elsewhere (Airflow 3.1/3.2,
a sensor's deferral, tests) the memory of this trigger object is all there is.
"""

from __future__ import annotations

from typing import Any


class WatcherState:
    """``_get``/``_set`` over the asset state store when there is one, else memory."""

    _memory: dict[str, Any]

    def _init_state(self) -> None:
        self._memory = {}

    async def _get(self, key: str) -> Any:
        store = getattr(self, "asset_state_store", None)
        if store is not None:
            return await store.aget(key, None)
        return self._memory.get(key)

    async def _set(self, key: str, value: Any) -> None:
        store = getattr(self, "asset_state_store", None)
        if store is not None:
            await store.aset(key, value)
        self._memory[key] = value
