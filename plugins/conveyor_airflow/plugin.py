"""Conveyor's Airflow plugin, registered through the ``airflow.plugins`` entry point.

Registered through the entry point, not by living under ``plugins/``: Airflow executes
every ``.py`` under its plugins folder as a top-level module named after the file, which
would load this package twice and shadow libraries (see DESIGN: the plugins folder trap).

It adds the operators' extra links (MLflow run, model version, Data Docs, model service),
a FastAPI app at ``/conveyor`` (overview page and run reports, behind Airflow's login and
per-DAG read access: :mod:`conveyor_airflow.ui_auth`) and an external view "Conveyor" in
the navigation bar pointing at that page.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from conveyor_airflow.links import (
    DataDocsLink,
    DriftReportLink,
    MlflowRunLink,
    ModelServiceLink,
    ModelVersionLink,
)


def _fastapi_app() -> dict[str, Any]:
    from conveyor_airflow.ui_app import URL_PREFIX, app

    return {"app": app, "url_prefix": URL_PREFIX, "name": "Conveyor"}


class _FastAPIApps:
    """``fastapi_apps``, built when first read. Every task process loads the plugins (for
    their macros) before ``execute()``, but only the api-server reads this attribute; the
    app's imports (Airflow's API security and app modules) cost each task ~0.5-0.9 s when
    they ran at import (bench/parse_cost.py, "plugins load")."""

    def __get__(self, instance: object, owner: type | None = None) -> list[dict[str, Any]]:
        return [_fastapi_app()]


class ConveyorPlugin(AirflowPlugin):
    """Extra links, the /conveyor app and its navigation entry."""

    name = "conveyor"
    operator_extra_links: ClassVar[list[Any]] = [
        MlflowRunLink(),
        ModelVersionLink(),
        DataDocsLink(),
        DriftReportLink(),
        ModelServiceLink(),
    ]
    fastapi_apps = _FastAPIApps()
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Conveyor pipelines",
            "href": "/conveyor/",
            "destination": "nav",
            "category": "browse",
            "url_route": "conveyor",
        }
    ]
