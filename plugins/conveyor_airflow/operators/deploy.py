"""Deployment operators: human approval, deploy (contract, smoke test, verified switch), rollback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Param

from conveyor_airflow.compat import AirflowSkipException
from conveyor_airflow.config import conveyor_settings
from conveyor_airflow.links import ModelServiceLink, ModelVersionLink, model_version_url, push_link
from conveyor_airflow.operators.base import ConveyorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


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


def approval_params() -> dict[str, Param]:
    """The form the approver fills in: a comment (recorded with the decision)."""
    return {
        "comment": Param(
            "",
            type="string",
            title="Comment",
            description="Why (recorded on the model version and in the audit trail).",
            source="task",
        )
    }


class ConveyorApprovalOperator(ApprovalOperator):
    """Wait for a person to approve or reject deploying the registered candidate.

    Airflow's :class:`ApprovalOperator` with one ``comment`` field; the answer (decision,
    approver, comment) is recorded on the model version as the ``conveyor.approval``
    tag, and a rejection is also written to the audit trail. On Reject the deploy task
    is skipped and nothing changes.

    :param pipeline: Pipeline name.
    :param registration: XCom of :class:`RegisterModelOperator` (its ``.output``). (templated)
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "registration")
    ui_color = "#f6a623"

    def __init__(self, *, pipeline: str, registration: Any, **kwargs: Any) -> None:
        # Pass approval_params() explicitly inside a DAG: Airflow merges task params
        # before __init__ runs, so a default set here would be lost there.
        kwargs.setdefault("params", approval_params())
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.registration = registration
        # the upstream task whose XCom is the registration, wherever it sits (task group)
        self.registration_task_id = getattr(
            getattr(registration, "operator", None), "task_id", "register_model"
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        # Record first: on Reject, ApprovalOperator skips the downstream tasks by raising
        # (the task SDK ends the task there), so nothing after its execute_complete runs.
        # HITLOperator's version validates the answer and returns it without skipping.
        answer = HITLOperator.execute_complete(self, context=context, event=event)
        self._record(context, answer)
        return super().execute_complete(context=context, event=event)

    def _record(self, context: Context, ret: dict[str, Any]) -> None:
        """The decision, approver and comment on the model version (and audit on reject)."""
        from conveyor.deploy.rollout import record_approval
        from conveyor.registry import tracking
        from conveyor.settings import disable_telemetry

        disable_telemetry()
        registration = self.registration
        if not isinstance(registration, dict):
            registration = context["ti"].xcom_pull(task_ids=self.registration_task_id)
        from conveyor.registry.audit import airflow_actor, airflow_user

        responder = ret.get("responded_by_user") or {}
        name = (
            responder.get("name") or responder.get("id")
            if isinstance(responder, dict)
            else responder
        )
        # No responder: the approval timed out, which Airflow itself counts as Reject.
        user = airflow_user(str(name)) if name else airflow_actor(context["dag"].dag_id)
        approved = ret["chosen_options"][0] == self.APPROVE
        settings = conveyor_settings()
        record_approval(
            tracking.configure(settings),
            artifact_root=settings.artifact_root,
            name=registration["model_name"],
            version=str(registration["version"]),
            approved=approved,
            user=str(user),
            comment=str((ret.get("params_input") or {}).get("comment") or ""),
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
        )
        self.log.info(
            "Recorded %s of %s v%s by %s",
            "approval" if approved else "rejection",
            registration["model_name"],
            registration["version"],
            user,
        )


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
