"""Batch-scoring DAGs, one per pipeline with a ``scoring:`` section (``score_<name>``).

See the README ("Batch scoring").
"""

import logging

from conveyor.config import list_pipelines, load_pipeline_config, pipeline_path
from conveyor.errors import ConfigError
from conveyor_airflow.config import conveyor_settings
from conveyor_airflow.scoring_dag import build_score_dag, score_dag_id

_DIR = conveyor_settings().pipelines_dir
for _name in list_pipelines(_DIR):
    try:
        if load_pipeline_config(pipeline_path(_name, _DIR)).scoring is not None:
            globals()[score_dag_id(_name)] = build_score_dag(_name)
    except ConfigError as exc:  # that pipeline's own DAG file shows the error
        logging.getLogger(__name__).warning("No scoring DAG for %s: %s", _name, exc)
