"""The audit trail's one "by" format: an Airflow user, ``cli:<os user>``, ``airflow:<dag_id>``."""

from __future__ import annotations

import getpass

import pytest

from conveyor.registry import audit


@pytest.mark.parametrize(
    ("dag_id", "triggering_user", "actor"),
    [
        ("conveyor_rollback", "admin", "admin"),  # triggered in the UI or over REST
        ("conveyor_rollback", " jane.doe ", "jane.doe"),
        ("train_churn", None, "airflow:train_churn"),  # scheduled, asset- or drift-triggered
        ("train_churn", "", "airflow:train_churn"),
        ("train_churn", "dag_test", "airflow:train_churn"),  # dag.test(): no user did it
    ],
)
def test_run_actor(dag_id, triggering_user, actor):
    assert audit.run_actor(dag_id, triggering_user) == actor


def test_cli_and_automatic_actors():
    assert audit.cli_actor("ops") == "cli:ops"
    assert audit.cli_actor() == f"cli:{getpass.getuser()}"
    assert audit.airflow_actor("train_churn") == "airflow:train_churn"
    with pytest.raises(ValueError, match="dag_id"):
        audit.airflow_actor("")
    with pytest.raises(ValueError, match="user's name"):
        audit.airflow_user("  ")


def test_cli_actor_when_the_system_has_no_name_for_the_user(monkeypatch):
    def no_name() -> str:
        raise KeyError("uid 12345 not in the password database")

    monkeypatch.setattr(getpass, "getuser", no_name)
    assert audit.cli_actor() == "cli:unknown"


def test_records_keep_the_actor(tmp_path):
    event = audit.record_event(
        str(tmp_path),
        model="m",
        action="rollback",
        from_version="2",
        to_version="1",
        reason="bad",
        user=audit.run_actor("conveyor_rollback", "admin"),
        dag_id="conveyor_rollback",
        run_id="manual__1",
    )
    [listed] = audit.list_events(str(tmp_path), "m")
    assert listed.user == event.user == "admin"
    assert " by admin " in listed.line()
