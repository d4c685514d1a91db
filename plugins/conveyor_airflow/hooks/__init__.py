"""Conveyor hooks: each owns a Connection type, so secrets come from Airflow's
Connections or its secrets backend, never from code or the pipeline YAML."""

from conveyor_airflow.hooks.dvc import DvcRegistryHook
from conveyor_airflow.hooks.mlflow import MlflowHook
from conveyor_airflow.hooks.model_service import ModelServiceHook

__all__ = ["DvcRegistryHook", "MlflowHook", "ModelServiceHook"]
