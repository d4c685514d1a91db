"""Build a training DAG from a pipeline YAML.

A DAG file is two lines::

    from conveyor_airflow.factory import build_pipeline_dag
    dag = build_pipeline_dag("breast_cancer")

This module runs at DAG-parse time, so it imports ``airflow.sdk`` and ``conveyor.config``
only; the operators import pandas, scikit-learn, GX, DVC and MLflow inside ``execute()``.
A broken YAML raises here, which Airflow shows as an import error of that DAG file only.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from conveyor.config import PipelineConfig, load_pipeline_config, pipeline_path
from conveyor.settings import Settings
from conveyor_airflow.operators import (
    DataValidationOperator,
    DvcPullOperator,
    EvaluateModelOperator,
    ModelGateOperator,
    RegisterModelOperator,
    TrainModelOperator,
)

#: Pool that bounds concurrent training on a small machine (created by `conveyor airflow-init`).
TRAINING_POOL = os.environ.get("CONVEYOR_TRAINING_POOL", "conveyor_training")


def training_dag_id(name: str) -> str:
    """DAG id of pipeline ``name``'s training DAG."""
    return f"train_{name}"


def pipeline_params() -> dict[str, Param]:
    """Typed Params shown in the Airflow UI's trigger form."""
    return {
        "data_rev": Param(
            "",
            type="string",
            title="Data revision",
            description="Git branch, tag or commit of the data registry. Empty: the newest "
            "triggering data event, else the tracked branch's head.",
        ),
        "force": Param(
            False,
            type="boolean",
            title="Force retraining",
            description="Retrain even when data, config and code equal production's.",
        ),
        "gate_override": Param(
            False,
            type="boolean",
            title="Override the gate",
            description="Register even if the gate rejects the model (needs a reason).",
        ),
        "override_reason": Param(
            "",
            type="string",
            title="Override reason",
            description="Why the gate is overridden; recorded on the model version.",
        ),
    }


def _doc(config: PipelineConfig, source: Path) -> str:
    return (
        f"### {config.name} ({config.task})\n\n{config.description}\n\n"
        f"Data: `{config.data.path}` at `{config.data.rev}` · estimator "
        f"`{config.model.estimator}` · gate on `{config.metrics.primary}`.\n\n"
        f"Config: `{source}`"
    )


def build_pipeline_dag(name: str, *, pipelines_dir: str | Path | None = None) -> DAG:
    """The training DAG of pipeline ``name``: pull → validate → train → evaluate → gate → register."""
    directory = Path(pipelines_dir) if pipelines_dir else Settings.from_env().pipelines_dir
    source = pipeline_path(name, directory)
    config = load_pipeline_config(source)
    default_args = {
        "owner": "conveyor",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(minutes=30),
    }
    with DAG(
        dag_id=training_dag_id(config.name),
        description=config.description or f"Train {config.name}",
        schedule=config.schedule,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        params=pipeline_params(),
        tags=["conveyor", config.task, *config.tags],
        doc_md=_doc(config, source),
    ) as dag:
        common = {"pipeline": config.name}
        pull = DvcPullOperator(task_id="pull_data", data_rev="{{ params.data_rev }}", **common)
        validate = DataValidationOperator(
            task_id="validate_data", data=pull.output, retries=0, **common
        )
        train = TrainModelOperator(
            task_id="train_model",
            data=pull.output,
            validation=validate.output,
            pool=TRAINING_POOL,
            execution_timeout=timedelta(hours=2),
            **common,
        )
        evaluate = EvaluateModelOperator(
            task_id="evaluate_model", validation=validate.output, training=train.output, **common
        )
        gate = ModelGateOperator(
            task_id="gate",
            evaluation=evaluate.output,
            override="{{ params.gate_override }}",
            override_reason="{{ params.override_reason }}",
            retries=0,
            **common,
        )
        RegisterModelOperator(
            task_id="register_model",
            data=pull.output,
            validation=validate.output,
            training=train.output,
            evaluation=evaluate.output,
            gate=gate.output,
            **common,
        )
    return dag
