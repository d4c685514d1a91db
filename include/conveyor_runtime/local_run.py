"""Run one pipeline's training DAG in-process with ``dag.test()`` (used by `conveyor demo run`).

Prints one machine-readable line ``CONVEYOR_RESULT {json}`` with the run id, its state and
its tasks' states,
so the Airflow-free CLI can summarise the run from MLflow afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def dag_file_for(pipeline: str, dags_folder: str) -> Path | None:
    """The DAG file in ``dags_folder`` that builds ``pipeline``'s training DAG, if any.

    ``dag.test()`` runs the DAG Airflow parsed from its DAG folder; a pipeline YAML without
    a DAG file there fails deep inside Airflow ("the dag is not serialized").
    """
    quoted = (f'"{pipeline}"', f"'{pipeline}'")
    for path in sorted(Path(dags_folder).glob("*.py")):
        text = path.read_text(errors="replace")
        if "build_pipeline_dag" in text and any(q in text for q in quoted):
            return path
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor_runtime.local_run")
    parser.add_argument("pipeline")
    parser.add_argument(
        "--conf", default="{}", help="JSON run conf (Params), e.g. '{\"force\": true}'"
    )
    args = parser.parse_args(argv)

    from conveyor_airflow.factory import build_pipeline_dag

    dag = build_pipeline_dag(args.pipeline)  # a broken YAML fails here, naming the key
    dags_folder = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", "")
    if dags_folder and dag_file_for(args.pipeline, dags_folder) is None:
        print(
            f"error: pipeline {args.pipeline!r} has a YAML but no DAG file in {dags_folder}: "
            f"create {dags_folder}/{args.pipeline}.py with\n"
            "    from conveyor_airflow.factory import build_pipeline_dag\n"
            f'    dag = build_pipeline_dag("{args.pipeline}")\n'
            f"(`conveyor new-pipeline {args.pipeline}` writes both files for a new pipeline)",
            file=sys.stderr,
        )
        return 2
    dag_run = dag.test(run_conf=json.loads(args.conf))
    state = str(getattr(dag_run.state, "value", dag_run.state))
    tasks = {
        ti.task_id: str(getattr(ti.state, "value", ti.state)) if ti.state else None
        for ti in dag_run.get_task_instances()
    }
    print(
        "CONVEYOR_RESULT "
        + json.dumps(
            {"dag_id": dag.dag_id, "run_id": dag_run.run_id, "state": state, "tasks": tasks}
        )
    )
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
