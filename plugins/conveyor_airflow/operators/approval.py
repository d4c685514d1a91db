"""Human approval before a deployment: Airflow's ``ApprovalOperator`` with a comment field.

Its own module because importing the standard provider's HITL operators (and their
triggers) costs every parse that imports it; the factory imports this module only for
pipelines with ``deploy.require_approval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Param

from conveyor_airflow.config import conveyor_settings

if TYPE_CHECKING:
    from airflow.sdk import Context


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
