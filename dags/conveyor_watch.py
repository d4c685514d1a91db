"""Optional sensor-based data watchers, one DAG per pipeline (paused at creation).

The default is the asset watcher on each training DAG; see the README ("Retraining").
"""

from conveyor_airflow.factory import build_per_pipeline, build_watch_dag

globals().update(build_per_pipeline(build_watch_dag, kind="watcher"))
