"""Run one pipeline's training DAG in-process with ``dag.test()`` (used by `conveyor demo run`).

Prints one machine-readable line ``CONVEYOR_RESULT {json}`` with the run id, its state and
its tasks' states,
so the Airflow-free CLI can summarise the run from MLflow afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor_runtime.local_run")
    parser.add_argument("pipeline")
    parser.add_argument(
        "--conf", default="{}", help="JSON run conf (Params), e.g. '{\"force\": true}'"
    )
    args = parser.parse_args(argv)

    from conveyor_airflow.factory import build_pipeline_dag

    dag = build_pipeline_dag(args.pipeline)
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
