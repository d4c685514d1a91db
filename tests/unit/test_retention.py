"""Housekeeping deletes what the retention policy allows and never what production, a pin,
the audit trail or a running run still needs (real MLflow store, real folders)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from serving_helpers import breast_cancer_config, log_trained, register, train_breast_cancer

from conveyor.config import RetentionSpec
from conveyor.monitoring.checks import prediction_log_dir
from conveyor.registry import audit
from conveyor.registry.models import PRODUCTION, promote
from conveyor.registry.pin import pin_production
from conveyor.registry.retention import apply, plan

NAME = "ret_bc"


def folder(root: Path, dag_id: str, run: str, age_days: float) -> Path:
    path = root / dag_id / run / "data" / "try-1"
    path.mkdir(parents=True, exist_ok=True)
    (path / "rows.csv").write_text("a,b\n1,2\n")
    stamp = time.time() - age_days * 86400
    os.utime(root / dag_id / run, (stamp, stamp))
    return root / dag_id / run


@pytest.fixture(scope="module")
def world(settings):
    config = breast_cancer_config(NAME)
    config = config.model_copy(
        update={
            "retention": RetentionSpec(
                keep_runs=2, prediction_log_days=30, candidate_days=1, min_age_hours=24
            )
        }
    )
    result, train, _ = train_breast_cancer(config)
    client, run_id, uri = log_trained(settings, config, result, train)
    # each version records the Airflow run it came from (conveyor.run_id = run_<i>)
    v = {i: register(client, NAME, uri, run_id, f"run_{i}") for i in range(1, 6)}
    promote(client, NAME, v[1], reason="test", actor="cli:test")
    audit.record_event(
        settings.artifact_root,
        model=NAME,
        action="promote",
        from_version=None,
        to_version=v[1],
        reason="first",
        user="cli:test",
    )
    audit.record_event(
        settings.artifact_root,
        model=NAME,
        action="rejected",
        from_version=v[1],
        to_version=v[3],
        reason="approval rejected",
        user="cli:test",
    )
    pin_production(client, settings.artifact_root, NAME, v[1], reason="hold", user="cli:test")
    root = Path(settings.artifact_root)
    runs = {
        "run_1": folder(root, f"train_{NAME}", "run_1", 90),  # production's run
        "run_2": folder(root, f"train_{NAME}", "run_2", 80),  # an unprotected candidate's
        "old": folder(root, f"train_{NAME}", "old", 70),
        "recent_a": folder(root, f"train_{NAME}", "recent_a", 3),
        "recent_b": folder(root, f"train_{NAME}", "recent_b", 2),
        "monitor_old": folder(root, f"conveyor_monitor_{NAME}", "m_old", 60),
        "monitor_a": folder(root, f"conveyor_monitor_{NAME}", "m_a", 5),
        "monitor_b": folder(root, f"conveyor_monitor_{NAME}", "m_b", 4),
    }
    logs = Path(prediction_log_dir(settings, NAME))
    today = datetime.now(UTC).date()
    days = {"old": today - timedelta(days=45), "new": today - timedelta(days=2)}
    for day in days.values():
        (logs / f"date={day}").mkdir(parents=True, exist_ok=True)
        (logs / f"date={day}" / "part-1.jsonl").write_text("{}\n")
    return config, client, v, runs, logs, days


def test_plan_lists_only_what_the_policy_allows(world, settings):
    config, client, v, _, _, days = world
    later = datetime.now(UTC) + timedelta(days=2)  # every version is past candidate_days
    planned = plan(settings, config, client=client, now=later)
    versions = {d.target for d in planned if d.kind == "model_version"}
    # v1 production + pinned + audited, v3 named by the audit trail, v5 the candidate alias
    assert versions == {f"{NAME} v{v[2]}", f"{NAME} v{v[4]}"}
    folders = {d.target.rsplit("/", 1)[-1] for d in planned if d.kind == "run_artifacts"}
    # beyond the newest two per DAG, minus run_1 (production's run)
    assert folders == {"run_2", "old", "m_old"}
    partitions = {d.target.rsplit("/", 1)[-1] for d in planned if d.kind == "prediction_log"}
    assert partitions == {f"date={days['old']}"}


def test_young_folders_are_never_planned(world, settings):
    config, client, _, _, _, _ = world
    now_plan = plan(settings, config, client=client)  # today: min_age_hours protects
    assert all("recent" not in d.target for d in now_plan)
    assert all(d.kind != "model_version" for d in now_plan)  # no version is a day old yet


def test_apply_deletes_exactly_the_plan_and_keeps_the_audit_trail(world, settings):
    config, client, v, runs, logs, days = world
    events_before = audit.list_events(settings.artifact_root, NAME)
    later = datetime.now(UTC) + timedelta(days=2)
    done = apply(plan(settings, config, client=client, now=later), client=client)
    assert len(done) == 6
    left = {str(m.version) for m in client.search_model_versions(f"name = '{NAME}'")}
    assert left == {v[1], v[3], v[5]}
    assert not runs["run_2"].exists() and not runs["old"].exists()
    assert runs["run_1"].exists() and runs["recent_a"].exists() and runs["monitor_b"].exists()
    assert not (logs / f"date={days['old']}").exists() and (logs / f"date={days['new']}").exists()
    assert audit.list_events(settings.artifact_root, NAME) == events_before
    assert str(client.get_model_version_by_alias(NAME, PRODUCTION).version) == v[1]
