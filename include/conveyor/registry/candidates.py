"""A registration step as one call: a model version with its full lineage, idempotent per
(dag_id, run_id), and optionally promoted to ``production``.

The lineage is built here from the upstream steps' results (pull, validation, training,
evaluation, gate), so every orchestrator records the same ~20 facts the same way.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.config import PipelineConfig
    from conveyor.settings import Settings

log = logging.getLogger(__name__)

#: Validation facts recorded with a version (the report itself stays in the artifacts).
VALIDATION_FACTS = ("success", "rows", "evaluated", "failed", "docs_uri")
#: Gate facts recorded with a version.
GATE_FACTS = ("passed", "overridden", "override_reason", "reasons")


@dataclass(frozen=True)
class Registration:
    """What a registration step hands downstream (JSON-safe: it travels through XCom)."""

    model_name: str
    version: str
    created: bool
    promoted: bool
    metrics: dict[str, Any]
    model_card: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidate_lineage(
    config: PipelineConfig,
    *,
    data: dict[str, Any],
    validation: dict[str, Any],
    training: dict[str, Any],
    evaluation: dict[str, Any],
    gate: dict[str, Any],
) -> dict[str, str]:
    """The lineage tags of a candidate version, from the upstream steps' results."""
    from conveyor.registry.lineage import cache_key
    from conveyor.registry.models import lineage_tags

    code_rev = data["code_rev"]
    return lineage_tags(
        pipeline=config.name,
        data_repo=data["repo"],
        data_path=data["path"],
        data_rev=data["rev"],
        data_rev_source=data.get("rev_source"),
        data_git_sha=data["git_sha"],
        data_md5=data["md5"],
        validation={k: validation.get(k) for k in VALIDATION_FACTS},
        project_git_rev=code_rev,
        config_hash=config.config_hash(),
        cache_key=cache_key(data["md5"], config.config_hash(), code_rev),
        params=training.get("best_params") or {},
        metrics=evaluation["candidate"],
        gate={k: gate[k] for k in GATE_FACTS},
        estimator=config.model.estimator,
        reference_profile=training.get("reference_profile"),
        trigger_reason=data.get("trigger_reason"),
    )


def register_candidate(
    config: PipelineConfig,
    settings: Settings,
    *,
    data: dict[str, Any],
    validation: dict[str, Any],
    training: dict[str, Any],
    evaluation: dict[str, Any],
    gate: dict[str, Any],
    dag_id: str,
    run_id: str,
    promote_to_production: bool = False,
) -> Registration:
    """Register the trained model as a version of ``config.model_name`` with its lineage.

    A retried step finds the version its earlier attempt created (same dag_id, run_id).
    With ``promote_to_production`` (pipelines without a deploy step) ``production`` moves
    to it, recorded as done by ``airflow:<dag_id>``.
    """
    from conveyor.registry import tracking
    from conveyor.registry.models import promote, register_version

    client = tracking.configure(settings)
    tags = candidate_lineage(
        config,
        data=data,
        validation=validation,
        training=training,
        evaluation=evaluation,
        gate=gate,
    )
    version, created = register_version(
        client,
        name=config.model_name,
        model_uri=training["model_uri"],
        mlflow_run_id=training["mlflow_run_id"],
        model_id=training.get("model_id"),
        dag_id=dag_id,
        run_id=run_id,
        tags=tags,
        description=f"{config.description}\nTrained by {dag_id} run {run_id}.",
    )
    from conveyor.cards.card import publish_card
    from conveyor.registry.pin import current_pin, pin_note

    card = publish_card(
        client,
        config,
        settings,
        version=version,
        dag_id=dag_id,
        run_id=run_id,
        data=data,
        validation=validation,
        training=training,
        evaluation=evaluation,
        gate=gate,
    )

    promoted = False
    pin = current_pin(client, config.model_name) if promote_to_production else None
    if pin is not None:
        log.warning("v%s not promoted: %s", version, pin_note(config.model_name, pin))
    elif promote_to_production:
        promoted = promote(
            client,
            config.model_name,
            version,
            reason=f"gate passed in {dag_id}/{run_id}",
            actor=f"airflow:{dag_id}",
        )
    log.info(
        "%s v%s (%s); production %s",
        config.model_name,
        version,
        "new" if created else "reused from an earlier attempt",
        "moved to it" if promoted else "unchanged",
    )
    return Registration(
        model_name=config.model_name,
        version=str(version),
        created=created,
        promoted=promoted,
        metrics=evaluation["candidate"],
        model_card=card,
    )
