"""ConfigChangeTrigger: retrain when a pipeline's config or the Conveyor release changed.

An ``AssetWatcher`` on the pipeline's data asset, opted into per pipeline with
``triggers.on_change: true``. Its arguments are plain literals written at parse time: the
pipeline's config hash (a pure function of the YAML) and the installed Conveyor version.
Editing the YAML or upgrading Conveyor therefore gives a new trigger; re-parsing an
unchanged file gives the same one, and an unrelated commit (a README edit) changes neither.

``run()`` compares that (config hash, Conveyor version) combination with the production
version's lineage tags (``conveyor.config_hash``; ``conveyor.project_git_rev``, whose
first part is ``conveyor-<version>``) and fires **once per new combination**: the
combination is saved in the asset state store before the event is yielded, so neither a
re-parse nor a triggerer restart fires it again. No production model: nothing to compare
with, no event (the data watcher starts the first run). The event's ``reason`` (recorded
as the ``conveyor.trigger_reason`` tag) says which of the two changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from conveyor_airflow.triggers.state import WatcherState

log = logging.getLogger(__name__)

#: Key of the last (config hash, version) combination acted on, in the asset state store.
LAST_COMBINATION_KEY = "conveyor.last_code_combination"


def conveyor_version_of(code_rev: str | None) -> str | None:
    """The Conveyor version in a code identity (``conveyor-0.2.0+sklearn-1.9.1+git.<sha>``)."""
    for part in str(code_rev or "").split("+"):
        if part.startswith("conveyor-"):
            return part.removeprefix("conveyor-")
    return None


def change_reason(tags: dict[str, str], *, config_hash: str, conveyor_version: str) -> str | None:
    """Why production's lineage differs from (config_hash, conveyor_version); None if it
    does not."""
    reasons = []
    prod_hash = tags.get("conveyor.config_hash")
    if prod_hash != config_hash:
        reasons.append(f"pipeline config changed (config hash {prod_hash} -> {config_hash})")
    prod_rev = tags.get("conveyor.project_git_rev", "")
    if not prod_rev.startswith(f"conveyor-{conveyor_version}+"):
        was = conveyor_version_of(prod_rev) or "unknown"
        reasons.append(f"Conveyor changed ({was} -> {conveyor_version})")
    if not reasons:
        return None
    return "; ".join(reasons) + f" since production v{tags.get('version', '?')}"


class ConfigChangeTrigger(WatcherState, BaseEventTrigger):
    """Fire once when (``config_hash``, ``conveyor_version``) differs from production's.

    :param model_name: Registered model whose ``production`` lineage is compared.
    :param tracking_uri: MLflow tracking URI to read that lineage from.
    :param config_hash: The pipeline config's hash (``PipelineConfig.config_hash()``).
    :param conveyor_version: The installed Conveyor version.
    :param poll_interval: Seconds between attempts while production cannot be read.
    """

    def __init__(
        self,
        *,
        model_name: str,
        tracking_uri: str,
        config_hash: str,
        conveyor_version: str,
        poll_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.tracking_uri = tracking_uri
        self.config_hash = config_hash
        self.conveyor_version = conveyor_version
        self.poll_interval = float(poll_interval)
        self._init_state()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "model_name": self.model_name,
                "tracking_uri": self.tracking_uri,
                "config_hash": self.config_hash,
                "conveyor_version": self.conveyor_version,
                "poll_interval": self.poll_interval,
            },
        )

    @property
    def combination(self) -> str:
        return f"{self.config_hash}|conveyor-{self.conveyor_version}"

    def _production_tags(self) -> dict[str, str] | None:
        from conveyor.registry.production import alias_tags

        return alias_tags(self.tracking_uri, self.model_name)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        quiet = False  # log "no production" / errors once, not every poll
        while True:
            if await self._get(LAST_COMBINATION_KEY) == self.combination:
                # Acted on already (fired, or production has it): nothing changes for this
                # trigger instance; a new YAML or release makes a new trigger.
                await asyncio.sleep(self.poll_interval)
                continue
            try:
                tags = await asyncio.to_thread(self._production_tags)
            except Exception as exc:  # a down MLflow must not stop the watcher
                if not quiet:
                    log.warning("Cannot read production lineage of %s: %s", self.model_name, exc)
                quiet = True
                await asyncio.sleep(self.poll_interval)
                continue
            if tags is None:
                if not quiet:
                    log.info(
                        "%s has no production model: no code/config change to act on",
                        self.model_name,
                    )
                quiet = True
                await asyncio.sleep(self.poll_interval)
                continue
            reason = change_reason(
                tags, config_hash=self.config_hash, conveyor_version=self.conveyor_version
            )
            await self._set(LAST_COMBINATION_KEY, self.combination)  # before yielding
            if reason is None:
                log.info("%s production matches config %s", self.model_name, self.combination)
                continue
            log.info("Retraining %s: %s", self.model_name, reason)
            yield TriggerEvent(
                {
                    "status": "code_changed",
                    "reason": reason,
                    "config_hash": self.config_hash,
                    "conveyor_version": self.conveyor_version,
                    "production_version": tags.get("version"),
                }
            )
