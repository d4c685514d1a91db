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
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

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

    @cached_property
    def settings(self) -> Settings:
        from conveyor.settings import Settings

        return Settings.from_env()

    @cached_property
    def config(self) -> PipelineConfig:
        from conveyor.config import load_pipeline_config, pipeline_path

        return load_pipeline_config(pipeline_path(self.pipeline, self.settings.pipelines_dir))


class ConveyorOperator(PipelineMixin, BaseOperator):
    """Base class: one pipeline step of the pipeline named ``pipeline``.

    :param pipeline: Name of the pipeline YAML under ``CONVEYOR_PIPELINES_DIR``.
    """

    template_fields: Sequence[str] = ("pipeline",)
    ui_color = "#e8f1fb"

    def __init__(self, *, pipeline: str, **kwargs: Any) -> None:
        kwargs.setdefault("execution_timeout", timedelta(minutes=30))
        super().__init__(**kwargs)
        self.pipeline = pipeline

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
