"""Deployment approval on a real scheduler, answered through the REST API v2 HITL endpoint.

``dag.test()`` cannot answer a human-in-the-loop task, so this runs the ``approve_bc``
fixture pipeline (``deploy.require_approval: true``) on the session's Airflow: the run
registers a candidate, then waits (``awaiting_input``, no worker slot) in ``approve_deployment``.
A Reject with a comment skips the deployment: production does not move, and the decision,
the approver and the comment are recorded on the version and in the audit trail.
"""

from __future__ import annotations

import json
import time

import pytest
from services.tasks import task_processes

from conveyor.registry import audit, tracking
from conveyor.registry.models import PRODUCTION, version_by_alias

pytestmark = pytest.mark.system

PIPELINE = "approve_bc"
DAG_ID = f"train_{PIPELINE}"
TASK = "approve_deployment"


def states(client, run_id: str) -> dict[str, str | None]:
    return {ti["task_id"]: ti["state"] for ti in client.task_instances(DAG_ID, run_id)}


def wait_for_exit_event(supervisor, run_id: str, timeout: float = 120) -> None:
    """Until the scheduler logged that it processed the parking worker's exit event."""
    log = supervisor.logs_dir / "scheduler.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if any(
            "TaskInstance Finished" in line and f"task_id={TASK}," in line and run_id in line
            for line in text.splitlines()
        ):
            return
        time.sleep(0.5)
    raise AssertionError(f"the scheduler never processed the exit of {TASK}'s parking worker")


def state_mismatches(client) -> list[str]:
    """Airflow's own record of a task it failed for a state mismatch (see above)."""
    try:
        events = client.request("GET", "/api/v2/eventLogs", params={"dag_id": DAG_ID}).json()
    except Exception as exc:  # only a diagnostic for a failure message
        return [f"(event log unavailable: {exc})"]
    return [
        str(e.get("extra"))[:500]
        for e in events.get("event_logs", [])
        if e.get("event") == "state mismatch"
    ]


def test_reject_keeps_production_and_records_the_decision(airflow_server, settings):
    supervisor, client = airflow_server
    client.wait_for_dag(DAG_ID, timeout=180)
    client.unpause(DAG_ID)
    try:
        run_id = client.trigger(DAG_ID, conf={"force": True})
        deadline = time.monotonic() + 600
        waiting = ("awaiting_input", "deferred")  # Airflow 3.3 HITL state (older: deferred)
        while time.monotonic() < deadline and states(client, run_id).get(TASK) not in waiting:
            assert client.dag_run(DAG_ID, run_id)["state"] in ("queued", "running"), states(
                client, run_id
            )
            time.sleep(2)
        seen = states(client, run_id)
        assert seen[TASK] in waiting, seen
        # A person answers minutes later, when the worker that parked the task is long gone
        # and the scheduler has processed its exit. An answer faster than that races an
        # Airflow 3.3 check: the worker's exit event (same try number) reaches the
        # scheduler after the resumed task was queued, the scheduler sees a "state
        # mismatch" and fails the running resumed task. Wait for both, as a person would.
        [parked] = [t for t in client.task_instances(DAG_ID, run_id) if t["task_id"] == TASK]
        gone_by = time.monotonic() + 60
        while task_processes(parked["id"]) and time.monotonic() < gone_by:
            time.sleep(0.5)
        assert not task_processes(parked["id"]), "the parking task process did not exit"
        wait_for_exit_event(supervisor, run_id)
        assert seen["deploy_model"] in (None, "scheduled", "queued", "none")
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK}/-1/hitlDetails"
        detail = client.request("GET", path).json()
        version = client.request(
            "GET",
            f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/register_model/xcomEntries/return_value",
        ).json()["value"]["version"]
        assert detail["subject"] == f"Deploy {PIPELINE} v{version} to production?"
        assert detail["options"] == ["Approve", "Reject"]
        # a malformed answer is refused and changes nothing
        bad = client.request("PATCH", path, json={"chosen_options": []}, ok=(422,))
        assert bad.status_code == 422
        answer = client.request(
            "PATCH",
            path,
            json={
                "chosen_options": ["Reject"],
                "params_input": {"comment": "not before the audit"},
            },
        ).json()
        assert answer["chosen_options"] == ["Reject"]
        result = client.wait_for_run(DAG_ID, run_id, timeout=300)
        final = states(client, run_id)
        approval_log = client.task_log(DAG_ID, run_id, TASK, try_number=1)
        if final[TASK] != "success":
            pytest.fail(
                f"{TASK} ended {final[TASK]} ({final}); state mismatches: "
                f"{state_mismatches(client)}; its log:\n{approval_log}"
            )
        assert final["deploy_model"] == "skipped", final
        assert str(result.state) == "success"
    finally:
        client.pause(DAG_ID)

    mlflow = tracking.configure(settings)
    assert version_by_alias(mlflow, PIPELINE, PRODUCTION) is None  # never deployed
    tags = mlflow.get_model_version(PIPELINE, version).tags
    assert "conveyor.approval" in tags, approval_log[-4000:]
    decision = json.loads(tags["conveyor.approval"])
    assert decision["decision"] == "rejected"
    assert decision["by"] == "admin" and decision["comment"] == "not before the audit"
    assert decision["run_id"] == run_id
    [event] = [
        e for e in audit.list_events(settings.artifact_root, PIPELINE) if e.action == "rejected"
    ]
    assert (event.to_version, event.user, event.reason) == (
        version,
        "admin",
        "not before the audit",
    )
