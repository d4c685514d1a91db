"""Conveyor triggers (run in Airflow's triggerer)."""

from conveyor_airflow.triggers.config_change import ConfigChangeTrigger
from conveyor_airflow.triggers.dvc_update import DvcUpdateTrigger

__all__ = ["ConfigChangeTrigger", "DvcUpdateTrigger"]
