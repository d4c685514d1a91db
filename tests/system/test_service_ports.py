"""The model service on a port of its own, found through a connection, as `conveyor demo up`
sets it up: the deploy is verified against that service, the extra link and the pipelines
view point at it, and the traffic command reaches it.

The session's Airflow already runs on a free port (not 8080); the service gets another free
port (not 8000), and the connection is created over the REST API by the same function
`conveyor demo up` uses.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from serving_helpers import ServiceProcess, free_port

from conveyor_runtime.cli import demo_connections

pytestmark = pytest.mark.system

PIPELINE = "breast_cancer"
TRAIN = f"train_{PIPELINE}"
TOKEN = "ports-admin-token"


@pytest.fixture
def service_on_its_own_port(airflow_server, settings, tmp_path):
    _, client = airflow_server
    service = ServiceProcess(
        PIPELINE,
        env={"CONVEYOR_ADMIN_TOKEN": TOKEN, "CONVEYOR_SERVE_POLL_SECONDS": "2"},
        port=free_port(),
    )
    service.start(tmp_path / "service.log", timeout=300)
    created = demo_connections(client, settings, token=TOKEN, service_port=service.port)
    try:
        yield service, client
    finally:
        for conn_id in created:  # later tests deploy with no service again
            client.request("DELETE", f"/api/v2/connections/{conn_id}", ok=(204, 404))
        service.stop()


def test_deploy_link_view_and_traffic_follow_the_services_port(service_on_its_own_port, settings):
    service, client = service_on_its_own_port
    listed = client.request("GET", "/api/v2/connections").json()["connections"]
    ours = {c["connection_id"]: c for c in listed}
    assert ours["conveyor_model_service_default"]["port"] == service.port

    client.wait_for_dag(TRAIN, timeout=180)
    client.unpause(TRAIN)
    run_id = client.trigger(TRAIN, conf={"force": True})
    assert str(client.wait_for_run(TRAIN, run_id, timeout=900).state) == "success"
    deployed = client.request(
        "GET",
        f"/api/v2/dags/{TRAIN}/dagRuns/{run_id}/taskInstances/deploy_model/xcomEntries/return_value",
    ).json()["value"]
    assert deployed["verified"] is True, deployed
    assert deployed["service_url"] == service.url
    served = httpx.get(f"{service.url}/version", timeout=10).json()["version"]
    assert str(served) == str(deployed["version"])

    links = client.request(
        "GET", f"/api/v2/dags/{TRAIN}/dagRuns/{run_id}/taskInstances/deploy_model/links"
    ).json()["extra_links"]
    assert links.get("Model service") == f"{service.url}/version", links
    view = client.request("GET", "/conveyor/api/pipelines").json()
    [entry] = [e for e in view if e["name"] == PIPELINE]
    assert entry["service_url"] == service.url

    env = {**os.environ, "CONVEYOR_SERVE_PORT": str(service.port)}
    traffic = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor_runtime.cli",
            "demo",
            "traffic",
            "--pipeline",
            PIPELINE,
            "--rows",
            "20",
            "--no-monitor",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert traffic.returncode == 0, traffic.stdout + traffic.stderr
    assert "Sent 20 " in traffic.stdout and "(0 failed)" in traffic.stdout, traffic.stdout
