"""DvcUpdateTrigger: notice a new version of a DVC-tracked file in a data registry.

Used two ways: as an ``AssetWatcher`` on a pipeline's data asset (event-driven
scheduling, the default) and as the deferral target of :class:`DvcUpdateSensor`.

It compares the file's current md5 with the last md5 it has *seen*, kept in the
watcher's ``asset_state_store`` (persisted in Airflow's metadata DB). Comparing with a
fixed baseline would fire on every poll, and keeping the value in memory would fire a
spurious run after each triggerer restart (see AIRFLOW3-FACTS). With an empty store the
baseline is the md5 in the production model's lineage; with no production model it
remembers the current data without firing. The new md5 is stored *before* the event is
yielded.

Polling is shared: the watchers of one registry branch in the triggerer make one poll
per interval between them (:mod:`conveyor_airflow.triggers.registry_poll`), and each
fires for its own path only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from conveyor_airflow.triggers.registry_poll import subscribe
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

    async def _baseline(self, seen: str | None) -> str | None:
        """The md5 a change is measured against: the last one this watcher saw (``seen``,
        from the state store), else the given baseline, else production's training data;
        None means "the data as it is at the first poll" (see :meth:`run`).

        That last case (no model yet) remembers the current version without firing: the
        first run of a new pipeline is started by hand or by its schedule, and a watcher
        that fired for data already being trained on queued a second, skipped run.
        """
        if seen:
            return str(seen)
        if self.baseline_md5:
            return self.baseline_md5
        return await asyncio.to_thread(self._production_md5)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if getattr(self, "asset_state_store", None) is None:
            log.info(
                "No asset state store here (Airflow < 3.3, or a sensor's deferral): the last "
                "seen md5 of %s is kept in memory; after a restart the baseline is the data "
                "production was trained on.",
                self.path,
            )
        # The store is read once here; afterwards this trigger, its only writer, knows
        # what it holds (reading it on every poll cost 500 watchers 100 API calls a second).
        stored = await self._get(LAST_MD5_KEY)
        last_error = await self._get(LAST_ERROR_KEY) or ""
        last = await self._baseline(stored)
        log.info(
            "Watching %s@%s in %s (last seen md5 %s, every %.0fs)",
            self.path,
            self.rev,
            self.repo,
            last,
            self.poll_interval,
        )
        # One poll per (registry, branch, interval) for every watcher in this event loop.
        async with subscribe(self.repo, self.rev, self.path, self.poll_interval) as poll:
            while True:
                try:
                    sha, md5 = await poll.next()
                except Exception as exc:  # DataError and anything git throws
                    message = f"{type(exc).__name__}: {exc}"
                    if last_error != message:
                        await self._set(LAST_ERROR_KEY, message)
                        last_error = message
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
                    continue  # the shared poll backs off on a broken registry
                if last_error:
                    await self._set(LAST_ERROR_KEY, "")
                    last_error = ""
                if last is None:  # no model yet: remember the data as it is, no event
                    await self._set(LAST_MD5_KEY, md5)
                    stored = last = md5
                    log.info(
                        "No model yet for %s: watching from its current version (md5 %s); "
                        "new versions start runs, the first run is yours to start",
                        self.path,
                        md5,
                    )
                elif md5 != last:
                    log.info(
                        "New data version: %s md5 %s -> %s at commit %s", self.path, last, md5, sha
                    )
                    await self._set(LAST_MD5_KEY, md5)  # saved before yielding: no re-fire
                    stored = last = md5
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
                elif stored != md5:
                    await self._set(LAST_MD5_KEY, md5)
                    stored = md5
