"""Retraining triggers of the pipeline YAML's ``triggers`` section: the config schema, the
watchers the factory attaches, the message payload mapping, and ConfigChangeTrigger against a
real MLflow registry (SQLite) with production's lineage tags."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conveyor.__about__ import __version__
from conveyor.config import config_from_mapping, load_pipeline_config
from conveyor.errors import ConfigError
from conveyor_airflow.triggers.config_change import (
    LAST_COMBINATION_KEY,
    ConfigChangeTrigger,
    change_reason,
)
from conveyor_airflow.triggers.message import payload_from_message

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())


class MemoryStateStore:
    """Stands in for the triggerer's asset state store across trigger restarts."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    async def aget(self, key, default=None):
        return self.values.get(key, default)

    async def aset(self, key, value):
        self.values[key] = value


def spec(**triggers) -> dict:
    return {**BASE, "triggers": triggers} if triggers else dict(BASE)


# -- config ---------------------------------------------------------------------------------


def test_triggers_section_is_optional_and_not_in_the_config_hash():
    plain = config_from_mapping(spec(), source="x")
    assert (plain.triggers.data, plain.triggers.message, plain.triggers.on_change) == (
        True,
        None,
        False,
    )
    with_triggers = config_from_mapping(
        spec(on_change=True, message={"scheme": "redis+pubsub", "channels": ["c"]}), source="x"
    )
    # when a run starts shapes no model: production trained before the section was added
    # is not "changed"
    assert with_triggers.config_hash() == plain.config_hash()
    assert with_triggers.triggers.message.model_extra == {"channels": ["c"]}


@pytest.mark.parametrize(
    ("triggers", "message"),
    [
        ({"on_chnage": True}, "unknown key 'triggers.on_chnage'"),
        ({"message": {"channels": ["c"]}}, "missing required key 'triggers.message.scheme'"),
        ({"message": {"scheme": "redis+pubsub", "queue": "redis+pubsub://x"}}, "deprecated"),
        ({"message": {"scheme": "redis+pubsub", "channels": {"a": 1}}}, "plain value"),
    ],
)
def test_bad_triggers_are_named(triggers, message):
    with pytest.raises(ConfigError, match="(?s)" + message.replace("+", r"\+")):
        config_from_mapping(spec(**triggers), source="p.yaml")


# -- the factory ------------------------------------------------------------------------------


def watchers_of(tmp_path: Path, **triggers) -> list:
    from conveyor_airflow.config import conveyor_settings
    from conveyor_airflow.factory import data_asset

    path = tmp_path / "breast_cancer.yaml"
    path.write_text(yaml.safe_dump(spec(**triggers)))
    return data_asset(load_pipeline_config(path), conveyor_settings(), watch=True).watchers


def test_factory_attaches_the_configured_watchers(tmp_path):
    watchers = watchers_of(
        tmp_path,
        on_change=True,
        message={"scheme": "redis+pubsub", "channels": ["retrain"], "redis_conn_id": "r"},
    )
    by_name = {w.name: w.trigger for w in watchers}
    assert set(by_name) == {
        "dvc_watch_breast_cancer",
        "message_watch_breast_cancer",
        "code_watch_breast_cancer",
    }
    path, kwargs = by_name["message_watch_breast_cancer"].serialize()
    assert path == "airflow.providers.redis.triggers.redis_await_message.AwaitMessageTrigger"
    assert kwargs["channels"] == ["retrain"] and kwargs["redis_conn_id"] == "r"
    path, kwargs = by_name["code_watch_breast_cancer"].serialize()
    assert path == "conveyor_airflow.triggers.config_change.ConfigChangeTrigger"
    config = config_from_mapping(spec(), source="x")
    # plain literals, the same on every parse
    assert kwargs["config_hash"] == config.config_hash()
    assert kwargs["conveyor_version"] == __version__
    assert [w.name for w in watchers_of(tmp_path, data=False)] == []


