"""Daily housekeeping: each pipeline's retention policy (README, "Housekeeping")."""

from conveyor_airflow.factory import build_housekeeping_dag

dag = build_housekeeping_dag()
