"""Operators in a DAG written by hand, as a data engineer would: no pipeline YAML, every
location and secret from Airflow connections, deployed to a real model service process.

The DAG file below is what the README's operator reference shows; the connections are
Airflow connections given as ``AIRFLOW_CONN_*`` variables (any secrets backend works the
same way).
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml
from serving_helpers import ServiceProcess, free_port

from conveyor.registry import audit, tracking
from conveyor.registry.models import PRODUCTION, version_by_alias

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
NAME = "handwritten_bc"
DAG_ID = "handwritten_training"
TOKEN = "handwritten-admin-token"

DAG_FILE = textwrap.dedent(
    '''
    """A training DAG written by hand with Conveyor's operators (no pipeline YAML)."""
    import json
    import os
    from datetime import datetime

    from airflow.sdk import DAG

    from conveyor_airflow.operators import (
        DataValidationOperator,
        DeployModelOperator,
        DvcPullOperator,
        EvaluateModelOperator,
        ModelGateOperator,
        RegisterModelOperator,
        ResolveInputsOperator,
        TrainModelOperator,
    )

    SPEC = json.loads(os.environ["HANDWRITTEN_SPEC"])  # the test's dict; in a real DAG: a literal

    with DAG("handwritten_training", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        spec = {"pipeline_config": SPEC, "mlflow_conn_id": "hand_mlflow"}
        inputs = ResolveInputsOperator(
            task_id="resolve_inputs", dvc_conn_id="hand_registry", force=True, **spec
        )
        pull = DvcPullOperator(
            task_id="pull_data", inputs=inputs.output, dvc_conn_id="hand_registry", **spec
        )
        validate = DataValidationOperator(task_id="validate_data", data=pull.output, **spec)
        train = TrainModelOperator(
            task_id="train_model", data=pull.output, validation=validate.output, **spec
        )
        evaluate = EvaluateModelOperator(
            task_id="evaluate_model", validation=validate.output, training=train.output, **spec
        )
        gate = ModelGateOperator(task_id="gate", evaluation=evaluate.output, **spec)
        register = RegisterModelOperator(
            task_id="register_model",
            data=pull.output,
            validation=validate.output,
            training=train.output,
            evaluation=evaluate.output,
            gate=gate.output,
            promote=False,  # a deploy step follows: only a verified deployment moves production
            **spec,
        )
        DeployModelOperator(
            task_id="deploy_model",
            registration=register.output,
            validation=validate.output,
            model_service_conn_id="hand_service",
            verify="auto",
            **spec,
        )
    '''
)


def spec() -> dict:
    """The pipeline config as a dict: the demo's keys minus everything about locations."""
    raw = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    raw.update(name=NAME, description="Hand-written DAG", tags=["test"])
    raw["model"] = {
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 5000},
    }
    raw["deploy"] = {"verify_timeout_seconds": 60, "smoke_rows": 20, "latency_budget_ms": 2000}
    raw["data"].pop("repo", None)
    return raw


def connection(**fields) -> str:
    return json.dumps({k: v for k, v in fields.items() if v is not None})


@pytest.fixture(scope="module")
def env(airflow_db, demo_registry, settings, tmp_path_factory):
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    (dags / "handwritten_training.py").write_text(DAG_FILE)
    port = free_port()
    variables = {
        "HANDWRITTEN_SPEC": json.dumps(spec()),
        "AIRFLOW_CONN_HAND_REGISTRY": connection(
            conn_type="conveyor_dvc", host=settings.data_registry
        ),
        "AIRFLOW_CONN_HAND_MLFLOW": connection(
            conn_type="conveyor_mlflow", extra={"tracking_uri": settings.mlflow_tracking_uri}
        ),
        "AIRFLOW_CONN_HAND_SERVICE": connection(
            conn_type="conveyor_model_service", host="127.0.0.1", port=port, password=TOKEN
        ),
    }
    saved = {k: os.environ.get(k) for k in [*variables, "CONVEYOR_DEPLOY_VERIFY"]}
    os.environ.update(variables)
    os.environ.pop("CONVEYOR_DEPLOY_VERIFY", None)  # the suite's "never": here we verify
    service = ServiceProcess(
        NAME, env={"CONVEYOR_ADMIN_TOKEN": TOKEN, "CONVEYOR_SERVE_POLL_SECONDS": "2"}, port=port
    )
    service.start(tmp_path_factory.mktemp("hand-service") / "service.log", timeout=300)
    try:
        yield settings, tracking.configure(settings), service
    finally:
        service.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert not {k: v for k, v in bag.import_errors.items() if "handwritten" in k}
    dag_run = bag.get_dag(DAG_ID).test()
    return dag_run, {
        ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()
    }


def test_handwritten_dag_trains_and_deploys_to_a_live_service(env):
    settings, client, service = env
    assert not (settings.pipelines_dir / f"{NAME}.yaml").exists()  # no YAML anywhere
    _, states = run_dag()
    assert set(states.values()) == {"success"}, states
    production = version_by_alias(client, NAME, PRODUCTION)
    assert production is not None
    deployment = json.loads(production.tags["conveyor.deployment"])
    assert deployment["verified"] is True, deployment
    assert deployment["service_url"] == service.url
    import httpx

    assert str(httpx.get(f"{service.url}/version", timeout=10).json()["version"]) == str(
        production.version
    )


def test_handwritten_dag_fails_clearly_on_a_dead_service(env, capfd):
    settings, client, _ = env
    before = version_by_alias(client, NAME, PRODUCTION)
    assert before is not None, "runs after the live-service test"
    dead = free_port()
    os.environ["AIRFLOW_CONN_HAND_SERVICE"] = connection(
        conn_type="conveyor_model_service", host="127.0.0.1", port=dead, password=TOKEN
    )
    _, states = run_dag()
    assert states["register_model"] == "success" and states["deploy_model"] == "failed", states
    out = capfd.readouterr()
    assert f"No model service answers at http://127.0.0.1:{dead}" in out.out + out.err
    assert str(version_by_alias(client, NAME, PRODUCTION).version) == str(before.version)
    last = audit.list_events(settings.artifact_root, NAME)[-1]
    assert last.action == "rejected" and str(dead) in last.reason


def test_training_as_a_task_group_after_your_own_task(env):
    """The packaged task-group example: an ETL task, then the whole pipeline as a group."""
    import shutil

    from airflow.dag_processing.dagbag import DagBag

    import conveyor_airflow.example_dags as examples

    _, client, _ = env
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    source = Path(examples.__file__).with_name("example_conveyor_task_group.py")
    shutil.copy(source, dags / source.name)
    bag = DagBag(dag_folder=str(dags))
    dag = bag.get_dag("example_conveyor_task_group")
    assert dag is not None, bag.import_errors
    group = [t for t in dag.task_ids if t.startswith("conveyor_train.")]
    assert "conveyor_train.deploy_model" in group and len(group) == 8
    first = dag.get_task("conveyor_train.resolve_inputs")
    assert first.upstream_task_ids == {"land_new_rows"}
    dag_run = dag.test()
    states = {
        ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()
    }
    assert set(states.values()) == {"success"}, states
    production = version_by_alias(client, "example_breast_cancer", PRODUCTION)
    assert production is not None and production.tags["conveyor.dag_id"] == dag.dag_id
