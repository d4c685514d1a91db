"""Audit trail, input-contract check, smoke test (real models, real subprocess), unverified deploy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from serving_helpers import (
    breast_cancer_config,
    free_port,
    log_trained,
    register,
    train_breast_cancer,
)

from conveyor.deploy.rollout import (
    check_contract,
    compare_columns,
    deploy,
    sample_rows,
    smoke_test,
)
from conveyor.errors import DeployError
from conveyor.registry import audit
from conveyor.registry.models import PRODUCTION, promote, version_by_alias

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


# --------------------------------------------------------------------------- audit


def test_audit_events_are_files_listed_in_order(tmp_path):
    root = str(tmp_path / "artifacts")
    first = audit.record_event(
        root, model="m", action="promote", from_version=None, to_version="1", reason="a", user="u"
    )
    second = audit.record_event(
        root,
        model="m",
        action="rollback",
        from_version="1",
        to_version=None,
        reason="b",
        user="u",
        dag_id="d",
        run_id="r",
    )
    files = sorted((tmp_path / "artifacts" / "audit" / "m").glob("*.json"))
    assert [f.stem for f in files] == [first.id, second.id]
    assert json.loads(files[1].read_text())["reason"] == "b"
    events = audit.list_events(root, "m")
    assert [e.id for e in events] == [first.id, second.id]
    assert events[1].dag_id == "d" and events[1].to_version is None
    assert audit.list_events(root, "other") == []
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record_event(
            root, model="m", action="delete", from_version=None, to_version="1", reason="", user=""
        )


def _event(action, frm, to, **details):
    return audit.AuditEvent("m", action, frm, to, "r", "u", details=details)


def test_production_history_skips_versions_that_failed_verification():
    events = [
        _event("promote", None, "1"),
        _event("promote", "1", "2"),
        _event("rollback", "2", "1", automatic=True),
        _event("rejected", "1", "3"),
        _event("promote", "1", "4"),
    ]
    assert audit.production_history(events) == ["1", "1", "4"]
    assert audit.previous_production(events, "4") == "1"
    assert audit.previous_production(events[:1], "1") is None
    found = audit.find_event(
        [audit.AuditEvent("m", "promote", "1", "2", "r", "u", dag_id="d", run_id="x")],
        action="promote",
        dag_id="d",
        run_id="x",
        to_version="2",
    )
    assert found is not None


# --------------------------------------------------------------------------- contract

COLS = {"a": ("double", True), "b": ("long", True), "c": ("string", True)}


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        ({"a": ("double", True), "b": ("long", True)}, "'c' is no longer accepted"),
        (
            {"a": ("double", True), "b": ("long", True), "d": ("string", True)},
            "renamed to one of ['d']",
        ),
        ({"a": ("long", True), "b": ("long", True), "c": ("string", True)}, "double -> long"),
        ({**COLS, "e": ("double", True)}, "new required column 'e'"),
    ],
)
def test_contract_problems(candidate, problem):
    problems, _ = compare_columns(candidate, COLS)
    assert any(problem in p for p in problems), problems


def test_contract_accepts_widening_and_new_optional_columns():
    candidate = {"a": ("double", True), "b": ("double", True), "c": ("string", True)}
    candidate["e"] = ("double", False)
    problems, notes = compare_columns(candidate, COLS)
    assert problems == []
    assert any("widened long -> double" in n for n in notes)
    assert any("new optional column 'e'" in n for n in notes)


@pytest.fixture(scope="module")
def models(settings):
    """production v1 (all columns) and candidate v2 trained without 'mean radius'."""
    config = breast_cancer_config("deploy_unit")
    result, train, test = train_breast_cancer(config)
    client, run_id, uri = log_trained(settings, config, result, train)
    v1 = register(client, config.name, uri, run_id, "v1")
    promote(client, config.name, v1, reason="test", actor="pytest")
    columns = dict(config.validation.columns)
    columns.pop("mean radius")
    narrow = config.model_copy(
        update={"validation": config.validation.model_copy(update={"columns": columns})}
    )
    result2, train2, _ = train_breast_cancer(narrow)
    client, run2, uri2 = log_trained(settings, narrow, result2, train2)
    v2 = register(client, config.name, uri2, run2, "v2")
    return client, config, v1, v2, test


def test_contract_check_blocks_a_removed_column_unless_overridden(models):
    client, config, v1, v2, _ = models
    with pytest.raises(DeployError, match="'mean radius' is no longer accepted"):
        check_contract(client, config.name, v2)
    report = check_contract(client, config.name, v2, override_reason="column retired")
    assert report.passed and report.overridden and report.production_version == v1
    assert check_contract(client, config.name, v1).passed


# --------------------------------------------------------------------------- smoke test


def test_smoke_test_passes_a_good_model(models):
    _, config, v1, _, test = models
    rows = sample_rows(test, config.feature_columns, n=20)
    report = smoke_test(f"models:/{config.name}/{v1}", rows)
    assert report.rows == 20
    assert report.p95_row_ms > 0
    with pytest.raises(DeployError, match="exceeds the latency budget"):
        smoke_test(f"models:/{config.name}/{v1}", rows, latency_budget_ms=1e-6)


@pytest.fixture
def crashing(settings, monkeypatch):
    """A CrashingClassifier version of breast cancer, trusted in this and child processes."""
    sys.path.insert(0, str(FIXTURES))
    import crashing_estimator

    import conveyor.modeling.model_io as model_io

    trusted = (*model_io.SKOPS_TRUSTED_TYPES, crashing_estimator.TYPE_NAME)
    monkeypatch.setattr(model_io, "SKOPS_TRUSTED_TYPES", trusted)
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES))
    monkeypatch.setenv(crashing_estimator.TRUST_ENV, "1")
    config = breast_cancer_config("deploy_unit_crash")
    config = config.model_copy(
        update={
            "model": config.model.model_copy(
                update={
                    "estimator": "crashing_estimator.CrashingClassifier",
                    "params": {"max_iter": 5000},
                }
            )
        }
    )
    result, train, test = train_breast_cancer(config)
    client, run_id, uri = log_trained(settings, config, result, train)
    version = register(client, config.name, uri, run_id, "crash")
    return config, version, test, crashing_estimator


def test_smoke_test_stops_a_model_that_crashes_on_predict(crashing, monkeypatch):
    config, version, test, module = crashing
    rows = sample_rows(test, config.feature_columns, n=10)
    uri = f"models:/{config.name}/{version}"
    monkeypatch.setenv(module.CRASH_ENV, "1")
    with pytest.raises(DeployError, match="RuntimeError: CrashingClassifier: predict crashed"):
        smoke_test(uri, rows)


# --------------------------------------------------------------------------- deploy


def test_deploy_without_a_service(models, settings, caplog, monkeypatch):
    """A configured service must answer ('auto' and 'always'); with none configured the
    alias moves without a live check and says so; nothing silently passes."""
    # the suite sets the ops override to 'never'; this test is about the modes themselves
    monkeypatch.delenv("CONVEYOR_DEPLOY_VERIFY", raising=False)
    client, config, v1, v2, _ = models
    dead = f"http://127.0.0.1:{free_port()}"
    common = {
        "name": config.name,
        "reason": "unit test",
        "user": "pytest",
        "artifact_root": settings.artifact_root,
        "timeout": 5,
    }
    for mode in ("always", "auto"):
        with pytest.raises(DeployError, match=f"No model service answers at {dead}"):
            deploy(client, version=v2, verify=mode, service_url=dead, **common)
        assert str(version_by_alias(client, config.name, PRODUCTION).version) == v1
    refused = audit.list_events(settings.artifact_root, config.name)
    assert [(e.action, e.from_version, e.to_version) for e in refused] == [("rejected", v1, v2)] * 2
    assert dead in refused[0].reason
    with pytest.raises(DeployError, match="no model service is configured"):
        deploy(client, version=v2, verify="always", service_url=None, **common)
    assert str(version_by_alias(client, config.name, PRODUCTION).version) == v1
    with caplog.at_level("WARNING"):
        result = deploy(
            client, version=v2, verify="auto", service_url=None, dag_id="d", run_id="r1", **common
        )
    assert result.moved and not result.verified
    assert "no model service configured" in caplog.text
    assert str(version_by_alias(client, config.name, PRODUCTION).version) == v2
    [event] = [
        e for e in audit.list_events(settings.artifact_root, config.name) if e.action == "promote"
    ]
    assert (event.from_version, event.to_version) == (v1, v2)
    assert event.details["live_check"] is False
    assert "no model service configured" in event.details["verification"]
    assert client.get_model_version(config.name, v2).tags[audit.LAST_EVENT_TAG] == event.id
    # a retry of the same task records nothing new and keeps the original 'from'
    again = deploy(
        client, version=v2, verify="auto", service_url=None, dag_id="d", run_id="r1", **common
    )
    assert again.previous_version == v1 and not again.moved
    assert len(audit.list_events(settings.artifact_root, config.name)) == 3


# --------------------------------------------------------------------------- killed tasks


def _smoke_children() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "conveyor.deploy.rollout smoke" in cmdline:
            found.append(proc)
    return found


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_killed_deploy_task_stops_its_smoke_test(crashing, monkeypatch):
    """Airflow calls on_kill when it kills a task: the smoke-test process must not outlive it."""
    from conveyor_airflow.operators.deploy import DeployModelOperator

    config, version, test, module = crashing
    rows = sample_rows(test, config.feature_columns, n=5)
    monkeypatch.setenv(module.SLOW_ENV, "120")
    errors: list[BaseException] = []

    def deploy_step():
        try:
            smoke_test(f"models:/{config.name}/{version}", rows, timeout=200)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=deploy_step)
    worker.start()
    [child] = _wait_for(lambda: [c for c in _smoke_children() if c.ppid() == os.getpid()])
    task = DeployModelOperator(
        task_id="deploy_model", pipeline_config=config.model_dump(mode="json"), registration={}
    )
    task.on_kill()
    worker.join(30)
    assert not worker.is_alive()
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert errors and isinstance(errors[0], DeployError) and "was stopped" in str(errors[0])


def test_sigkilled_task_process_leaves_no_smoke_test_behind(crashing, tmp_path):
    """Even SIGKILL (no on_kill) takes the child along: it dies with its parent."""
    config, version, test, module = crashing
    rows = sample_rows(test, config.feature_columns, n=5)
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    script = tmp_path / "task.py"
    script.write_text(
        "import json, sys\n"
        f"sys.path.insert(0, {str(FIXTURES)!r})\n"
        "import crashing_estimator; crashing_estimator.trust()\n"
        "from conveyor.deploy.rollout import smoke_test\n"
        f"rows = json.load(open({str(tmp_path / 'rows.json')!r}))\n"
        f"smoke_test('models:/{config.name}/{version}', rows, timeout=200)\n"
    )
    env = {**os.environ, module.SLOW_ENV: "120"}
    parent = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        [child] = _wait_for(
            lambda: [c for c in _smoke_children() if c.ppid() == parent.pid], timeout=120
        )
        parent.kill()
        parent.wait(10)
        _wait_for(
            lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, timeout=10
        )
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.parametrize("n", [7, 500])
def test_snapshot_sample_is_the_frames_sample(tmp_path, n):
    """The deploy step samples its smoke rows from the Parquet snapshot without building
    the frame; it must pick exactly the rows ``sample_rows`` picks from the frame."""
    import numpy as np
    import pandas as pd

    from conveyor.deploy.rollout import sample_snapshot_rows

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=300),
            "k": rng.integers(0, 5, size=300),
            "city": rng.choice(["a", "b", None], size=300),
            "target": rng.integers(0, 2, size=300),
        }
    )
    frame.loc[::7, "x"] = np.nan
    path = tmp_path / "snapshot.parquet"
    frame.to_parquet(path, index=False)
    columns = ["x", "k", "city"]
    expected = sample_rows(frame, columns, n=n, seed=42)
    assert sample_snapshot_rows(path, columns, n=n, seed=42) == expected
    assert len(expected) == min(n, len(frame))
