"""A worker killed with SIGKILL during training, on the session's real scheduler.

The ``slow_bc`` fixture pipeline fits a 2000-tree forest (about 8 s), long enough to be
caught mid-fit. The test kills the LocalExecutor worker that supervises the task *and*
the task process under it, as the OOM killer or a lost node would: nothing is left to
report the failure. The scheduler notices the missing heartbeats (the test session sets
``[scheduler] task_instance_heartbeat_timeout`` to 45 s, default 300 s), Airflow retries
the task, and the run completes. Afterwards:

- exactly one model version exists for the run, made from the retry's MLflow run;
- the killed attempt's MLflow run is not left RUNNING: the retry marked it KILLED;
- every step's manifest names one attempt's prefix, and all its files are there.
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest
from fsspec.core import url_to_fs
from services.tasks import task_processes

from conveyor.artifacts import RunArtifacts, join_url
from conveyor.registry import tracking
from conveyor.registry.lineage import TAG_PREFIX, airflow_run_filter, filter_value

pytestmark = pytest.mark.system

PIPELINE = "slow_bc"
DAG_ID = f"train_{PIPELINE}"
TASK = "train_model"


def task_instance(client, run_id: str, task_id: str) -> dict:
    [ti] = [t for t in client.task_instances(DAG_ID, run_id) if t["task_id"] == task_id]
    return ti


def wait_until_fitting(client, run_id: str, timeout: float = 420) -> dict:
    """The train task instance once its first attempt logged that the fit started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert client.dag_run(DAG_ID, run_id)["state"] in ("queued", "running")
        ti = task_instance(client, run_id, TASK)
        if ti["state"] == "running" and "Fitting" in client.task_log(DAG_ID, run_id, TASK, 1):
            return ti
        assert ti["state"] in (None, "scheduled", "queued", "running"), ti
        time.sleep(1)
    raise AssertionError(f"{TASK} did not start fitting within {timeout} s")


def test_sigkilled_worker_is_retried_and_leaves_one_consistent_result(airflow_server, settings):
    _, client = airflow_server
    client.wait_for_dag(DAG_ID, timeout=180)
    client.unpause(DAG_ID)
    try:
        run_id = client.trigger(DAG_ID, conf={"force": True})
        ti = wait_until_fitting(client, run_id)
        victims = task_processes(ti["id"])
        assert victims, f"no process runs task instance {ti['id']}"
        titles = [" ".join(p.cmdline()) for p in victims]
        assert any("LocalExecutor" in t for t in titles), titles  # the worker, not just the task
        for proc in victims:
            proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=10)

        result = client.wait_for_run(DAG_ID, run_id, timeout=900)
        train = task_instance(client, run_id, TASK)
        assert str(result.state) == "success", result.tasks
        assert (train["state"], train["try_number"]) == ("success", 2), train
    finally:
        client.pause(DAG_ID)

    mlflow = tracking.configure(settings)
    training = client.request(
        "GET",
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK}/xcomEntries/return_value",
    ).json()["value"]
    runs = mlflow.search_runs(
        [training["experiment_id"]],
        filter_string=airflow_run_filter(DAG_ID, run_id),
    )
    by_try = {r.data.tags[f"{TAG_PREFIX}try_number"]: r for r in runs}
    assert sorted(by_try) == ["1", "2"], by_try
    assert by_try["1"].info.status == "KILLED"  # closed by the retry, not left RUNNING
    assert by_try["2"].info.status == "FINISHED"
    assert by_try["2"].info.run_id == training["mlflow_run_id"]

    versions = mlflow.search_model_versions(
        f"name = {filter_value(PIPELINE)} and {airflow_run_filter(DAG_ID, run_id)}"
    )
    assert len(versions) == 1, [v.version for v in versions]
    assert versions[0].run_id == training["mlflow_run_id"]

    artifacts = RunArtifacts(settings.artifact_root, DAG_ID, run_id)
    for step in ("data", "validation", "evaluation"):
        manifest = artifacts.manifest(step)
        assert manifest is not None, f"no manifest for step {step}"
        assert manifest["prefix"].endswith(f"/try-{manifest['attempt']}")
        for rel in manifest["files"]:
            fs, path = url_to_fs(join_url(manifest["prefix"], rel))
            assert fs.exists(path), f"{step}: {rel} named by the manifest is missing"
