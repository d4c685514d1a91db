"""Optional sensor-based data watchers, one DAG per pipeline (paused at creation).

The default is the asset watcher on each training DAG; see the README ("Retraining").
"""

import logging

from conveyor.config import list_pipelines
from conveyor.errors import ConfigError
from conveyor_airflow.config import conveyor_settings
from conveyor_airflow.factory import build_watch_dag, watch_dag_id

for _name in list_pipelines(conveyor_settings().pipelines_dir):
    try:
        globals()[watch_dag_id(_name)] = build_watch_dag(_name)
    except ConfigError as exc:  # that pipeline's own DAG file shows the error
        logging.getLogger(__name__).warning("No watcher for %s: %s", _name, exc)
