"""Batch-scoring DAGs, one per pipeline with a ``scoring:`` section (``score_<name>``).

See the README ("Batch scoring").
"""

from conveyor_airflow.scoring_dag import build_score_dags

globals().update(build_score_dags())
