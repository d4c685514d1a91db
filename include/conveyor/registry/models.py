"""Model registry: idempotent registration with full lineage, aliases and promotions.

Registration is keyed by the Airflow run (dag_id, run_id): a retried or cleared task
finds the version it created before instead of creating a second one. Lineage tags go
in the create call itself, so a version never exists without them; the ``candidate``
alias is set next and the ``conveyor.complete`` tag last. Readers ignore versions
without that tag, so a crash in between leaves nothing anyone will serve.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.errors import RegistryError
from conveyor.registry.lineage import TAG_PREFIX, airflow_run_filter, filter_value

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CANDIDATE = "candidate"
PRODUCTION = "production"
COMPLETE_TAG = f"{TAG_PREFIX}complete"
#: MLflow caps tag values; long JSON (validation summaries) is trimmed to fit.
_MAX_TAG = 4900


def tag_value(value: Any) -> str:
    """A tag value: strings as they are, anything else as compact JSON, trimmed to fit."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_TAG else text[: _MAX_TAG - 15] + "...[truncated]"


def lineage_tags(**facts: Any) -> dict[str, str]:
    """``conveyor.<key>`` tags from keyword facts (None values are dropped)."""
    return {f"{TAG_PREFIX}{k}": tag_value(v) for k, v in facts.items() if v is not None}


def find_run_version(
    client: MlflowClient, name: str, dag_id: str, run_id: str
) -> ModelVersion | None:
    """The version an earlier attempt of this Airflow run registered, if any."""
    found = client.search_model_versions(
        f"name = {filter_value(name)} and {airflow_run_filter(dag_id, run_id)}"
    )
    return min(found, key=lambda v: int(v.version)) if found else None


def register_version(
    client: MlflowClient,
    *,
    name: str,
    model_uri: str,
    mlflow_run_id: str,
    dag_id: str,
    run_id: str,
    tags: dict[str, str],
    model_id: str | None = None,
    description: str = "",
) -> tuple[str, bool]:
    """Register ``model_uri`` as a version of ``name`` once per Airflow run.

    Returns
    -------
    version : str
        The version number.
    created : bool
        False when an earlier attempt of the same run had already registered it.
    """
    from mlflow.exceptions import MlflowException

    try:
        existing = find_run_version(client, name, dag_id, run_id)
        if existing is not None:
            log.info(
                "Run %s/%s already registered %s v%s: reusing it",
                dag_id,
                run_id,
                name,
                existing.version,
            )
            version, created = str(existing.version), False
        else:
            try:
                client.create_registered_model(name, tags={f"{TAG_PREFIX}managed": "true"})
            except MlflowException as exc:
                if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                    raise
            all_tags = {
                **tags,
                **lineage_tags(dag_id=dag_id, run_id=run_id, mlflow_run_id=mlflow_run_id),
            }
            mv = client.create_model_version(
                name,
                source=model_uri,
                run_id=mlflow_run_id,
                tags=all_tags,
                description=description,
                model_id=model_id,
            )
            version, created = str(mv.version), True
            log.info("Registered %s v%s with %d lineage tags", name, version, len(all_tags))
        client.set_registered_model_alias(name, CANDIDATE, version)
        client.set_model_version_tag(name, version, COMPLETE_TAG, "true")
    except MlflowException as exc:
        raise RegistryError(f"Registering {name} from {model_uri} failed: {exc}") from exc
    return version, created


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The complete version ``alias`` points to, or None (no model, no alias, incomplete)."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise RegistryError(f"Cannot read alias {alias!r} of {name}: {exc}") from exc
    if mv.tags.get(COMPLETE_TAG) != "true":
        log.warning(
            "%s@%s points to v%s, which is not complete; ignoring it", name, alias, mv.version
        )
        return None
    return mv


def promote(client: MlflowClient, name: str, version: str, *, reason: str, actor: str) -> bool:
    """Point ``production`` at ``version``; returns False if it already did (idempotent)."""
    current = version_by_alias(client, name, PRODUCTION)
    if current is not None and str(current.version) == str(version):
        log.info("%s@production already at v%s", name, version)
        return False
    client.set_registered_model_alias(name, PRODUCTION, str(version))
    client.set_model_version_tag(
        name,
        str(version),
        f"{TAG_PREFIX}promoted",
        tag_value(
            {
                "at": datetime.now(UTC).isoformat(),
                "by": actor,
                "reason": reason,
                "from_version": str(current.version) if current else None,
            }
        ),
    )
    log.info(
        "Promoted %s v%s to production (was %s): %s",
        name,
        version,
        f"v{current.version}" if current else "none",
        reason,
    )
    return True
