"""Deployment operators: deploy (contract, smoke test, verified switch) and rollback.

The human approval step lives in :mod:`conveyor_airflow.operators.approval`: it subclasses
the standard provider's ``ApprovalOperator``, whose import (HITL operators and triggers)
only DAGs with ``deploy.require_approval`` should pay at parse time. Its names are still
importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor_airflow.compat import AirflowSkipException
from conveyor_airflow.links import ModelServiceLink, ModelVersionLink, model_version_url, push_link
from conveyor_airflow.operators.base import ConveyorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Names that moved to :mod:`conveyor_airflow.operators.approval` (imported on first use).
_APPROVAL_NAMES = ("ConveyorApprovalOperator", "approval_params")


def __getattr__(name: str) -> Any:
    if name in _APPROVAL_NAMES:
        from conveyor_airflow.operators import approval

        return getattr(approval, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _user(context: Context) -> str:
    """Who triggered the run (the Airflow user), else ``airflow:<dag_id>`` (the audit format of
    :mod:`conveyor.registry.audit`)."""
    from conveyor.registry.audit import run_actor

    dag_run = context.get("dag_run")
    name = getattr(dag_run, "triggering_user_name", None) if dag_run is not None else None
    return run_actor(context["dag"].dag_id, name)


def service_of(task: Any, config: Any) -> tuple[str | None, str | None]:
    """(URL, admin token) of the model service ``task`` verifies against, logged with where
    it came from (see :func:`conveyor_airflow.hooks.model_service.resolve_model_service`)."""
    from conveyor_airflow.config import conf_value
    from conveyor_airflow.hooks.model_service import resolve_model_service

    explicit = getattr(task, "model_service_conn_id", None)
    default = conf_value("model_service_conn_id", "conveyor_model_service_default")
    url, token, source = resolve_model_service(
        service_url=getattr(task, "service_url", None),
        # "none" switches the default connection off (`conveyor demo run` has no service)
        conn_id=explicit or (None if str(default).lower() == "none" else default),
        conn_id_explicit=bool(explicit),
        config_url=config.deploy.service_url,
    )
    task.log.info("Model service: %s (from %s)", url or "none", source)
    return url, token


class DeployModelOperator(ConveyorOperator):
    """Deploy the registered candidate: contract check, smoke test, verified switch.

    Moves ``production`` to the candidate only after its input contract matches
    production's and it passed a smoke test in a separate process; then checks the
    running service serves it and rolls back automatically if not. Every move is audited.

    :param registration: XCom of :class:`RegisterModelOperator`. (templated)
    :param validation: XCom of :class:`DataValidationOperator` (sample rows). (templated)
    :param contract_override_reason: Deploy despite a broken input contract. (templated)
    :param model_service_conn_id: ``conveyor_model_service`` connection of the service to
        verify (URL + admin token). Default: ``[conveyor] model_service_conn_id`` when that
        connection exists. A connection named here must exist.
    :param service_url: Model service URL instead of a connection. (templated)
    :param verify: ``auto`` (verify when a service is configured; an unreachable one fails
        the deploy and production stays), ``always`` (a service must be configured) or
        ``never``; default the config's ``deploy.verify``. (templated)

    With no service configured at all, production moves without a live check and the log,
    the result and the audit record say "no model service configured".
    """

    template_fields: Sequence[str] = (
        *ConveyorOperator.template_fields,
        "registration",
        "validation",
        "contract_override_reason",
        "service_url",
        "verify",
    )
    ui_color = "#9467bd"
    operator_extra_links = (ModelServiceLink(), ModelVersionLink())

    def __init__(
        self,
        *,
        registration: Any,
        validation: Any = None,
        contract_override_reason: str = "",
        model_service_conn_id: str | None = None,
        service_url: str | None = None,
        verify: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.registration = registration
        self.validation = validation
        self.contract_override_reason = contract_override_reason
        self.model_service_conn_id = model_service_conn_id
        self.service_url = service_url
        self.verify = verify

    def on_kill(self) -> None:
        """Airflow kills the task (timeout, marked failed): stop the smoke-test process."""
        from conveyor.children import terminate_children

        stopped = terminate_children()
        self.log.warning("Deploy task killed; stopped child processes %s", stopped)

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.deploy.candidate import deploy_candidate

        cfg = self.config
        name, version = self.registration["model_name"], str(self.registration["version"])
        service_url, admin_token = service_of(self, cfg)
        push_link(context, ModelVersionLink, model_version_url(name, version))
        if service_url:
            push_link(context, ModelServiceLink, f"{service_url}/version")
        validation = self.validation if isinstance(self.validation, dict) else {}
        result = deploy_candidate(
            cfg,
            self.settings,
            name=name,
            version=version,
            user=_user(context),
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            snapshot_uri=validation.get("snapshot_uri"),
            service_url=service_url,
            admin_token=admin_token,
            verify=self.verify,
            contract_override_reason=str(self.contract_override_reason or "") or None,
        )
        if result.get("pinned"):  # a manual rollback holds production: nothing to deploy
            context["ti"].xcom_push(key="return_value", value=result)
            raise AirflowSkipException(result["verification"])
        return result


class RollbackModelOperator(ConveyorOperator):
    """Move ``production`` back to a version that served before; verify; audit.

    :param version: Target version; empty: the previous production version per the audit
        trail. (templated)
    :param reason: Why (required; recorded in the audit trail). (templated)
    :param model_service_conn_id: / :param service_url: / :param verify: as for
        :class:`DeployModelOperator`.
    :param action: ``rollback`` (default; production is pinned to the target afterwards) or
        ``release`` (lift the pin, nothing else). (templated)
    """

    template_fields: Sequence[str] = (
        *ConveyorOperator.template_fields,
        "version",
        "reason",
        "service_url",
        "verify",
        "action",
    )
    ui_color = "#d62728"
    operator_extra_links = (ModelServiceLink(), ModelVersionLink())

    def __init__(
        self,
        *,
        version: Any = "",
        reason: Any = "",
        model_service_conn_id: str | None = None,
        service_url: str | None = None,
        verify: str | None = None,
        action: str = "rollback",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.reason = reason
        self.action = action
        self.model_service_conn_id = model_service_conn_id
        self.service_url = service_url
        self.verify = verify

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.deploy.rollout import rollback
        from conveyor.registry import tracking

        cfg = self.config
        dag_id = context["dag"].dag_id
        if str(self.action or "rollback").strip() == "release":
            return self._release(context)
        version = str(self.version or "").strip()
        if version.lower() in ("none", "null"):
            version = ""
        client = tracking.configure(self.settings)
        service_url, admin_token = service_of(self, cfg)
        result = rollback(
            client,
            name=cfg.model_name,
            version=version or None,
            reason=str(self.reason or "").strip(),
            user=_user(context),
            artifact_root=self.settings.artifact_root,
            service_url=service_url,
            verify=str(self.verify or cfg.deploy.verify),
            timeout=cfg.deploy.verify_timeout_seconds,
            dag_id=dag_id,
            run_id=context["run_id"],
            admin_token=admin_token,
        )
        push_link(context, ModelVersionLink, model_version_url(cfg.model_name, result.version))
        if service_url:
            push_link(context, ModelServiceLink, f"{service_url}/version")
        self.log.info(
            "%s production: v%s -> v%s (%s)",
            cfg.model_name,
            result.previous_version,
            result.version,
            result.verification,
        )
        return result.to_dict()

    def _release(self, context: Context) -> dict[str, Any]:
        from conveyor.errors import DeployError
        from conveyor.registry import tracking
        from conveyor.registry.pin import release_pin

        reason = str(self.reason or "").strip()
        if not reason:
            raise DeployError("Releasing a pin needs a reason; it is recorded in the audit trail")
        pin = release_pin(
            tracking.configure(self.settings),
            self.settings.artifact_root,
            self.config.model_name,
            reason=reason,
            user=_user(context),
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
        )
        self.log.info("Pin of %s: %s", self.config.model_name, pin or "none to release")
        return {"model": self.config.model_name, "released": pin}
