"""RegisterModelOperator: a model version with full lineage, then the aliases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor_airflow.links import (
    MlflowRunLink,
    ModelServiceLink,
    ModelVersionLink,
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
    operator_extra_links = (ModelVersionLink(), MlflowRunLink(), ModelServiceLink())

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
        from conveyor.registry import tracking
        from conveyor.registry.lineage import cache_key
        from conveyor.registry.models import lineage_tags, promote, register_version

        cfg = self.config
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        client = tracking.configure(self.settings)
        code_rev = self.data["code_rev"]
        tags = lineage_tags(
            pipeline=cfg.name,
            data_repo=self.data["repo"],
            data_path=self.data["path"],
            data_rev=self.data["rev"],
            data_rev_source=self.data.get("rev_source"),
            data_git_sha=self.data["git_sha"],
            data_md5=self.data["md5"],
            validation={
                k: self.validation.get(k)
                for k in ("success", "rows", "evaluated", "failed", "docs_uri")
            },
            project_git_rev=code_rev,
            config_hash=cfg.config_hash(),
            cache_key=cache_key(self.data["md5"], cfg.config_hash(), code_rev),
            params=self.training.get("best_params") or {},
            metrics=self.evaluation["candidate"],
            gate={
                "passed": self.gate["passed"],
                "overridden": self.gate["overridden"],
                "override_reason": self.gate["override_reason"],
                "reasons": self.gate["reasons"],
            },
            estimator=cfg.model.estimator,
            reference_profile=self.training.get("reference_profile"),
            trigger_reason=self.data.get("trigger_reason"),
        )
        version, created = register_version(
            client,
            name=cfg.model_name,
            model_uri=self.training["model_uri"],
            mlflow_run_id=self.training["mlflow_run_id"],
            model_id=self.training.get("model_id"),
            dag_id=dag_id,
            run_id=run_id,
            tags=tags,
            description=f"{cfg.description}\nTrained by {dag_id} run {run_id}.",
        )
        push_link(context, ModelVersionLink, model_version_url(cfg.model_name, version))
        if self.training.get("experiment_id"):
            push_link(
                context,
                MlflowRunLink,
                mlflow_run_url(self.training["experiment_id"], self.training["mlflow_run_id"]),
            )
        from conveyor_airflow.operators.deploy import service_of

        service_url, _ = service_of(self, cfg)
        if service_url:
            push_link(context, ModelServiceLink, f"{service_url}/version")
        promoted = False
        if self.promote:
            promoted = promote(
                client,
                cfg.model_name,
                version,
                reason=f"gate passed in {dag_id}/{run_id}",
                actor=f"airflow:{dag_id}",
            )
        self.log.info(
            "%s v%s (%s); production %s",
            cfg.model_name,
            version,
            "new" if created else "reused from an earlier attempt",
            "moved to it" if promoted else "unchanged",
        )
        return {
            "model_name": cfg.model_name,
            "version": version,
            "created": created,
            "promoted": promoted,
            "metrics": self.evaluation["candidate"],
        }
