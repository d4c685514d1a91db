"""Conveyor's core library: DVC data, Great Expectations validation, scikit-learn training,
the gate, the MLflow registry, deployment, serving and monitoring. It never imports Airflow:
the provider (``conveyor_airflow``) adapts it to Airflow, the runtime (``conveyor_runtime``)
runs the embedded demo."""

from conveyor.__about__ import __version__

__all__ = ["__version__"]
