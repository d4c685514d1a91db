"""Monitoring end to end: a real model service, its real prediction log, the monitor DAG.

One pipeline (``monitor_bc``: the breast-cancer data under its own path in the session's
data registry, a fast logistic regression) is trained once with ``dag.test()``; a service
process serves it on a free loopback port. Then, in order:

1. no predictions yet → "not enough data", nothing requested;
2. normal traffic → stable, no retraining;
3. drifted traffic while the registry holds only the data production was trained on →
   "drift detected, no new training data", no retraining;
4. new data lands, drift persists → the monitor records an event on the pipeline's data
   asset with the revision and the drift reason, and the training DAG is queued on it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml
from serving_helpers import REPO, ServiceProcess

from conveyor.data.registry import publish_file
from conveyor.monitoring.checks import prediction_log_dir
from conveyor.serving.prediction_log import read_prediction_log
from conveyor_runtime.datasets import dataset_frame
from conveyor_runtime.traffic import send_traffic

pytestmark = pytest.mark.e2e

NAME = "monitor_bc"
DATA_PATH = "data/monitor_bc.csv"


def publish(settings, frame, tmp: Path, message: str) -> str:
    csv = tmp / "monitor_bc.csv"
    frame.to_csv(csv, index=False)
    return publish_file(settings.data_registry, DATA_PATH, csv, message=message)


@pytest.fixture(scope="module")
def env(airflow_db, demo_registry, settings, tmp_path_factory):
    """Pipeline YAML + DAG files, data v1, production v1 and the service process."""
    raw = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    raw.update(
        name=NAME,
        description="Monitoring E2E",
        data={"path": DATA_PATH, "rev": "main"},
        model={
            "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 5000},
        },
        monitor={"min_rows": 100, "window_hours": 2, "drift_share": 0.1},
        tags=["test"],
    )
    (settings.pipelines_dir / f"{NAME}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    (dags / f"{NAME}.py").write_text(
        f'from conveyor_airflow.factory import build_pipeline_dag\n\ndag = build_pipeline_dag("{NAME}")\n'
    )
    tmp = tmp_path_factory.mktemp("monitor")
    publish(settings, dataset_frame("breast_cancer"), tmp, "monitor_bc v1")

    from conveyor_airflow.factory import build_pipeline_dag

    run = build_pipeline_dag(NAME).test()
    assert str(run.state) in ("success", "DagRunState.SUCCESS"), "training v1 failed"
    service = ServiceProcess(NAME, env={"CONVEYOR_SERVE_POLL_SECONDS": "2"})
    service.start(tmp / "service.log", timeout=300)
    try:
        yield settings, service, tmp
    finally:
        service.stop()


def run_monitor():
    from conveyor_airflow.factory import build_monitor_dag

    dag_run = build_monitor_dag(NAME).test()
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    states = {k: str(getattr(ti.state, "value", ti.state)) for k, ti in tis.items()}
    outcome = tis["check_drift"].xcom_pull(task_ids="check_drift")
    return dag_run, states, outcome


def logged(settings) -> int:
    return len(read_prediction_log(prediction_log_dir(settings, NAME)))


def traffic(settings, service, rows: int, *, drift: bool, seed: int) -> None:
    before = logged(settings)
    counts = send_traffic(service.url, "breast_cancer", rows, drift=drift, seed=seed)
    assert counts == {"sent": rows, "failed": 0, "drift": int(drift)}
    deadline = time.monotonic() + 30
    while logged(settings) < before + rows and time.monotonic() < deadline:
        time.sleep(0.3)  # the service's log writer flushes every second
    assert logged(settings) == before + rows


def asset_events_from_monitor():
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == f"conveyor_data_{NAME}")
            .where(AssetEvent.source_dag_id == f"conveyor_monitor_{NAME}")
        ).scalars()
        return [dict(event.extra or {}) for event in rows]


def test_empty_window_is_not_enough_data(env):
    _, states, outcome = run_monitor()
    assert states == {"check_drift": "success", "request_retraining": "skipped"}
    assert outcome["status"] == "not_enough_data"
    assert "not enough data: 0 predictions" in outcome["message"]
    assert outcome["production_version"] == "1"
    assert asset_events_from_monitor() == []


def test_normal_traffic_is_stable(env):
    settings, service, _ = env
    traffic(settings, service, 300, drift=False, seed=1)
    _, states, outcome = run_monitor()
    assert states == {"check_drift": "success", "request_retraining": "skipped"}
    assert outcome["status"] == "stable", outcome["message"]
    assert outcome["rows"] == 300
    assert outcome["drift"]["drifted"] == [] or not outcome["drift"]["dataset_drift"]
    report = json.loads(Path(outcome["report_files"]["drift.json"]).read_text())
    assert report["dataset_drift"] is False
    assert asset_events_from_monitor() == []


def test_drift_without_new_data_does_not_retrain(env):
    settings, service, _ = env
    traffic(settings, service, 1200, drift=True, seed=2)
    _, states, outcome = run_monitor()
    assert states == {"check_drift": "success", "request_retraining": "skipped"}
    assert outcome["status"] == "no_new_data", outcome["message"]
    assert "No new training data" in outcome["message"]
    shifted = {"mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness"}
    assert shifted & set(outcome["drift"]["drifted"]) == shifted
    page = Path(outcome["report_files"]["index.html"]).read_text()
    assert "mean radius" in page and "DRIFT" in page
    assert Path(outcome["report_files"]["feature-mean_area.png"]).exists()
    assert asset_events_from_monitor() == []


def test_drift_with_new_data_requests_retraining_on_it(env):
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select, update

    from conveyor.data.source import read_tracked_md5

    settings, _, tmp = env
    with create_session() as session:  # Airflow queues runs for unpaused DAGs only
        session.execute(
            update(DagModel).where(DagModel.dag_id == f"train_{NAME}").values(is_paused=False)
        )
    new = dataset_frame("breast_cancer").sample(frac=0.9, random_state=7)
    sha = publish(settings, new, tmp, "monitor_bc v2")
    md5 = read_tracked_md5(settings.data_registry, DATA_PATH, sha)
    _, states, outcome = run_monitor()
    assert states == {"check_drift": "success", "request_retraining": "success"}
    assert outcome["status"] == "retrain"
    payload = outcome["retrain_payload"]
    assert (payload["rev"], payload["md5"], payload["path"]) == (sha, md5, DATA_PATH)
    [event] = asset_events_from_monitor()
    assert event["payload"]["rev"] == sha
    assert event["payload"]["reason"].startswith("monitor: dataset drift")
    # The scheduler turns this queue entry into a train_monitor_bc run on that revision.
    with create_session() as session:
        queued = (
            session.execute(
                select(AssetDagRunQueue.target_dag_id)
                .join(AssetModel, AssetDagRunQueue.asset_id == AssetModel.id)
                .where(AssetModel.name == f"conveyor_data_{NAME}")
            )
            .scalars()
            .all()
        )
    assert f"train_{NAME}" in queued


sys.path.insert(0, str(REPO / "tests"))


def test_overview_shows_the_last_drift_check(env):
    from conveyor.overview import pipeline_overview

    settings, _, _ = env
    entry = next(e for e in pipeline_overview(settings) if e["name"] == NAME)
    last = entry["last_drift_check"]
    assert last["status"] == "retrain" and last["alarm"] is True
    assert last["report_uri"].endswith("/report/index.html")
