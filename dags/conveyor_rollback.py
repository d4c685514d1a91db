"""Manual rollback of a model's ``production`` alias, triggered from the UI with Params."""

from conveyor_airflow.factory import build_rollback_dag

dag = build_rollback_dag()
