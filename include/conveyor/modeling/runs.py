"""A training step as one call: fit on the training rows, log model, params, config and the
drift reference profile to an MLflow run tagged with its lineage.

Kept out of the Airflow operator so any orchestrator (or a notebook) trains the same way;
the operator only passes the run's identity and the upstream results.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from conveyor.config import PipelineConfig
    from conveyor.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedRun:
    """What a training step hands downstream (JSON-safe: it travels through XCom)."""

    mlflow_run_id: str
    experiment_id: str
    model_uri: str
    model_id: str
    best_params: dict[str, Any]
    cv_score: float | None
    train_rows: int
    fit_seconds: float
    reference_profile: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_snapshot(uri: str):
    """The validated Parquet snapshot written by the validation step (read column by
    column: the step's memory peak, see :mod:`conveyor.data.frames`)."""
    from conveyor.artifacts import local_copy
    from conveyor.data.frames import read_parquet_columns

    with local_copy(uri) as path:
        return read_parquet_columns(path)


def read_snapshot_part(uri: str, config: PipelineConfig, part: Literal["train", "test"]):
    """One part of the validated snapshot's split (``split_part(read_snapshot(uri), ...)``,
    the same rows and index) without building the whole frame: the split is computed
    from the target column alone, then only that part's rows are read."""
    import pyarrow.parquet as pq

    from conveyor.artifacts import local_copy
    from conveyor.data.frames import read_parquet_rows
    from conveyor.data.splits import split_indices

    with local_copy(uri) as path:
        target = pq.read_table(path, columns=[config.target]).to_pandas()
        train, test = split_indices(target, config)
        return read_parquet_rows(path, train if part == "train" else test)


def train_and_log(
    config: PipelineConfig,
    settings: Settings,
    *,
    snapshot_uri: str,
    data: dict[str, Any],
    dag_id: str,
    run_id: str,
    try_number: int = 1,
    n_jobs: int = 1,
) -> TrainedRun:
    """Train ``config``'s estimator on the training part of the snapshot and log it.

    ``data`` is the pull step's result (``md5``, ``git_sha``, ``code_rev``). Runs that an
    earlier, killed attempt of the same (dag_id, run_id) left RUNNING are marked KILLED.
    """
    import mlflow
    import yaml

    from conveyor.data.splits import split_part
    from conveyor.modeling.training import log_model, train_model
    from conveyor.monitoring.drift import PROFILE_ARTIFACT, build_profile
    from conveyor.registry import tracking
    from conveyor.registry.models import lineage_tags

    # Keep only the training rows alive: the full frame and the test split would otherwise
    # sit in memory through the fit (peak RSS, bench/memory.py).
    train = split_part(read_snapshot(snapshot_uri), config, "train")
    client = tracking.configure(settings)
    experiment_id = tracking.ensure_experiment(client, config.name, settings)
    tracking.end_abandoned_runs(
        client, experiment_id, dag_id=dag_id, run_id=run_id, try_number=try_number
    )
    tags = lineage_tags(
        pipeline=config.name,
        dag_id=dag_id,
        run_id=run_id,
        try_number=str(try_number),
        data_md5=data["md5"],
        data_git_sha=data["git_sha"],
        config_hash=config.config_hash(),
        project_git_rev=data["code_rev"],
    )
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{dag_id}/{run_id}", tags=tags
    ) as run:
        result = train_model(train, config, n_jobs=n_jobs)
        model_uri = log_model(
            result,
            config,
            input_example=train[config.feature_columns],
            config_yaml=yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
        )
        mlflow.log_metric("train_rows", result.train_rows)
        mlflow.log_metric("fit_seconds", result.fit_seconds)
        # The monitoring DAG compares live inputs with this, never re-pulling the data.
        profile = build_profile(train, config, seed=config.split.seed)
        mlflow.log_dict(profile, PROFILE_ARTIFACT)
    log.info("Logged model %s in MLflow run %s", model_uri, run.info.run_id)
    return TrainedRun(
        mlflow_run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_uri=model_uri,
        model_id=model_uri.removeprefix("models:/"),
        best_params=result.best_params,
        cv_score=result.cv_score,
        train_rows=result.train_rows,
        fit_seconds=round(result.fit_seconds, 3),
        reference_profile=f"runs:/{run.info.run_id}/{PROFILE_ARTIFACT}",
    )
