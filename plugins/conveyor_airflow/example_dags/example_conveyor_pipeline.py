"""Example: a whole training pipeline from one YAML shipped inside the provider.

Copy this file into your DAG folder (or point ``[core] dags_folder`` here) to try Conveyor
without a project: it trains scikit-learn's breast-cancer classifier from the DVC data
registry named by ``[conveyor] data_registry`` (a ``data/breast_cancer.csv`` tracked there).
Your own pipelines live in ``[conveyor] pipelines_dir``; build them the same way with
``build_pipeline_dag("<name>")``.
"""

from conveyor_airflow.example_dags import example_pipelines_dir
from conveyor_airflow.factory import build_pipeline_dag

dag = build_pipeline_dag("example_breast_cancer", pipelines_dir=example_pipelines_dir())
