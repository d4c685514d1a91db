"""End to end through Airflow's ``dag.test()`` with a real DVC registry, GX, sklearn and MLflow.

The tests in this module share one data registry and one MLflow store and run in order:
the first good run creates production v1; later runs compare against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conveyor.artifacts import RunArtifacts
from conveyor.data.registry import publish_file
from conveyor.registry import audit, tracking
from conveyor.registry.models import COMPLETE_TAG, PRODUCTION, version_by_alias
from conveyor_runtime.datasets import DATASETS, dataset_frame

pytestmark = pytest.mark.e2e

LINEAGE = {
    "conveyor.data_repo",
    "conveyor.data_path",
    "conveyor.data_rev",
    "conveyor.data_git_sha",
    "conveyor.data_md5",
    "conveyor.validation",
    "conveyor.project_git_rev",
    "conveyor.config_hash",
    "conveyor.params",
    "conveyor.metrics",
    "conveyor.gate",
    "conveyor.dag_id",
    "conveyor.run_id",
    "conveyor.mlflow_run_id",
    "conveyor.cache_key",
    COMPLETE_TAG,
}


@pytest.fixture(scope="module")
def env(airflow_db, demo_registry, settings):
    return settings, tracking.configure(settings)


def run_pipeline(name: str, **conf):
    from conveyor_airflow.factory import build_pipeline_dag

    dag = build_pipeline_dag(name)
    dag_run = dag.test(run_conf=conf)
    states = {
        ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()
    }
    return dag_run, states


def versions(client, name: str) -> list:
    return client.search_model_versions(f"name = '{name}'")


def publish_corrupt(
    settings, tmp_path: Path, frame: pd.DataFrame, label: str, *, raw: str | None = None
) -> str:
    """Commit a corrupted breast-cancer file, then restore the good one; return the bad sha."""
    registry = Path(settings.data_registry)
    bad = tmp_path / f"{label}.csv"
    if raw is not None:
        bad.write_text(raw)
    else:
        frame.to_csv(bad, index=False)
    sha = publish_file(registry, DATASETS["breast_cancer"], bad, message=f"Corrupt data: {label}")
    good = tmp_path / "good.csv"
    dataset_frame("breast_cancer").to_csv(good, index=False)
    publish_file(registry, DATASETS["breast_cancer"], good, message="Restore good data")
    return sha


def test_good_run_registers_version_with_full_lineage(env):
    settings, client = env
    dag_run, states = run_pipeline("breast_cancer")
    assert set(states.values()) == {"success"}, states
    [mv] = versions(client, "breast_cancer")
    assert set(mv.tags) >= LINEAGE, LINEAGE - set(mv.tags)
    assert mv.tags["conveyor.run_id"] == dag_run.run_id
    assert mv.tags["conveyor.data_rev_source"] == "branch"
    assert json.loads(mv.tags["conveyor.metrics"])["roc_auc"] > 0.95
    gate = json.loads(mv.tags["conveyor.gate"])
    assert gate["passed"] is True
    assert any("no production model yet" in r for r in gate["reasons"])
    assert str(version_by_alias(client, "breast_cancer", PRODUCTION).version) == str(mv.version)
    # the resolved config travels with the version's run, so it can be retrained later
    config_text = client.download_artifacts(mv.run_id, "conveyor/pipeline.yaml")
    assert "HistGradientBoostingClassifier" in Path(config_text).read_text()
    # Data Docs and plots were written to the run's artifact location
    art = RunArtifacts(settings.artifact_root, dag_run.dag_id, dag_run.run_id)
    assert any(f.endswith("index.html") for f in art.manifest("validation")["files"])
    assert {"confusion_matrix.png", "roc_curve.png"} <= set(art.manifest("evaluation")["files"])
    # extra links were recorded for the UI, and the plugin app serves the Data Docs page
    docs_link = dag_run.get_task_instance("validate_data").xcom_pull(
        task_ids="validate_data", key="_link_DataDocsLink"
    )
    assert docs_link.startswith("/conveyor/artifacts/train_breast_cancer/")
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    # the plugin's pages inside Airflow's own API app, as the demo admin (login required)
    api = TestClient(create_app("core"))
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    api.headers["Authorization"] = f"Bearer {token}"
    page = api.get(docs_link)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    version_link = dag_run.get_task_instance("register_model").xcom_pull(
        task_ids="register_model", key="_link_ModelVersionLink"
    )
    assert version_link.endswith(f"/#/models/breast_cancer/versions/{mv.version}")
    overview = api.get("/conveyor/api/pipelines").json()
    bc = next(e for e in overview if e["name"] == "breast_cancer")
    assert bc["production"]["version"] == str(mv.version)
    assert bc["last_validation"]["success"] is True


def test_unchanged_inputs_skip_the_run(env, capfd):
    _, client = env
    before = len(versions(client, "breast_cancer"))
    _, states = run_pipeline("breast_cancer")
    # resolve_inputs short-circuits: it succeeds and marks every later step skipped at once
    assert states.pop("resolve_inputs") == "success"
    assert set(states.values()) == {"skipped"}, states
    assert len(versions(client, "breast_cancer")) == before
    out = capfd.readouterr()
    assert "inputs unchanged since production v1" in out.out + out.err


def test_a_new_package_version_invalidates_the_skip(env, monkeypatch, capfd):
    """The code identity in the cache key holds Conveyor's version: after an upgrade the
    same data and config retrain instead of being skipped."""
    import conveyor.registry.lineage as lineage

    _, client = env
    monkeypatch.setattr(lineage, "__version__", "99.0.0")
    dag_run, states = run_pipeline("breast_cancer")
    assert states["resolve_inputs"] == "success" and states["register_model"] == "success"
    out = capfd.readouterr()
    assert "inputs differ from production" in out.out + out.err
    new = next(
        v for v in versions(client, "breast_cancer") if v.tags["conveyor.run_id"] == dag_run.run_id
    )
    assert new.tags["conveyor.project_git_rev"].startswith("conveyor-99.0.0+sklearn-")


def _nan_target(f):
    f = f.copy()
    f.loc[f.index[:3], "target"] = float("nan")
    return f


def _missing_column(f):
    return f.drop(columns=["mean radius"])


def _string_in_numeric(f):
    f = f.astype({"mean texture": object})
    f.loc[f.index[5], "mean texture"] = "n/a"
    return f


CORRUPTIONS = {
    "nan_in_target": (_nan_target, None, "target"),
    "missing_column": (_missing_column, None, "mean radius"),
    "string_in_numeric": (_string_in_numeric, None, "mean texture"),
    "empty_file": (None, "", "expect_table_row_count_to_be_between"),
}


@pytest.mark.parametrize("label", list(CORRUPTIONS))
def test_corrupted_data_stops_at_validation(env, tmp_path, label, capfd):
    settings, client = env
    corrupt, raw, named = CORRUPTIONS[label]
    frame = corrupt(dataset_frame("breast_cancer")) if corrupt else None
    sha = publish_corrupt(settings, tmp_path, frame, label, raw=raw)
    before = len(versions(client, "breast_cancer"))
    production_before = version_by_alias(client, "breast_cancer", PRODUCTION).version

    dag_run, states = run_pipeline("breast_cancer", data_rev=sha)

    assert states["pull_data"] == "success"
    assert states["validate_data"] == "failed"
    assert states["register_model"] in ("upstream_failed", "None", "none")
    assert len(versions(client, "breast_cancer")) == before
    assert version_by_alias(client, "breast_cancer", PRODUCTION).version == production_before
    summary_url = RunArtifacts(settings.artifact_root, dag_run.dag_id, dag_run.run_id).manifest(
        "validation"
    )
    summary = json.loads(Path(summary_url["prefix"], "summary.json").read_text())
    assert summary["success"] is False
    assert any(named in json.dumps(failure) for failure in summary["failures"]), summary["failures"]
    log = capfd.readouterr()
    assert "Data validation failed" in log.out + log.err


def test_weak_model_is_stopped_by_gate(env):
    _, client = env
    dag_run, states = run_pipeline("weak_breast_cancer")
    assert states["evaluate_model"] == "success"
    assert states["gate"] == "skipped"
    assert states["register_model"] == "skipped"
    assert versions(client, "weak_breast_cancer") == []
    decision = dag_run.get_task_instance("gate").xcom_pull(task_ids="gate", key="gate_decision")
    assert decision["passed"] is False
    assert any("FAILED" in r for r in decision["reasons"])
    # every gate rejection is an audit record, by the run, naming what failed
    settings = env[0]
    [event] = [
        e
        for e in audit.list_events(settings.artifact_root, "weak_breast_cancer")
        if e.run_id == dag_run.run_id
    ]
    assert event.action == "rejected" and event.to_version is None
    assert event.user == "airflow:train_weak_breast_cancer" and "FAILED" in event.reason


def test_gate_override_without_reason_fails_before_any_work(env, capfd):
    _, states = run_pipeline("weak_breast_cancer", gate_override=True, force=True)
    assert states["resolve_inputs"] == "failed", states
    assert states["pull_data"] == "upstream_failed"
    out = capfd.readouterr()
    assert "gate_override is set but override_reason is empty" in out.out + out.err


def test_second_run_compares_against_production(env):
    _, client = env
    first = version_by_alias(client, "breast_cancer", PRODUCTION)
    dag_run, states = run_pipeline("breast_cancer", force=True)
    assert set(states.values()) == {"success"}, states
    new = next(
        v for v in versions(client, "breast_cancer") if v.tags["conveyor.run_id"] == dag_run.run_id
    )
    reasons = json.loads(new.tags["conveyor.gate"])["reasons"]
    assert any(f"vs production v{first.version}" in r for r in reasons), reasons
    assert int(version_by_alias(client, "breast_cancer", PRODUCTION).version) == int(new.version)


def test_regression_pipeline_runs_end_to_end(env):
    _, client = env
    _dag_run, states = run_pipeline("diabetes")
    assert set(states.values()) == {"success"}, states
    [mv] = versions(client, "diabetes")
    assert set(json.loads(mv.tags["conveyor.metrics"])) == {"rmse", "mae", "r2"}
    assert mv.tags["conveyor.data_path"] == "data/diabetes.csv"


def test_unknown_estimator_fails_in_the_first_task(env, capfd):
    _, client = env
    _, states = run_pipeline("typo_estimator")
    assert states["resolve_inputs"] == "failed"
    assert states["pull_data"] == "upstream_failed"
    out = capfd.readouterr()
    assert "has no estimator class 'Ridgee'" in out.out + out.err
    assert versions(client, "typo_estimator") == []


def test_reproduce_gives_identical_metrics(env, capsys):
    """`conveyor models reproduce` retrains production from its lineage alone."""
    from conveyor_runtime.cli import main

    _, client = env
    production = version_by_alias(client, "breast_cancer", PRODUCTION)
    assert main(["models", "reproduce", "breast_cancer", str(production.version)]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED EXACTLY" in out
    assert {"roc_auc", "accuracy", "f1"} <= {line.split()[0] for line in out.splitlines()[1:-1]}
    assert main(["models", "reproduce", "breast_cancer", "999"]) == 1
    assert "breast_cancer v999 is not in the registry" in capsys.readouterr().err
