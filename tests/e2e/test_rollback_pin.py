"""A manual rollback holds: later runs register candidates but do not move production until
the pin is released (issue: an ordinary run after `models rollback` promoted a new version
on the data the rollback turned away from)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from conveyor.data.registry import publish_file
from conveyor.deploy.rollout import rollback
from conveyor.registry import audit, tracking
from conveyor.registry.models import PRODUCTION, version_by_alias
from conveyor.registry.pin import PIN_TAG, current_pin, release_pin
from conveyor_runtime.datasets import dataset_frame

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
NAME = "pin_bc"
DATA = "data/pin_bc.csv"


def publish(settings, tmp_path, rows: int) -> str:
    frame = dataset_frame("breast_cancer").head(rows)
    csv = tmp_path / f"pin_{rows}.csv"
    frame.to_csv(csv, index=False)
    return publish_file(settings.data_registry, DATA, csv, message=f"pin_bc: {rows} rows")


@pytest.fixture(scope="module")
def env(airflow_db, demo_registry, settings, tmp_path_factory):
    raw = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    raw.update(name=NAME, description="Rollback pin E2E", tags=["test"])
    raw["data"]["path"] = DATA
    raw["model"] = {
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 5000},
    }
    raw["deploy"] = {"smoke_test": False}
    (settings.pipelines_dir / f"{NAME}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    (dags / f"{NAME}.py").write_text(
        f'from conveyor_airflow.factory import build_pipeline_dag\n\ndag = build_pipeline_dag("{NAME}")\n'
    )
    return settings, tracking.configure(settings), tmp_path_factory.mktemp("pin")


def run():
    from conveyor_airflow.factory import build_pipeline_dag

    dag_run = build_pipeline_dag(NAME).test()
    return {
        ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()
    }


def production(client) -> str:
    return str(version_by_alias(client, NAME, PRODUCTION).version)


def test_rollback_pins_production_until_released(env, capfd):
    settings, client, tmp = env
    publish(settings, tmp, 500)
    assert run()["deploy_model"] == "success" and production(client) == "1"
    publish(settings, tmp, 569)
    assert run()["deploy_model"] == "success" and production(client) == "2"

    rollback(
        client,
        name=NAME,
        version=None,
        reason="v2 misbehaves",
        user="cli:test",
        artifact_root=settings.artifact_root,
        service_url=None,
    )
    assert production(client) == "1"
    pin = current_pin(client, NAME)
    assert pin["version"] == "1" and pin["by"] == "cli:test"

    # the same inputs as candidate v2: skipped, not registered again, production stays
    states = run()
    assert states.pop("resolve_inputs") == "success"
    assert set(states.values()) == {"skipped"}, states
    out = capfd.readouterr()
    assert "inputs equal candidate v2" in out.out + out.err
    assert production(client) == "1"

    # new data: a candidate is trained and registered, but not deployed while pinned
    publish(settings, tmp, 540)
    states = run()
    assert states["register_model"] == "success" and states["deploy_model"] == "skipped", states
    out = capfd.readouterr()
    assert "registered but not deployed: production of pin_bc is pinned to v1" in out.out + out.err
    assert production(client) == "1"
    assert {str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")} == {
        "1",
        "2",
        "3",
    }

    released = release_pin(
        client, settings.artifact_root, NAME, reason="v2 fixed upstream", user="cli:test"
    )
    assert released["version"] == "1" and PIN_TAG not in client.get_model_version(NAME, "1").tags
    actions = [e.action for e in audit.list_events(settings.artifact_root, NAME)]
    assert actions[-3:] == ["rollback", "pin", "release"]
