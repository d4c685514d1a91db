"""TrainModelOperator: fit the configured estimator and log it to MLflow."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from conveyor_airflow.links import MlflowRunLink, mlflow_run_url, push_link
from conveyor_airflow.operators.base import ConveyorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


def read_snapshot(uri: str):
    """The validated Parquet snapshot written by the validation task (read column by
    column: the task's memory peak, see :mod:`conveyor.data.frames`)."""
    from conveyor.artifacts import local_copy
    from conveyor.data.frames import read_parquet_columns

    with local_copy(uri) as path:
        return read_parquet_columns(path)


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
        import mlflow
        import yaml

        from conveyor.data.splits import split_part
        from conveyor.modeling.training import log_model, train_model
        from conveyor.monitoring.drift import PROFILE_ARTIFACT, build_profile
        from conveyor.registry import tracking
        from conveyor.registry.models import lineage_tags

        cfg = self.config
        # Keep only the training rows alive: the full frame and the test split would
        # otherwise sit in memory through the fit (peak RSS, bench/memory.py).
        train = split_part(read_snapshot(self.validation["snapshot_uri"]), cfg, "train")
        client = tracking.configure(self.settings)
        experiment_id = tracking.ensure_experiment(client, cfg.name, self.settings)
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        try_number = context["ti"].try_number or 1
        tracking.end_abandoned_runs(
            client, experiment_id, dag_id=dag_id, run_id=run_id, try_number=try_number
        )
        tags = lineage_tags(
            pipeline=cfg.name,
            dag_id=dag_id,
            run_id=run_id,
            try_number=str(try_number),
            data_md5=self.data["md5"],
            data_git_sha=self.data["git_sha"],
            config_hash=cfg.config_hash(),
            project_git_rev=self.data["code_rev"],
        )
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"{dag_id}/{run_id}", tags=tags
        ) as run:
            result = train_model(train, cfg, n_jobs=self.n_jobs)
            model_uri = log_model(
                result,
                cfg,
                input_example=train[cfg.feature_columns],
                config_yaml=yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
            )
            mlflow.log_metric("train_rows", result.train_rows)
            mlflow.log_metric("fit_seconds", result.fit_seconds)
            # The monitoring DAG compares live inputs with this, never re-pulling the data.
            profile = build_profile(train, cfg, seed=cfg.split.seed)
            mlflow.log_dict(profile, PROFILE_ARTIFACT)
        self.log.info("Logged model %s in MLflow run %s", model_uri, run.info.run_id)
        push_link(context, MlflowRunLink, mlflow_run_url(experiment_id, run.info.run_id))
        return {
            "mlflow_run_id": run.info.run_id,
            "experiment_id": experiment_id,
            "model_uri": model_uri,
            "model_id": model_uri.removeprefix("models:/"),
            "best_params": result.best_params,
            "cv_score": result.cv_score,
            "train_rows": result.train_rows,
            "fit_seconds": round(result.fit_seconds, 3),
            "reference_profile": f"runs:/{run.info.run_id}/{PROFILE_ARTIFACT}",
        }
