"""Operator extra links: buttons on a task instance that open MLflow, Data Docs, the service.

In Airflow 3 the API server does not run operator code to build a link: it reads the URL
from XCom under the link's ``xcom_key``, which the task runner fills after ``execute()``
by calling ``get_link``. Operators record each URL while they run (:func:`push_link`,
under a separate key, because the runner overwrites ``xcom_key``) and ``get_link``
returns that recorded URL.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey


def mlflow_ui_url() -> str:
    """Base URL of the MLflow UI people open (``CONVEYOR_MLFLOW_UI_URL``)."""
    return os.environ.get("CONVEYOR_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")


def artifact_href(url: str | None, artifact_root: str) -> str | None:
    """Where the Conveyor UI plugin serves an artifact URL (None if outside the root)."""
    if not url:
        return None
    root = artifact_root.rstrip("/")
    if not url.startswith(root + "/"):
        return None
    return "/conveyor/artifacts/" + url[len(root) + 1 :]


class _XComLink(BaseOperatorLink):
    """A link whose URL the operator pushed to XCom while it ran."""

    name = "link"

    @classmethod
    def url_key(cls) -> str:
        """XCom key under which the operator records the URL during ``execute()``."""
        return f"conveyor_url_{cls.__name__}"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.bases.xcom import BaseXCom

        value = BaseXCom.get_value(ti_key=ti_key, key=self.url_key())
        return str(value) if value else ""


class MlflowRunLink(_XComLink):
    name = "MLflow run"


class ModelVersionLink(_XComLink):
    name = "Model version"


class DataDocsLink(_XComLink):
    name = "Data Docs"


class DriftReportLink(_XComLink):
    name = "Drift report"


class ModelServiceLink(_XComLink):
    name = "Model service"


class ModelCardLink(_XComLink):
    name = "Model card"


class PipelineOverviewLink(_XComLink):
    name = "Conveyor overview"


def push_link(context: Context, link: type[_XComLink], url: Any) -> None:
    """Record ``url`` for ``link`` on the running task instance (no-op for empty URLs)."""
    ti = context.get("ti")
    if url and ti is not None:
        ti.xcom_push(key=link.url_key(), value=str(url))


def mlflow_run_url(experiment_id: str, run_id: str) -> str:
    return f"{mlflow_ui_url()}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(name: str, version: str) -> str:
    return f"{mlflow_ui_url()}/#/models/{name}/versions/{version}"
