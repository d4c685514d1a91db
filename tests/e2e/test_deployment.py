"""Deployment end to end: ``dag.test()`` training runs that deploy to a real service process.

One pipeline (``deploy_bc``, the breast-cancer data with a fast logistic regression)
and one model service process on a free loopback port, shared by the tests in order:

1. a good candidate becomes production and the service reports it;
2. a candidate that crashes on predict (only inside the service) is rolled back
   automatically and the previous version keeps serving;
3. the rollback DAG moves production back to an earlier version; the audit trail
   shows both moves; a version that never served is refused.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from serving_helpers import REPO, ServiceProcess, free_port

from conveyor.registry import audit, tracking
from conveyor.registry.models import PRODUCTION, version_by_alias

pytestmark = pytest.mark.e2e

NAME = "deploy_bc"
FIXTURES = REPO / "tests" / "fixtures"
TOKEN = "e2e-admin-token"
GOOD = {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 5000}}
CRASHING = {"estimator": "crashing_estimator.CrashingClassifier", "params": {"max_iter": 5000}}


def write_pipeline(settings, port: int, model: dict) -> None:
    """(Re)write the test pipeline's YAML; tasks read it when they run."""
    raw = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    raw.update(
        name=NAME,
        description="Deployment E2E",
        model=model,
        deploy={
            "service_url": f"http://127.0.0.1:{port}",
            "verify": "always",
            "verify_timeout_seconds": 60,
            "smoke_rows": 20,
            "latency_budget_ms": 2000,
        },
        tags=["test"],
    )
    (settings.pipelines_dir / f"{NAME}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def env(airflow_db, demo_registry, settings, tmp_path_factory):
    """Pipeline YAML + DAG file, the crashing class trusted, and the service process."""
    import crashing_estimator  # noqa: F401  (tests/fixtures on sys.path below)

    import conveyor.modeling.model_io as model_io

    port = free_port()
    write_pipeline(settings, port, GOOD)
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    (dags / f"{NAME}.py").write_text(
        "from conveyor_airflow.factory import build_pipeline_dag\n\n"
        f'dag = build_pipeline_dag("{NAME}")\n'
    )
    saved = {
        k: os.environ.get(k)
        for k in (
            "PYTHONPATH",
            "CONVEYOR_TEST_TRUST_CRASHING",
            "CONVEYOR_DEPLOY_VERIFY",
            "CONVEYOR_ADMIN_TOKEN",
        )
    }
    saved_trusted = model_io.SKOPS_TRUSTED_TYPES
    os.environ["PYTHONPATH"] = str(FIXTURES)  # smoke-test processes trust the class too
    os.environ["CONVEYOR_TEST_TRUST_CRASHING"] = "1"
    os.environ.pop("CONVEYOR_DEPLOY_VERIFY", None)
    os.environ["CONVEYOR_ADMIN_TOKEN"] = TOKEN
    model_io.SKOPS_TRUSTED_TYPES = (*saved_trusted, "crashing_estimator.CrashingClassifier")
    service = ServiceProcess(
        NAME,
        env={
            "CONVEYOR_ADMIN_TOKEN": TOKEN,
            "CONVEYOR_SERVE_POLL_SECONDS": "2",
            "CONVEYOR_TEST_CRASH_PREDICT": "1",  # the crashing class crashes in the service only
        },
        port=port,
    )
    service.start(tmp_path_factory.mktemp("service") / "service.log", timeout=300)
    try:
        yield settings, tracking.configure(settings), service
    finally:
        service.stop()
        model_io.SKOPS_TRUSTED_TYPES = saved_trusted
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


sys.path.insert(0, str(FIXTURES))


def run_dag(dag, **conf):
    dag_run = dag.test(run_conf=conf)
    states = {
        ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()
    }
    return dag_run, states


def train(**conf):
    from conveyor_airflow.factory import build_pipeline_dag

    return run_dag(build_pipeline_dag(NAME), **conf)


def served(service) -> str:
    return str(httpx.get(f"{service.url}/version", timeout=10).json()["version"])


def production(client) -> str:
    return str(version_by_alias(client, NAME, PRODUCTION).version)


def predict_ok(service) -> bool:
    import pandas as pd

    from conveyor_runtime.datasets import dataset_frame

    frame: pd.DataFrame = dataset_frame("breast_cancer").drop(columns=["target"]).head(2)
    response = httpx.post(
        f"{service.url}/predict", json={"records": frame.to_dict(orient="records")}, timeout=30
    )
    return response.status_code == 200 and len(response.json()["predictions"]) == 2


def test_good_candidate_becomes_production_and_is_served(env):
    settings, client, service = env
    dag_run, states = train()
    assert set(states.values()) == {"success"}, states
    version = production(client)
    assert served(service) == version
    assert predict_ok(service)
    result = dag_run.get_task_instance("deploy_model").xcom_pull(task_ids="deploy_model")
    assert result["verified"] is True and result["version"] == version
    assert result["smoke"]["rows"] == 20
    [event] = audit.list_events(settings.artifact_root, NAME)
    assert (event.action, event.from_version, event.to_version) == ("promote", None, version)
    assert event.run_id == dag_run.run_id and event.details["live_check"] is True
    assert client.get_model_version(NAME, version).tags[audit.LAST_EVENT_TAG] == event.id
    link = dag_run.get_task_instance("deploy_model").xcom_pull(
        task_ids="deploy_model", key="conveyor_url_ModelServiceLink"
    )
    assert link == f"{service.url}/version"


def test_crashing_candidate_is_rolled_back_and_old_version_keeps_serving(env, capfd):
    settings, client, service = env
    before = production(client)
    write_pipeline(settings, service.port, CRASHING)
    try:
        dag_run, states = train(force=True)
    finally:
        write_pipeline(settings, service.port, GOOD)
    assert states["register_model"] == "success"
    assert states["deploy_model"] == "failed", states
    crashed = str(
        dag_run.get_task_instance("register_model").xcom_pull(task_ids="register_model")["version"]
    )
    assert production(client) == before
    assert served(service) == before
    assert predict_ok(service)
    out = capfd.readouterr()
    assert f"Deployment of {NAME} v{crashed} was rolled back" in out.out + out.err
    promote_event, rollback_event = audit.list_events(settings.artifact_root, NAME)[-2:]
    assert (promote_event.action, promote_event.to_version) == ("promote", crashed)
    assert (rollback_event.action, rollback_event.from_version, rollback_event.to_version) == (
        "rollback",
        crashed,
        before,
    )
    assert rollback_event.details["automatic"] is True
    assert rollback_event.details["service_restored"] is True


def test_rollback_dag_moves_production_back(env):
    from conveyor_airflow.factory import build_rollback_dag

    settings, client, service = env
    first = production(client)
    _, states = train(force=True)
    assert set(states.values()) == {"success"}, states
    newer = production(client)
    assert newer != first and served(service) == newer

    # the crashed version never served: refused
    crashed = next(
        e.from_version
        for e in audit.list_events(settings.artifact_root, NAME)
        if e.details.get("automatic")
    )
    _, states = run_dag(
        build_rollback_dag(), pipeline=NAME, version=crashed, reason="try the crashed one"
    )
    assert states["rollback_model"] == "failed"
    assert production(client) == newer

    # default target: the version before the current one per the audit trail
    dag_run, states = run_dag(build_rollback_dag(), pipeline=NAME, reason="e2e rollback test")
    assert states["rollback_model"] == "success", states
    assert production(client) == first
    assert served(service) == first
    assert predict_ok(service)
    events = audit.list_events(settings.artifact_root, NAME)
    moves = [(e.action, e.from_version, e.to_version) for e in events[-3:]]
    # a manual rollback pins production where it put it (conveyor.registry.pin)
    assert moves == [("promote", first, newer), ("rollback", newer, first), ("pin", None, first)]
    rollback = events[-2]
    assert rollback.reason == "e2e rollback test"
    assert rollback.dag_id == "conveyor_rollback" and rollback.run_id == dag_run.run_id
    assert events[-1].reason == "rollback: e2e rollback test"
