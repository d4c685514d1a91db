"""The monitoring DAG on a real scheduler, triggered through the REST API the way
``conveyor demo traffic`` does it, over a prediction log written by the service's own writer.

Drifted inputs, then the outcome follows the registry: when the newest data is what
production was trained on, the run ends in ``no_new_data`` and starts nothing; otherwise
it requests retraining and the scheduler starts a ``train_breast_cancer`` run whose first
task records the monitor's reason.
"""

from __future__ import annotations

import time

import pytest

from conveyor.monitoring.checks import newest_data, prediction_log_dir
from conveyor.registry import tracking
from conveyor.registry.models import PRODUCTION, version_by_alias
from conveyor.serving.prediction_log import PredictionLog
from conveyor_runtime.cli import trigger_monitor
from conveyor_runtime.traffic import traffic_rows

pytestmark = pytest.mark.system

PIPELINE = "breast_cancer"
MONITOR = f"conveyor_monitor_{PIPELINE}"
TRAIN = f"train_{PIPELINE}"


def xcom(client, dag_id: str, run_id: str, task_id: str) -> dict:
    return client.request(
        "GET",
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
    ).json()["value"]


def test_drifted_traffic_through_the_monitor_dag(airflow_server, settings):
    from conveyor.config import load_pipeline_config, pipeline_path

    _, client = airflow_server
    client.wait_for_dag(TRAIN, timeout=180)
    client.unpause(TRAIN)
    mlflow = tracking.configure(settings)
    production = version_by_alias(mlflow, PIPELINE, PRODUCTION)
    if production is None:  # this module alone: make production first
        run_id = client.trigger(TRAIN, conf={"force": True})
        assert str(client.wait_for_run(TRAIN, run_id, timeout=900).state) == "success"
        production = version_by_alias(mlflow, PIPELINE, PRODUCTION)
    assert production is not None
    log = PredictionLog(prediction_log_dir(settings, PIPELINE), flush_seconds=0.2)
    log.start()
    rows = traffic_rows(PIPELINE, 400, drift=True, seed=5)
    log.submit(
        model=PIPELINE,
        version=str(production.version),
        ids=[f"sys{i}" for i in range(len(rows))],
        inputs=rows,
        predictions=[0] * len(rows),
    )
    log.close()

    config = load_pipeline_config(pipeline_path(PIPELINE, settings.pipelines_dir))
    expect_retrain = newest_data(config, settings)["md5"] != production.tags["conveyor.data_md5"]
    before = {r["dag_run_id"] for r in client.list_runs(TRAIN, limit=50)}

    state, outcome = trigger_monitor(settings, PIPELINE, timeout=600)
    assert state == "success"
    monitor_run = client.list_runs(MONITOR, limit=1)[0]
    assert outcome["drift"]["dataset_drift"] is True
    assert {"mean radius", "mean area"} <= set(outcome["drift"]["drifted"])
    states = {
        ti["task_id"]: ti["state"]
        for ti in client.task_instances(MONITOR, monitor_run["dag_run_id"])
    }
    from_monitor = client.request(
        "GET", "/api/v2/assets/events", params={"source_dag_id": MONITOR}
    ).json()["asset_events"]
    if not expect_retrain:
        assert outcome["status"] == "no_new_data", outcome["message"]
        assert states == {"check_drift": "success", "request_retraining": "skipped"}
        assert from_monitor == []
        return
    assert outcome["status"] == "retrain", outcome["message"]
    assert states == {"check_drift": "success", "request_retraining": "success"}
    [event] = from_monitor
    assert event["extra"]["payload"]["reason"].startswith("monitor: dataset drift")
    deadline = time.monotonic() + 120
    started: list[str] = []
    while time.monotonic() < deadline and not started:
        started = [
            r["dag_run_id"]
            for r in client.list_runs(TRAIN, limit=50)
            if r["dag_run_id"] not in before and monitor_event_in(client, r["dag_run_id"])
        ]
        time.sleep(1)
    assert started, "the monitor's asset event started no training run"
    client.wait_for_run(TRAIN, started[0], timeout=900)
    inputs = xcom(client, TRAIN, started[0], "resolve_inputs")
    assert inputs["trigger_reason"].startswith("monitor: dataset drift")


def monitor_event_in(client, run_id: str) -> bool:
    """Whether the training run was triggered (also) by the monitor's asset event."""
    events = client.request(
        "GET", f"/api/v2/dags/{TRAIN}/dagRuns/{run_id}/upstreamAssetEvents"
    ).json()["asset_events"]
    return any(e.get("source_dag_id") == MONITOR for e in events)
