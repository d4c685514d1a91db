"""ConveyorNotifier: logs always, POSTs to the webhook connection when one is defined."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from airflow.sdk import DAG

from conveyor_airflow.notifiers import ConveyorNotifier, webhook_url


@pytest.fixture
def hook_server():
    """A real HTTP server on loopback that records the JSON bodies it receives."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    thread.join(5)


def context(exception: Exception | None = None) -> dict:
    return {
        "dag": DAG("train_demo", schedule=None),
        "run_id": "manual__1",
        "ti": SimpleNamespace(task_id="train_model", try_number=3),
        "exception": exception,
    }


def test_without_a_connection_it_only_logs(monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_CONVEYOR_WEBHOOK", raising=False)
    assert webhook_url() is None
    with caplog.at_level("INFO"):
        ConveyorNotifier(event="task_failed")(context(ValueError("bad column")))
    assert (
        "[conveyor] task_failed in train_demo/manual__1/train_model: ValueError: bad column"
        in caplog.text
    )
    assert "notification logged only" in caplog.text


def test_failure_is_posted_to_the_webhook(monkeypatch, hook_server):
    url, received = hook_server
    conn = {"conn_type": "http", "host": f"{url}/hooks/conveyor"}
    monkeypatch.setenv("AIRFLOW_CONN_CONVEYOR_WEBHOOK", json.dumps(conn))
    ConveyorNotifier(event="drift", message="5/30 features drifted", details={"pipeline": "demo"})(
        context()
    )
    [call] = received
    assert call["path"] == "/hooks/conveyor"
    body = call["body"]
    assert body["event"] == "drift" and body["pipeline"] == "demo"
    assert (
        body["text"]
        == "[conveyor] drift in train_demo/manual__1/train_model: 5/30 features drifted"
    )
    assert (body["dag_id"], body["task_id"], body["try_number"]) == ("train_demo", "train_model", 3)


def test_a_dead_webhook_is_logged_not_raised(monkeypatch, caplog):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CONVEYOR_WEBHOOK",
        json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9/x"}),
    )
    with caplog.at_level("INFO"):
        ConveyorNotifier(event="task_failed", message="boom")(context())
    assert (
        "Notification to the 'conveyor_webhook' webhook failed: webhook unreachable" in caplog.text
    )
