"""The model service goes away while a deployment is verifying it.

A real service process serves v1 of its own model. The deployment moves ``production`` to
v2 and then waits for the service to report v2 and answer ``/predict``. It has no admin
token here, so only a restart (or the service's own alias poll, set to 10 minutes) can
make the service load v2: the service is killed while the deployment verifies.

- Restarted within the verification timeout: the new process loads ``production`` (v2),
  the deployment verifies it and succeeds; nothing is rolled back.
- Not back within the timeout: the deployment moves ``production`` back to v1, records
  the automatic rollback and fails with a message that says the service did not
  confirm; v1 (what ``production`` names) loads, and a restarted service serves it.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
from serving_helpers import (
    ServiceProcess,
    breast_cancer_config,
    log_trained,
    register,
    row,
    train_breast_cancer,
)

from conveyor.deploy.rollout import switch_production
from conveyor.errors import DeployError
from conveyor.modeling.model_io import load_model
from conveyor.registry import audit
from conveyor.registry.models import PRODUCTION, promote, version_by_alias


@pytest.fixture(scope="module")
def model(settings):
    """Two registered versions of one breast-cancer model; returns (client, versions, rows)."""
    config = breast_cancer_config("restart_deploy")
    result, train, test = train_breast_cancer(config)
    client, run_id, uri = log_trained(settings, config, result, train)
    versions = [
        register(client, config.name, uri, run_id, f"restart-{i}", data_md5=f"md5-{i}")
        for i in (1, 2)
    ]
    rows = [row(test, i, config.feature_columns) for i in range(5)]
    return client, config.name, versions, rows


@pytest.fixture
def service(model, tmp_path, monkeypatch):
    """A service of the model serving v1 (production), polling the alias only every 10 min."""
    monkeypatch.delenv("CONVEYOR_DEPLOY_VERIFY", raising=False)  # a user's override: here we verify
    client, name, versions, _ = model
    promote(client, name, versions[0], reason="test start", actor="pytest")
    proc = ServiceProcess(
        name,
        env={
            "CONVEYOR_SERVE_POLL_SECONDS": "600",
            "CONVEYOR_PREDICTION_LOG_DIR": str(tmp_path / "predictions"),
            "CONVEYOR_ADMIN_TOKEN": "",
        },
    ).start(tmp_path / "service-1.log")
    assert httpx.get(f"{proc.url}/version").json()["version"] == versions[0]
    yield proc
    proc.stop()


def deploy_in_background(settings, model, service, timeout: float) -> tuple[threading.Thread, dict]:
    client, name, versions, rows = model
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = switch_production(
                client,
                name=name,
                version=versions[1],
                action="promote",
                reason="restart test",
                user="pytest",
                artifact_root=settings.artifact_root,
                service_url=service.url,
                verify="always",
                rows=rows,
                timeout=timeout,
                admin_token="",
            )
        except Exception as exc:  # reported by the test, with its type
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_for_alias(client, name: str, version: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = version_by_alias(client, name, PRODUCTION)
        if current is not None and str(current.version) == version:
            return
        time.sleep(0.1)
    raise AssertionError(f"production never moved to v{version}")


def kill(service: ServiceProcess) -> None:
    service.proc.send_signal(signal.SIGKILL)
    service.proc.wait(10)


def test_service_restarted_during_verification_serves_the_new_version(
    settings, model, service, tmp_path
):
    client, name, versions, _ = model
    thread, outcome = deploy_in_background(settings, model, service, timeout=180)
    wait_for_alias(client, name, versions[1])
    time.sleep(1.5)  # the deployment is polling: the old process still reports v1
    kill(service)
    service.start(tmp_path / "service-2.log")  # same port: a restart
    thread.join(240)

    assert not thread.is_alive(), "the deployment did not finish"
    assert "error" not in outcome, repr(outcome.get("error"))
    result = outcome["result"]
    assert (result.version, result.previous_version, result.verified) == (
        versions[1],
        versions[0],
        True,
    )
    assert str(version_by_alias(client, name, PRODUCTION).version) == versions[1]
    assert httpx.get(f"{service.url}/version").json()["version"] == versions[1]
    actions = [e.action for e in audit.list_events(settings.artifact_root, name)]
    assert "rollback" not in actions, actions


def test_service_down_for_the_whole_verification_rolls_back_to_a_loadable_version(
    settings, model, service, tmp_path
):
    client, name, versions, _ = model
    before = len(audit.list_events(settings.artifact_root, name))
    thread, outcome = deploy_in_background(settings, model, service, timeout=8)
    wait_for_alias(client, name, versions[1])
    kill(service)
    thread.join(120)

    assert not thread.is_alive(), "the deployment did not finish"
    error = outcome.get("error")
    assert isinstance(error, DeployError), repr(error)
    message = str(error)
    assert f"v{versions[1]} was rolled back" in message
    assert f"production is back on v{versions[0]}" in message
    assert "does not confirm" in message and "/health" in message

    production = version_by_alias(client, name, PRODUCTION)
    assert str(production.version) == versions[0]
    load_model(f"models:/{name}@{PRODUCTION}")  # what production names loads
    events = audit.list_events(settings.artifact_root, name)[before:]
    assert [(e.action, e.from_version, e.to_version) for e in events] == [
        ("promote", versions[0], versions[1]),
        ("rollback", versions[1], versions[0]),
    ]
    assert events[1].details["service_restored"] is False

    service.start(tmp_path / "service-2.log")
    assert httpx.get(f"{service.url}/version").json()["version"] == versions[0]
