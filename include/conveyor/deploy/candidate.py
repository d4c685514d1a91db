"""A deployment step as one call: approval check, input contract, smoke test in its own
process, verified switch of ``production`` (automatic rollback on a failed check), and the
outcome recorded on the version.

The orchestrator supplies who acts, the service to verify and the sample rows' source; the
rules live here.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.config import PipelineConfig
    from conveyor.settings import Settings

log = logging.getLogger(__name__)


def smoke_rows(config: PipelineConfig, name: str, version: str, snapshot_uri: str | None):
    """Rows for the smoke test and the live check: a seeded sample of the validated
    snapshot, else the model's logged input example."""
    from conveyor.deploy.rollout import example_rows, sample_snapshot_rows

    if snapshot_uri:
        from conveyor.artifacts import local_copy

        with local_copy(snapshot_uri) as path:
            return sample_snapshot_rows(
                path, config.feature_columns, n=config.deploy.smoke_rows, seed=config.split.seed
            )
    return example_rows(name, version)


def deploy_candidate(
    config: PipelineConfig,
    settings: Settings,
    *,
    name: str,
    version: str,
    user: str,
    dag_id: str,
    run_id: str,
    snapshot_uri: str | None = None,
    service_url: str | None = None,
    admin_token: str | None = None,
    verify: str | None = None,
    contract_override_reason: str | None = None,
) -> dict[str, Any]:
    """Deploy ``name`` v``version`` (see the module docstring); returns the JSON-safe result.

    While production is pinned (a manual rollback) nothing moves: the result says so and
    carries the pin (``pinned``).

    Raises
    ------
    DeployError
        No approval where one is required, a broken contract, a failed smoke test, an
        unreachable service, or a failed live check (after rolling back).
    """
    from conveyor.deploy.rollout import check_contract, deploy, smoke_test
    from conveyor.errors import DeployError
    from conveyor.registry import tracking
    from conveyor.registry.lineage import TAG_PREFIX
    from conveyor.registry.models import tag_value
    from conveyor.registry.pin import current_pin, pin_note

    client = tracking.configure(settings)
    pin = current_pin(client, name)
    if pin is not None and pin["version"] != str(version):
        note = f"v{version} registered but not deployed: " + pin_note(name, pin)
        log.warning("%s", note)
        return {
            "model": name,
            "version": str(version),
            "previous_version": pin["version"],
            "moved": False,
            "verified": False,
            "verification": note,
            "event_id": None,
            "pinned": pin,
        }
    mv = client.get_model_version(name, version)
    approval = json.loads(mv.tags.get(f"{TAG_PREFIX}approval") or "null")
    if config.deploy.require_approval:
        if not approval or approval.get("decision") != "approved":
            raise DeployError(
                f"{name} v{version} needs an approval (deploy.require_approval) and has "
                f"none recorded (conveyor.approval = {approval}); nothing was deployed"
            )
        user = approval["by"]
    contract = check_contract(client, name, version, override_reason=contract_override_reason)
    rows = smoke_rows(config, name, version, snapshot_uri)
    smoke = None
    if config.deploy.smoke_test:
        smoke = smoke_test(
            f"models:/{name}/{version}", rows, latency_budget_ms=config.deploy.latency_budget_ms
        ).to_dict()
    else:
        log.warning("Smoke test disabled by deploy.smoke_test: false")
    result = deploy(
        client,
        name=name,
        version=version,
        reason=f"deployed by {dag_id}/{run_id} after the gate"
        + (f", approved by {approval['by']}" if approval else ""),
        user=user,
        artifact_root=settings.artifact_root,
        service_url=service_url,
        verify=str(verify or config.deploy.verify),
        rows=rows[:5],
        timeout=config.deploy.verify_timeout_seconds,
        dag_id=dag_id,
        run_id=run_id,
        details={"contract": contract.to_dict(), "smoke": smoke, "approval": approval},
        admin_token=admin_token,
    )
    client.set_model_version_tag(
        name,
        version,
        f"{TAG_PREFIX}deployment",
        tag_value(
            {
                "verified": result.verified,
                "verification": result.verification,
                "event": result.event_id,
                "service_url": service_url,
            }
        ),
    )
    log.info(
        "%s v%s is production (was %s); %s",
        name,
        version,
        f"v{result.previous_version}" if result.previous_version else "none",
        result.verification,
    )
    return {
        **result.to_dict(),
        "contract": contract.to_dict(),
        "smoke": smoke,
        "service_url": service_url,
    }
