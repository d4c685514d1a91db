"""Example: Conveyor's training pipeline as a task group inside a DAG of your own.

Like Cosmos's ``DbtTaskGroup``: your tasks run first (here one that would land new rows),
then the whole training pipeline of ``example_breast_cancer`` — resolve inputs, pull,
validate, train, evaluate, gate, register, deploy — as the group ``conveyor_train``. The
DAG keeps its own schedule; ``pipeline_params()`` adds the optional run Params (data
revision, force, gate override) the group reads.
"""

from datetime import datetime

from airflow.sdk import DAG, task

from conveyor_airflow.example_dags import example_pipelines_dir
from conveyor_airflow.factory import build_pipeline_task_group, pipeline_params

with DAG(
    dag_id="example_conveyor_task_group",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params=pipeline_params(),
    tags=["conveyor", "example"],
):

    @task
    def land_new_rows() -> str:
        """Your ETL: here it only says what it would do."""
        return "new rows would be exported to the data registry here"

    land_new_rows() >> build_pipeline_task_group(
        "example_breast_cancer", group_id="conveyor_train", pipelines_dir=example_pipelines_dir()
    )