def test_messaging_is_imported_only_for_pipelines_that_configure_it():
    code = (
        "import sys\n"
        "from conveyor_airflow.factory import build_pipeline_dag\n"
        "build_pipeline_dag('breast_cancer')\n"
        "assert 'airflow.providers.common.messaging.triggers.msg_queue' not in sys.modules\n"
        "build_pipeline_dag('message_bc')\n"
        "assert 'airflow.providers.common.messaging.triggers.msg_queue' in sys.modules\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    assert out.returncode == 0, out.stderr[-3000:]


# -- the message body -------------------------------------------------------------------------


def test_redis_message_maps_onto_the_watcher_payload():
    event = {"type": "message", "pattern": None, "channel": "retrain", "data": ""}
    body = '{"reason": "labels for week 47 delivered", "rev": "abc123", "force": true}'
    assert payload_from_message({**event, "data": body}) == {
        "status": "message",
        "rev": "abc123",
        "reason": "labels for week 47 delivered",
        "force": True,
        "channel": "retrain",
    }
    plain = payload_from_message({**event, "data": "upstream table published"})
    assert (plain["rev"], plain["reason"], plain["force"]) == (
        None,
        "upstream table published",
        False,
    )
    assert payload_from_message({**event, "data": "{}"})["reason"] == "message on retrain"


def test_event_payload_reads_a_message_event():
    from types import SimpleNamespace

    from conveyor_airflow.operators.pull import event_payload

    event = SimpleNamespace(
        extra={
            "from_trigger": True,
            "payload": {"type": "message", "channel": "c", "data": '{"reason": "why"}'},
        },
        timestamp=None,
    )
    payload = event_payload({"triggering_asset_events": {"asset": [event]}})
    assert payload is not None
    assert (payload["status"], payload["rev"], payload["reason"]) == ("message", None, "why")


# -- ConfigChangeTrigger ----------------------------------------------------------------------


def test_change_reason_names_what_changed():
    tags = {
        "version": "3",
        "conveyor.config_hash": "aaa",
        "conveyor.project_git_rev": f"conveyor-{__version__}+sklearn-1.9.1+git.abc",
    }
    assert change_reason(tags, config_hash="aaa", conveyor_version=__version__) is None
    assert change_reason(tags, config_hash="bbb", conveyor_version=__version__) == (
        "pipeline config changed (config hash aaa -> bbb) since production v3"
    )
    assert change_reason(tags, config_hash="aaa", conveyor_version="9.9.9") == (
        f"Conveyor changed ({__version__} -> 9.9.9) since production v3"
    )
    # a commit elsewhere in the project (README edit) is no reason
    other_commit = {**tags, "conveyor.project_git_rev": f"conveyor-{__version__}+x+git.def"}
    assert change_reason(other_commit, config_hash="aaa", conveyor_version=__version__) is None


@pytest.fixture
def production(tmp_path):
    """A real MLflow registry (SQLite) whose model ``m`` has a complete production version."""
    from mlflow import MlflowClient

    from conveyor.registry.models import COMPLETE_TAG

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("m")
    mv = client.create_model_version(
        "m",
        source=str(tmp_path),
        tags={
            "conveyor.config_hash": "aaa",
            "conveyor.project_git_rev": f"conveyor-{__version__}+sklearn-1.9.1+git.abc",
            COMPLETE_TAG: "true",
        },
    )
    client.set_registered_model_alias("m", "production", mv.version)
    return uri


async def events_of(trigger: ConfigChangeTrigger, timeout: float = 1.5) -> list:
    """Events the trigger yields within ``timeout`` seconds."""
    got: list = []

    async def collect() -> None:
        async for event in trigger.run():
            got.append(event.payload)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), timeout)
    return got


def make(uri: str, store: MemoryStateStore, config_hash: str, version: str = __version__):
    trigger = ConfigChangeTrigger(
        model_name="m",
        tracking_uri=uri,
        config_hash=config_hash,
        conveyor_version=version,
        poll_interval=0.05,
    )
    trigger.asset_state_store = store
    return trigger


async def test_one_event_per_new_combination(production):
    store = MemoryStateStore()
    # same config + version as production: quiet, and remembered
    assert await events_of(make(production, store, "aaa")) == []
    assert store.values[LAST_COMBINATION_KEY] == f"aaa|conveyor-{__version__}"

    # the YAML changed: exactly one event, not one per poll ...
    [event] = await events_of(make(production, store, "bbb"))
    assert event["status"] == "code_changed"
    assert event["reason"].startswith("pipeline config changed (config hash aaa -> bbb)")
    assert event["production_version"] == "1"
    # ... nor after a re-parse or a triggerer restart (a new trigger, same store)
    assert await events_of(make(production, store, "bbb")) == []

    # a Conveyor upgrade is a new combination
    [event] = await events_of(make(production, store, "bbb", version="99.0.0"))
    assert "Conveyor changed" in event["reason"] and "config changed" in event["reason"]


async def test_no_production_no_event(tmp_path):
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    store = MemoryStateStore()
    assert await events_of(make(uri, store, "aaa")) == []
    assert LAST_COMBINATION_KEY not in store.values


def test_serialize_round_trip():
    trigger = ConfigChangeTrigger(
        model_name="m", tracking_uri="sqlite:///x.db", config_hash="h", conveyor_version="1.2"
    )
    path, kwargs = trigger.serialize()
    assert path == "conveyor_airflow.triggers.config_change.ConfigChangeTrigger"
    assert ConfigChangeTrigger(**kwargs).serialize() == (path, kwargs)
