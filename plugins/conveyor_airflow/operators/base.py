"""Shared plumbing of Conveyor operators: config, settings, artifacts, error translation.

Operators hold no ML logic: each parses its arguments, calls one ``conveyor`` function
and returns a small JSON-safe dict as its XCom. Expected failures raised by the core
(``conveyor.errors``) are translated here, once, into clear task failures.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from conveyor_airflow.compat import AirflowException, AirflowFailException
from conveyor_airflow.lineage import OpenLineageMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from conveyor.artifacts import RunArtifacts
    from conveyor.config import PipelineConfig
    from conveyor.settings import Settings

#: Thread-pool variables bound to the task's slots so BLAS/OpenMP never oversubscribe.
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def as_bool(value: Any) -> bool:
    """A templated boolean Param arrives as a string ("True"/"False"); read it as a bool."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


class PipelineMixin:
    """``settings`` and the ``config`` of the pipeline, loaded lazily at run time (never in
    ``__init__``: DAG parsing must not read more than the factory already did).

    The config comes from the YAML named ``pipeline`` (under ``pipelines_dir`` or the
    ``[conveyor] pipelines_dir`` setting), or from ``pipeline_config``: the same schema as a
    mapping written in the DAG file, for operators used without a YAML.
    """

    pipeline: str | None = None
    #: Folder of the pipeline YAML; ``None`` = the ``[conveyor] pipelines_dir`` setting.
    pipelines_dir: str | None = None
    #: The pipeline config inline (a mapping with the YAML's schema) instead of a YAML.
    pipeline_config: Any = None
    #: MLflow connection; ``None`` = ``[conveyor] mlflow_conn_id`` when that connection
    #: exists, else the ``[conveyor]``/environment settings.
    mlflow_conn_id: str | None = None

    @cached_property
    def settings(self) -> Settings:
        """Locations from the ``[conveyor]`` section, with the MLflow connection's tracking
        URI (and its credentials in this process's environment) when one is configured."""
        import dataclasses

        from conveyor_airflow.config import conf_value, conveyor_settings
        from conveyor_airflow.hooks.mlflow import MlflowHook
        from conveyor_airflow.hooks.model_service import connection_or_none

        settings = conveyor_settings()
        conn_id = self.mlflow_conn_id or conf_value("mlflow_conn_id", "conveyor_mlflow_default")
        hook = connection_or_none(MlflowHook, conn_id)
        if hook is None:
            return settings
        env = hook.env()
        os.environ.update({k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"})
        return dataclasses.replace(settings, mlflow_tracking_uri=env["MLFLOW_TRACKING_URI"])

    @cached_property
    def config(self) -> PipelineConfig:
        from conveyor.config import config_from_mapping, load_pipeline_config

        if self.pipeline_config is not None:
            task_id = getattr(self, "task_id", "?")
            return config_from_mapping(
                self.pipeline_config, source=f"<pipeline_config of {task_id}>"
            )
        if not self.pipeline:
            from conveyor.errors import ConfigError

            raise ConfigError(
                f"Task {getattr(self, 'task_id', '?')} names no pipeline: pass pipeline= (a YAML "
                "under [conveyor] pipelines_dir) or pipeline_config= (the same keys as a dict)"
            )
        return load_pipeline_config(self.pipeline_file)

    @property
    def pipeline_file(self) -> Path:
        from conveyor.config import pipeline_path

        directory = Path(self.pipelines_dir) if self.pipelines_dir else self.settings.pipelines_dir
        return pipeline_path(str(self.pipeline), directory)

    def code_identity(self, context: Context) -> str:
        """This run's code identity (library versions + DAG bundle version, project commit,
        or a hash of the DAG file and pipeline YAML); pinned in XCom by the first task."""
        from conveyor.registry.lineage import code_identity

        dag_run = context.get("dag_run")
        files: list[Any] = [context["dag"].fileloc]
        if self.pipeline_config is None:
            files.append(self.pipeline_file)
        return code_identity(
            self.settings.project_dir,
            bundle_version=getattr(dag_run, "bundle_version", None),
            files=files,
        )


class ConveyorOperator(OpenLineageMixin, PipelineMixin, BaseOperator):
    """Base class: one step of a pipeline.

    :param pipeline: Name of the pipeline YAML under ``[conveyor] pipelines_dir``.
    :param pipelines_dir: Folder of that YAML instead (e.g. one shipped with a package).
    :param pipeline_config: The pipeline's config as a dict (the YAML's keys) instead of a
        YAML file: the operator then needs no file at all.
    :param mlflow_conn_id: A ``conveyor_mlflow`` connection (default
        ``[conveyor] mlflow_conn_id`` if it exists, else ``MLFLOW_TRACKING_URI``/settings).
    """

    template_fields: Sequence[str] = ("pipeline",)
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        pipeline: str | None = None,
        pipelines_dir: str | None = None,
        pipeline_config: Any = None,
        mlflow_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("execution_timeout", timedelta(minutes=30))
        super().__init__(**kwargs)
        if (pipeline is None) == (pipeline_config is None):
            raise ValueError(
                f"{type(self).__name__} {kwargs.get('task_id')!r}: pass exactly one of "
                "pipeline= (a YAML's name) and pipeline_config= (its keys as a dict)"
            )
        self.pipeline = pipeline
        self.pipelines_dir = pipelines_dir
        self.pipeline_config = pipeline_config
        self.mlflow_conn_id = mlflow_conn_id

    @property
    def n_jobs(self) -> int:
        """Parallelism granted to this task: its pool slots."""
        return max(1, int(getattr(self, "pool_slots", 1) or 1))

    def run_artifacts(self, context: Context) -> RunArtifacts:
        from conveyor.artifacts import RunArtifacts

        return RunArtifacts(self.settings.artifact_root, context["dag"].dag_id, context["run_id"])

    def execute(self, context: Context) -> Any:
        from conveyor.errors import ConveyorError, RegistryError
        from conveyor.settings import disable_telemetry

        disable_telemetry()
        for var in _THREAD_VARS:
            os.environ.setdefault(var, str(self.n_jobs))
        logging.getLogger("conveyor").setLevel(logging.INFO)
        try:
            self.conveyor_result = self.run(context)  # OpenLineage reports it (lineage.py)
            return self.conveyor_result
        except RegistryError as exc:
            # The tracking server may come back: let Airflow's retries (with backoff) try again.
            raise AirflowException(str(exc)) from exc
        except ConveyorError as exc:
            # Bad data, bad config, a weak model: retrying cannot help, fail with the reason.
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    def run(self, context: Context) -> Any:
        """The step itself; subclasses implement it."""
        raise NotImplementedError
