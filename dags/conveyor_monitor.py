"""Monitoring DAGs, one per pipeline: drift and live performance -> retraining.

Each runs on its pipeline's ``monitor.schedule``; see the README ("Monitoring").
"""

from conveyor_airflow.factory import build_monitor_dag, build_per_pipeline

globals().update(build_per_pipeline(build_monitor_dag, kind="monitor"))
