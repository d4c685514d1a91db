"""Monitoring DAGs, one per pipeline: drift and live performance -> retraining.

Each runs on its pipeline's ``monitor.schedule``; see the README ("Monitoring").
"""

import logging

from conveyor.config import list_pipelines
from conveyor.errors import ConfigError
from conveyor_airflow.config import conveyor_settings
from conveyor_airflow.factory import build_monitor_dag, monitor_dag_id

for _name in list_pipelines(conveyor_settings().pipelines_dir):
    try:
        globals()[monitor_dag_id(_name)] = build_monitor_dag(_name)
    except ConfigError as exc:  # that pipeline's own DAG file shows the error
        logging.getLogger(__name__).warning("No monitor for %s: %s", _name, exc)
