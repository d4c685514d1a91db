"""TrainModelOperator: fit the configured estimator and log it to MLflow."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from conveyor_airflow.links import MlflowRunLink, mlflow_run_url, push_link
from conveyor_airflow.operators.base import ConveyorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class TrainModelOperator(ConveyorOperator):
    """Train on the training part of the validated snapshot; log params, model, config.

    :param data: XCom of :class:`DvcPullOperator` (lineage of the data). (templated)
    :param validation: XCom of :class:`DataValidationOperator` (``snapshot_uri``). (templated)
    """

    template_fields: Sequence[str] = (*ConveyorOperator.template_fields, "data", "validation")
    ui_color = "#0194e2"
    operator_extra_links = (MlflowRunLink(),)

    def __init__(self, *, data: Any, validation: Any, **kwargs: Any) -> None:
        kwargs.setdefault("execution_timeout", timedelta(hours=2))
        super().__init__(**kwargs)
        self.data = data
        self.validation = validation

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.modeling.runs import train_and_log

        trained = train_and_log(
            self.config,
            self.settings,
            snapshot_uri=self.validation["snapshot_uri"],
            data=self.data,
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            try_number=context["ti"].try_number or 1,
            n_jobs=self.n_jobs,
        )
        push_link(
            context, MlflowRunLink, mlflow_run_url(trained.experiment_id, trained.mlflow_run_id)
        )
        return trained.to_dict()
