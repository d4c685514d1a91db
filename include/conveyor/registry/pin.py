"""A manual rollback pins ``production``: later runs still train, gate and register
candidates, but nothing moves ``production`` until the pin is released.

Without a pin, the next ordinary run after a rollback would see "inputs differ from
production" (production is now the older version) and promote a model on the very data
the rollback turned away from. The pin is a tag on the pinned version (``conveyor.pinned``,
JSON: by, at, reason), so every reader of production's tags (the cheap lookup of the
unchanged-input check, the overview, the CLI) sees it without another query. Pinning and
releasing are audit records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.registry.lineage import TAG_PREFIX

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

PIN_TAG = f"{TAG_PREFIX}pinned"


def pin_from_tags(tags: Mapping[str, str] | None) -> dict[str, Any] | None:
    """The pin recorded in a version's tags (``version`` added), or None."""
    if not tags or not tags.get(PIN_TAG):
        return None
    try:
        pin = json.loads(tags[PIN_TAG])
    except ValueError:
        pin = {"reason": tags[PIN_TAG]}
    return {**pin, "version": str(tags.get("version", pin.get("version", "")))}


def current_pin(client: MlflowClient, name: str) -> dict[str, Any] | None:
    """The pin on ``name``'s production version, or None."""
    from conveyor.registry.models import PRODUCTION, version_by_alias

    production = version_by_alias(client, name, PRODUCTION)
    if production is None:
        return None
    return pin_from_tags({**production.tags, "version": str(production.version)})


def pin_note(name: str, pin: Mapping[str, Any]) -> str:
    """One sentence for logs and results: what holds production, and how to lift it."""
    return (
        f"production of {name} is pinned to v{pin.get('version')} by {pin.get('by')} "
        f"({pin.get('reason')}); release it with `conveyor models release {name}` or the "
        "conveyor_rollback DAG's release action"
    )


def pin_production(
    client: MlflowClient,
    artifact_root: str,
    name: str,
    version: str,
    *,
    reason: str,
    user: str,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Pin ``name``'s production to ``version`` (it must be production already); audited."""
    from conveyor.registry import audit

    pin = {"by": user, "at": datetime.now(UTC).isoformat(), "reason": reason}
    client.set_model_version_tag(name, str(version), PIN_TAG, json.dumps(pin))
    audit.record_event(
        artifact_root,
        model=name,
        action="pin",
        from_version=None,
        to_version=str(version),
        reason=reason,
        user=user,
        dag_id=dag_id,
        run_id=run_id,
        client=client,
    )
    log.info("Pinned %s production to v%s: %s", name, version, reason)
    return {**pin, "version": str(version)}


def release_pin(
    client: MlflowClient,
    artifact_root: str,
    name: str,
    *,
    reason: str,
    user: str,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any] | None:
    """Lift the pin on ``name``'s production (None when there was none); audited."""
    from conveyor.registry import audit

    pin = current_pin(client, name)
    if pin is None:
        log.info("%s production is not pinned; nothing to release", name)
        return None
    client.delete_model_version_tag(name, pin["version"], PIN_TAG)
    audit.record_event(
        artifact_root,
        model=name,
        action="release",
        from_version=pin["version"],
        to_version=None,
        reason=reason,
        user=user,
        dag_id=dag_id,
        run_id=run_id,
        details={"pin": pin},
        client=client,
    )
    log.info("Released the pin of %s production (v%s): %s", name, pin["version"], reason)
    return pin
