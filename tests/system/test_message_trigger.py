"""Retraining on a message, on the session's real scheduler + triggerer and a real Redis.

The ``message_bc`` fixture pipeline sets ``triggers.message`` (Redis pub/sub through Airflow's
common-messaging ``MessageQueueTrigger``) and ``triggers.data: false``, so only a message
starts it. Pub/sub drops messages nobody listens to: the test publishes only after
``PUBSUB NUMSUB`` shows the watcher subscribed. The message's reason must end up in the
registered version's lineage (``conveyor.trigger_reason``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from conveyor.registry import tracking
from conveyor.registry.models import PRODUCTION, version_by_alias
from conveyor_runtime.processes import free_port

pytestmark = pytest.mark.system

PIPELINE = "message_bc"
DAG_ID = f"train_{PIPELINE}"
CHANNEL = "conveyor.retrain.message_bc"  # tests/fixtures/pipelines/message_bc.yaml
CONN_ID = "conveyor_test_redis"


@pytest.fixture
def redis_port(tmp_path):
    """A redis-server on a free loopback port, stopped afterwards."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server missing: apt-get install -y redis-server"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_for(predicate, what: str, timeout: float, poll: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"{what} within {timeout:.0f} s")


def test_a_message_starts_a_training_run_with_its_reason(airflow_server, redis_port, settings):
    import redis

    _, client = airflow_server
    # the watcher's connection, before the watcher starts (409: left by an earlier run)
    client.request(
        "POST",
        "/api/v2/connections",
        ok=(201, 409),
        json={
            "connection_id": CONN_ID,
            "conn_type": "redis",
            "host": "127.0.0.1",
            "port": redis_port,
        },
    )
    client.wait_for_dag(DAG_ID, timeout=180)
    client.unpause(DAG_ID)
    try:
        broker = redis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=2)
        started = time.monotonic()
        wait_for(
            lambda: dict(broker.pubsub_numsub(CHANNEL)).get(CHANNEL.encode(), 0) >= 1,
            f"no subscriber on {CHANNEL} (the message watcher)",
            timeout=120,
        )
        subscribed = time.monotonic() - started
        reason = f"labels for week 47 delivered ({uuid.uuid4().hex[:8]})"
        assert broker.publish(CHANNEL, json.dumps({"reason": reason})) == 1
        published = time.monotonic()
        [run] = wait_for(
            lambda: [
                r for r in client.list_runs(DAG_ID, limit=10) if r["run_type"] == "asset_triggered"
            ],
            "no training run started by the message",
            timeout=120,
        )
        queued = time.monotonic() - published
        result = client.wait_for_run(DAG_ID, run["dag_run_id"], timeout=600)
        assert str(result.state) == "success", result.states
    finally:
        client.pause(DAG_ID)
    version = version_by_alias(tracking.configure(settings), PIPELINE, PRODUCTION)
    assert version is not None
    assert version.tags["conveyor.trigger_reason"] == reason
    assert version.tags["conveyor.dag_id"] == DAG_ID
    print(
        f"\n[message trigger] subscribed {subscribed:.1f} s after unpause, "
        f"run queued {queued:.1f} s after the message"
    )
