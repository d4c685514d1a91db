"""DvcUpdateSensor: defers to DvcUpdateTrigger when nothing changed; fails clearly on errors."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from conveyor.data.source import read_tracked_md5
from conveyor_airflow.sensors.dvc_update import DvcUpdateSensor, last_seen_variable
from conveyor_airflow.triggers.dvc_update import DvcUpdateTrigger


@pytest.fixture
def sensor(demo_registry):
    return DvcUpdateSensor(task_id="wait", pipeline="breast_cancer", poll_interval=3)


def test_is_deferrable_by_default(sensor):
    assert sensor.deferrable is True
    assert DvcUpdateSensor(task_id="w", pipeline="x", deferrable=False).mode == "reschedule"


def test_unchanged_data_defers_to_the_trigger(sensor, settings, monkeypatch):
    md5 = read_tracked_md5(settings.data_registry, "data/breast_cancer.csv", "main")
    monkeypatch.setenv(f"AIRFLOW_VAR_{last_seen_variable('breast_cancer').upper()}", md5)
    with pytest.raises(TaskDeferred) as exc:
        sensor.execute(context={})
    trigger = exc.value.trigger
    assert isinstance(trigger, DvcUpdateTrigger)
    assert trigger.baseline_md5 == md5
    assert trigger.path == "data/breast_cancer.csv"
    assert trigger.repo == settings.data_registry
    assert trigger.poll_interval == 3
    assert exc.value.method_name == "execute_complete"


def test_error_event_fails_the_task_with_the_message(sensor):
    with pytest.raises(AirflowFailException, match="registry is gone"):
        sensor.execute_complete(
            context={}, event={"status": "error", "message": "registry is gone"}
        )
