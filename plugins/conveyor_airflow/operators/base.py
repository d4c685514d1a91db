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
    """``settings`` and the ``config`` of ``self.pipeline``, loaded lazily at run time
    (never in ``__init__``: DAG parsing must not read more than the factory already did)."""

    pipeline: str
    #: Folder of the pipeline YAML; ``None`` = the ``[conveyor] pipelines_dir`` setting.
    pipelines_dir: str | None = None

    @cached_property
    def settings(self) -> Settings:
        from conveyor_airflow.config import conveyor_settings

        return conveyor_settings()

    @cached_property
    def config(self) -> PipelineConfig:
        from conveyor.config import load_pipeline_config

        return load_pipeline_config(self.pipeline_file)

    @property
    def pipeline_file(self) -> Path:
        from conveyor.config import pipeline_path

        directory = Path(self.pipelines_dir) if self.pipelines_dir else self.settings.pipelines_dir
        return pipeline_path(self.pipeline, directory)

    def code_identity(self, context: Context) -> str:
        """This run's code identity (library versions + DAG bundle version, project commit,
        or a hash of the DAG file and pipeline YAML); pinned in XCom by the first task."""
        from conveyor.registry.lineage import code_identity

        dag_run = context.get("dag_run")
        return code_identity(
            self.settings.project_dir,
            bundle_version=getattr(dag_run, "bundle_version", None),
            files=[context["dag"].fileloc, self.pipeline_file],
        )


class ConveyorOperator(PipelineMixin, BaseOperator):
    """Base class: one pipeline step of the pipeline named ``pipeline``.

    :param pipeline: Name of the pipeline YAML under ``CONVEYOR_PIPELINES_DIR``.
    :param pipelines_dir: Folder of that YAML instead (e.g. one shipped with a package).
    """

    template_fields: Sequence[str] = ("pipeline",)
    ui_color = "#e8f1fb"

    def __init__(self, *, pipeline: str, pipelines_dir: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("execution_timeout", timedelta(minutes=30))
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.pipelines_dir = pipelines_dir

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
            return self.run(context)
        except RegistryError as exc:
            # The tracking server may come back: let Airflow's retries (with backoff) try again.
            raise AirflowException(str(exc)) from exc
        except ConveyorError as exc:
            # Bad data, bad config, a weak model: retrying cannot help, fail with the reason.
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    def run(self, context: Context) -> Any:
        """The step itself; subclasses implement it."""
        raise NotImplementedError
