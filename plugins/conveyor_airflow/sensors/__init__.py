"""Conveyor sensors."""

from conveyor_airflow.sensors.dvc_update import DvcUpdateSensor

__all__ = ["DvcUpdateSensor"]
