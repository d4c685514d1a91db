"""RegisterModelOperator: a model version with full lineage, then the aliases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor_airflow.links import (
    MlflowRunLink,
    ModelCardLink,
    ModelServiceLink,
    ModelVersionLink,
    artifact_href,
    mlflow_run_url,
    model_version_url,
    push_link,
)
from conveyor_airflow.operators.base import ConveyorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class RegisterModelOperator(ConveyorOperator):
    """Register the gated candidate once per run (idempotent), alias it, promote it.

    In the training DAG the deployment step moves ``production`` (after approval, a
    smoke test and a verified switch), so the factory passes ``promote=False`` and only
    ``candidate`` is set here. ``promote=True`` (the default, for DAGs without a deploy
    task) moves ``production`` straight after a passing gate (DESIGN: Aliases).

    :param data: XCom of :class:`DvcPullOperator`. (templated)
    :param validation: XCom of :class:`DataValidationOperator`. (templated)
    :param training: XCom of :class:`TrainModelOperator`. (templated)
    :param evaluation: XCom of :class:`EvaluateModelOperator`. (templated)
    :param gate: XCom of :class:`ModelGateOperator`. (templated)
    :param promote: Move the ``production`` alias after registering.
    """

    template_fields: Sequence[str] = (
        *ConveyorOperator.template_fields,
        "data",
        "validation",
        "training",
        "evaluation",
        "gate",
    )
    ui_color = "#43c6ac"
    operator_extra_links = (
        ModelVersionLink(),
        MlflowRunLink(),
        ModelServiceLink(),
        ModelCardLink(),
    )

    def __init__(
        self,
        *,
        data: Any,
        validation: Any,
        training: Any,
        evaluation: Any,
        gate: Any,
        promote: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data = data
        self.validation = validation
        self.training = training
        self.evaluation = evaluation
        self.gate = gate
        self.promote = promote

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.registry.candidates import register_candidate
        from conveyor_airflow.operators.deploy import service_of

        cfg = self.config
        registration = register_candidate(
            cfg,
            self.settings,
            data=self.data,
            validation=self.validation,
            training=self.training,
            evaluation=self.evaluation,
            gate=self.gate,
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            promote_to_production=bool(self.promote),
        )
        push_link(
            context, ModelVersionLink, model_version_url(cfg.model_name, registration.version)
        )
        if self.training.get("experiment_id"):
            push_link(
                context,
                MlflowRunLink,
                mlflow_run_url(self.training["experiment_id"], self.training["mlflow_run_id"]),
            )
        push_link(
            context,
            ModelCardLink,
            artifact_href(registration.model_card, self.settings.artifact_root),
        )
        service_url, _ = service_of(self, cfg)
        if service_url:
            push_link(context, ModelServiceLink, f"{service_url}/version")
        return registration.to_dict()
