"""The MLflow tracking server goes away in the middle of registering a model version.

A real ``mlflow server`` (SQLite store) sits behind a small loopback TCP proxy that goes
dark right after it has forwarded the ``model-versions/create`` call — the worst moment:
the version exists, its alias and ``conveyor.complete`` tag are not set yet; it stays
dark for the next attempt, then comes back. What must hold:

* the register step fails with a ``RegistryError`` naming the model and the failure,
  after MLflow's own bounded HTTP retries (the operator turns it into a retryable task
  failure; the task has retries with exponential backoff);
* no version exists without its lineage tags (they go in the create call), a version
  without ``conveyor.complete`` is invisible to readers, and the retried task, once the
  server is back, completes that same version instead of creating a second one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving_helpers import free_port

from conveyor.errors import RegistryError
from conveyor.registry import tracking
from conveyor.registry.models import (
    CANDIDATE,
    COMPLETE_TAG,
    find_run_version,
    lineage_tags,
    register_version,
    version_by_alias,
)
from conveyor.settings import Settings

NAME = "outage_model"
DAG_ID, RUN_ID = "train_outage_model", "manual__2026-02-02T00:00:00+00:00"


class CuttableProxy:
    """TCP proxy to ``127.0.0.1:target`` that refuses every request after a trigger.

    Once the server has answered a request containing ``trigger``, the proxy is
    *dark*: that reply still comes back, but every later request (on any
    connection, new or kept alive) has its connection closed without reaching the server
    — what a client sees when the tracking server dies or the network drops.
    """

    def __init__(self, target: int, trigger: bytes) -> None:
        self.target = target
        self.trigger = trigger
        self.dark = threading.Event()
        self.refused = 0
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=30)
        except OSError:
            client.close()
            return
        self._sockets += [client, upstream]
        armed = threading.Event()  # this connection carried the trigger request
        threading.Thread(
            target=self._pump, args=(upstream, client, False, armed), daemon=True
        ).start()
        self._pump(client, upstream, True, armed)

    def _pump(
        self, src: socket.socket, dst: socket.socket, from_client: bool, armed: threading.Event
    ) -> None:
        try:
            while data := src.recv(65536):
                if from_client and self.dark.is_set():
                    self.refused += 1
                    break
                if from_client and self.trigger in data:
                    armed.set()
                if not from_client and armed.is_set():
                    # Dark *before* the reply leaves: the client cannot get a request in.
                    self.dark.set()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            sock.close()


def _start_server(port: int, store: Path, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{store / 'mlflow.db'}",
                "--default-artifact-root",
                (store / "artifacts").as_uri(),
            ],
            env={
                **os.environ,
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "MLFLOW_SERVER_ALLOWED_HOSTS": "localhost:*,127.0.0.1:*",
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    _stop_server(proc)
    raise RuntimeError(f"mlflow server did not start:\n{log.read_text()}")


def _stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the workers go too
        proc.wait(30)


@pytest.fixture
def mlflow_server(tmp_path, settings, monkeypatch) -> Iterator[tuple]:
    # Bounded client retries (defaults: 7 retries with backoff factor 2, minutes of waiting).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    port, store = free_port(), tmp_path / "mlflow"
    store.mkdir()
    proc = _start_server(port, store, tmp_path / "mlflow-server.log")
    try:
        yield port, store
    finally:
        _stop_server(proc)
        tracking.configure(settings)  # the session's store again for later tests


def _logged_run(client) -> tuple[str, str]:
    experiment = client.create_experiment(NAME)
    run = client.create_run(experiment)
    client.log_text(run.info.run_id, "a stand-in model", "model/README.txt")
    client.set_terminated(run.info.run_id)
    return run.info.run_id, f"runs:/{run.info.run_id}/model"


def _register(client, uri: str, mlflow_run_id: str) -> tuple[str, bool]:
    return register_version(
        client,
        name=NAME,
        model_uri=uri,
        mlflow_run_id=mlflow_run_id,
        dag_id=DAG_ID,
        run_id=RUN_ID,
        tags=lineage_tags(data_md5="abc123", project_git_rev="deadbeef", config_hash="c0ffee"),
    )


def _complete_lineage(version) -> bool:
    tags = version.tags
    return all(
        tags.get(f"conveyor.{key}")
        for key in ("data_md5", "project_git_rev", "config_hash", "dag_id", "run_id")
    ) and tags.get("conveyor.mlflow_run_id")


def test_tracking_server_lost_mid_registration(mlflow_server):
    port, store = mlflow_server
    proxy = CuttableProxy(port, trigger=b"/model-versions/create")
    try:
        client = tracking.configure(
            Settings.from_env(
                {
                    **os.environ,
                    "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{proxy.port}",
                    "CONVEYOR_MLFLOW_ARTIFACTS": str(store / "artifacts"),
                }
            )
        )
        direct = tracking.configure(  # behind the proxy's back, to look at the store
            Settings.from_env({**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})
        )
        mlflow_run_id, uri = _logged_run(client)

        with pytest.raises(RegistryError) as exc:
            _register(client, uri, mlflow_run_id)
        message = str(exc.value)
        assert f"Registering {NAME} from {uri} failed" in message
        assert "Max retries exceeded" in message or "Connection" in message, message
        assert proxy.dark.is_set() and proxy.refused >= 3  # MLflow's own retries were tried

        # The version made it into the store with every lineage tag, but not `complete`.
        [half] = direct.search_model_versions(f"name = '{NAME}'")
        assert _complete_lineage(half), half.tags
        assert COMPLETE_TAG not in half.tags
        assert version_by_alias(direct, NAME, CANDIDATE) is None  # readers see nothing

        # Still unreachable: the retried task fails again, clearly, in bounded time.
        with pytest.raises(RegistryError, match=f"Registering {NAME}"):
            _register(client, uri, mlflow_run_id)
        assert [v.version for v in direct.search_model_versions(f"name = '{NAME}'")] == [
            half.version
        ]

        # Reachable again: the next retry completes *that* version instead of adding one.
        proxy.dark.clear()
        version, created = _register(client, uri, mlflow_run_id)
        assert (version, created) == (str(half.version), False)
        [done] = direct.search_model_versions(f"name = '{NAME}'")
        assert done.tags[COMPLETE_TAG] == "true" and _complete_lineage(done)
        assert version_by_alias(direct, NAME, CANDIDATE).version == half.version
        assert find_run_version(direct, NAME, DAG_ID, RUN_ID).version == half.version
    finally:
        proxy.close()


def test_register_task_retries_with_backoff_on_registry_errors():
    """RegistryError -> a retryable task failure (operators/base.py); retries are set."""
    from conveyor_airflow.factory import build_pipeline_dag

    task = build_pipeline_dag("breast_cancer").get_task("register_model")
    assert task.retries >= 1
    assert task.retry_exponential_backoff
