"""Event-driven retraining on a real scheduler + triggerer: a new DVC data version starts
exactly one training run, which pulls exactly that revision; no new data starts none."""

from __future__ import annotations

import os
import time

import pytest

from conveyor_runtime.demo import new_data_version

pytestmark = pytest.mark.system

DAG_ID = "train_breast_cancer"
POLL = float(os.environ["CONVEYOR_WATCH_POLL_SECONDS"])


def asset_runs(client) -> list[dict]:
    return [r for r in client.list_runs(DAG_ID, limit=50) if r.get("run_type") == "asset_triggered"]


def wait_idle(client, timeout: float = 300) -> None:
    """Until no run of the DAG is queued or running (earlier runs, a first watcher fire)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(r["state"] in ("success", "failed") for r in client.list_runs(DAG_ID, limit=50)):
            return
        time.sleep(2)
    pytest.fail(f"{DAG_ID} still busy after {timeout}s: {client.list_runs(DAG_ID, limit=5)}")


def resolved_inputs(client, run_id: str) -> dict:
    resp = client.request(
        "GET",
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/resolve_inputs/xcomEntries/return_value",
    )
    return resp.json()["value"]


def test_new_data_version_starts_exactly_one_run_on_that_revision(airflow_server, settings):
    _, client = airflow_server
    client.wait_for_dag(DAG_ID, timeout=180)
    client.unpause(DAG_ID)
    # Watcher triggers start 10-30 s after unpausing; let a possible first fire settle.
    time.sleep(30 + 3 * POLL)
    wait_idle(client)
    before = {r["dag_run_id"] for r in asset_runs(client)}

    sha, md5 = new_data_version(settings, "breast_cancer", seed=11)
    pushed = time.monotonic()
    new_runs: list[dict] = []
    while time.monotonic() - pushed < 120 and not new_runs:
        new_runs = [r for r in asset_runs(client) if r["dag_run_id"] not in before]
        time.sleep(1)
    assert new_runs, f"no training run started within 120 s of pushing {sha[:10]}"
    latency = time.monotonic() - pushed
    run_id = new_runs[0]["dag_run_id"]
    result = client.wait_for_run(DAG_ID, run_id, timeout=900)
    assert str(result.state) == "success", result.states
    inputs = resolved_inputs(client, run_id)
    assert (inputs["git_sha"], inputs["md5"], inputs["rev_source"]) == (sha, md5, "asset_event")
    print(f"\n[watcher] new data -> run queued in {latency:.1f} s (poll interval {POLL:.0f} s)")

    # Unchanged data: nothing more for several poll intervals.
    time.sleep(5 * POLL + 10)
    later = [r for r in asset_runs(client) if r["dag_run_id"] not in before]
    assert [r["dag_run_id"] for r in later] == [run_id]
