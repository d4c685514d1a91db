"""DvcUpdateTrigger: notice a new version of a DVC-tracked file in a data registry.

Used two ways: as an ``AssetWatcher`` on a pipeline's data asset (event-driven
scheduling, the default) and as the deferral target of :class:`DvcUpdateSensor`.

It compares the file's current md5 with the last md5 it has *seen*, kept in the
watcher's ``asset_state_store`` (persisted in Airflow's metadata DB). Comparing with a
fixed baseline would fire on every poll, and keeping the value in memory would fire a
spurious run after each triggerer restart (see AIRFLOW3-FACTS). With an empty store the
baseline is the md5 in the production model's lineage; with no production model it
fires once for the current data. The new md5 is stored *before* the event is yielded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from conveyor_airflow.triggers.state import WatcherState

log = logging.getLogger(__name__)

#: Key of the last seen md5 in the asset state store.
LAST_MD5_KEY = "conveyor.last_seen_md5"
#: Key of the last reported error, so one broken registry reports once, not every poll.
LAST_ERROR_KEY = "conveyor.last_error"


class DvcUpdateTrigger(WatcherState, BaseEventTrigger):
    """Fire when the md5 of ``path`` on branch ``rev`` of ``repo`` changes.

    :param repo: Data registry (git URL or path).
    :param path: DVC-tracked file inside the registry.
    :param rev: Branch (or tag) to follow.
    :param model_name: Registered model whose production lineage gives the first baseline.
    :param tracking_uri: MLflow tracking URI to read that lineage from.
    :param poll_interval: Seconds between polls.
    :param baseline_md5: Starting point when no state store exists (sensor use).
    """

    def __init__(
        self,
        *,
        repo: str,
        path: str,
        rev: str = "main",
        model_name: str = "",
        tracking_uri: str = "",
        poll_interval: float = 10.0,
        baseline_md5: str = "",
    ) -> None:
        super().__init__()
        self.repo = repo
        self.path = path
        self.rev = rev
        self.model_name = model_name
        self.tracking_uri = tracking_uri
        self.poll_interval = float(poll_interval)
        self.baseline_md5 = baseline_md5
        self._init_state()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "repo": self.repo,
                "path": self.path,
                "rev": self.rev,
                "model_name": self.model_name,
                "tracking_uri": self.tracking_uri,
                "poll_interval": self.poll_interval,
                "baseline_md5": self.baseline_md5,
            },
        )

    def _production_md5(self) -> str | None:
        from conveyor.registry.production import alias_tags

        if not (self.model_name and self.tracking_uri):
            return None
        try:
            tags = alias_tags(self.tracking_uri, self.model_name)
        except Exception as exc:  # a down MLflow must not stop the watcher
            log.warning(
                "Cannot read production lineage of %s (%s); treating as none", self.model_name, exc
            )
            return None
        return tags.get("conveyor.data_md5") if tags else None

    def _read(self) -> tuple[str, str]:
        from conveyor.data.source import read_tracked_md5, resolve_rev

        sha = resolve_rev(self.repo, self.rev)
        return sha, read_tracked_md5(self.repo, self.path, sha)

    async def _baseline(self) -> str | None:
        """The md5 a change is measured against: the last one this watcher saw, else the
        given baseline, else production's training data, else the data as it is now.

        The last case (no model yet) remembers the current version without firing: the
        first run of a new pipeline is started by hand or by its schedule, and a watcher
        that fired for data already being trained on queued a second, skipped run.
        """
        seen = await self._get(LAST_MD5_KEY)
        if seen:
            return str(seen)
        if self.baseline_md5:
            return self.baseline_md5
        production = await asyncio.to_thread(self._production_md5)
        if production:
            return production
        try:
            _, current = await asyncio.to_thread(self._read)
        except Exception:  # reported by the poll loop, with backoff
            return None
        await self._set(LAST_MD5_KEY, current)
        log.info(
            "No model yet for %s: watching from its current version (md5 %s); new versions "
            "start runs, the first run is yours to start",
            self.path,
            current,
        )
        return current

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if getattr(self, "asset_state_store", None) is None:
            log.info(
                "No asset state store here (Airflow < 3.3, or a sensor's deferral): the last "
                "seen md5 of %s is kept in memory; after a restart the baseline is the data "
                "production was trained on.",
                self.path,
            )
        last = await self._baseline()
        log.info(
            "Watching %s@%s in %s (last seen md5 %s, every %.0fs)",
            self.path,
            self.rev,
            self.repo,
            last,
            self.poll_interval,
        )
        delay = self.poll_interval
        while True:
            try:
                sha, md5 = await asyncio.to_thread(self._read)
            except Exception as exc:  # DataError and anything git throws
                message = f"{type(exc).__name__}: {exc}"
                if await self._get(LAST_ERROR_KEY) != message:
                    await self._set(LAST_ERROR_KEY, message)
                    log.error("Data watcher for %s failed: %s", self.path, message)
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "repo": self.repo,
                            "path": self.path,
                            "branch": self.rev,
                            "message": message,
                        }
                    )
                # Back off instead of spinning on a broken registry.
                delay = min(delay * 2, self.poll_interval * 10)
                await asyncio.sleep(delay)
                continue
            delay = self.poll_interval
            if await self._get(LAST_ERROR_KEY):
                await self._set(LAST_ERROR_KEY, "")
            if md5 != last:
                log.info(
                    "New data version: %s md5 %s -> %s at commit %s", self.path, last, md5, sha
                )
                await self._set(LAST_MD5_KEY, md5)  # saved before yielding: no re-fire
                last = md5
                yield TriggerEvent(
                    {
                        "status": "changed",
                        "repo": self.repo,
                        "path": self.path,
                        "branch": self.rev,
                        "rev": sha,
                        "md5": md5,
                    }
                )
            elif await self._get(LAST_MD5_KEY) != md5:
                await self._set(LAST_MD5_KEY, md5)
            await asyncio.sleep(self.poll_interval)
