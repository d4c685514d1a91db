"""Training DAG of the breast_cancer pipeline (include/pipelines/breast_cancer.yaml)."""

from conveyor_airflow.factory import build_pipeline_dag

dag = build_pipeline_dag("breast_cancer")
