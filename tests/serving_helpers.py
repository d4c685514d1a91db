"""Helpers for tests of the model service: a real model in MLflow and a real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from conveyor.config import PipelineConfig, load_pipeline_config
from conveyor.registry import tracking
from conveyor.registry.models import lineage_tags, register_version

if TYPE_CHECKING:
    import pandas as pd
    from fastapi import FastAPI
    from mlflow import MlflowClient

    from conveyor.modeling.training import TrainResult
    from conveyor.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def breast_cancer_config(name: str) -> PipelineConfig:
    """The demo config renamed to ``name``, without the grid search (fast to fit)."""
    config = load_pipeline_config(REPO / "include" / "pipelines" / "breast_cancer.yaml")
    return config.model_copy(
        update={"name": name, "model": config.model.model_copy(update={"search": None})}
    )


def train_breast_cancer(config: PipelineConfig) -> tuple[TrainResult, pd.DataFrame, pd.DataFrame]:
    """Fit ``config`` on scikit-learn's breast-cancer data: (result, train, test)."""
    from sklearn.datasets import load_breast_cancer

    from conveyor.data.splits import split_frame
    from conveyor.modeling.training import train_model

    train, test = split_frame(load_breast_cancer(as_frame=True).frame, config)
    return train_model(train, config), train, test


def log_trained(
    settings: Settings, config: PipelineConfig, result: TrainResult, train: pd.DataFrame
) -> tuple[MlflowClient, str, str]:
    """Log ``result`` in a new run of experiment ``config.name``: (client, run_id, model_uri)."""
    import mlflow

    from conveyor.modeling.training import log_model

    client = tracking.configure(settings)
    experiment = tracking.ensure_experiment(client, config.name, settings)
    with mlflow.start_run(experiment_id=experiment) as run:
        uri = log_model(
            result,
            config,
            input_example=train[config.feature_columns],
            config_yaml=yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
        )
    return client, run.info.run_id, uri


def register(
    client: MlflowClient, name: str, uri: str, mlflow_run_id: str, key: str, **facts: Any
) -> str:
    """Register ``uri`` as a complete version of ``name`` (keyed by ``key``); its number."""
    version, _ = register_version(
        client,
        name=name,
        model_uri=uri,
        mlflow_run_id=mlflow_run_id,
        dag_id=f"test_{name}",
        run_id=key,
        tags=lineage_tags(**facts),
    )
    return version


def row(frame: pd.DataFrame, i: int, columns: list[str]) -> dict[str, float]:
    """Record ``i`` of ``frame`` as the JSON-safe dict /predict takes."""
    return {c: float(frame.iloc[i][c]) for c in columns}


@contextmanager
def serve_in_thread(app: FastAPI, timeout: float = 60.0) -> Iterator[httpx.Client]:
    """Run ``app`` under a real uvicorn server in a thread; yields a client for its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"in-thread server on port {port} did not start")
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True  # runs the lifespan shutdown (flushes the log)
        thread.join(timeout)


@dataclass
class ServiceProcess:
    """``python -m conveyor.serving.server`` in a subprocess on a loopback port."""

    pipeline: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_args(self) -> list[str]:
        """Options of ``python -m conveyor.serving.server`` (subclasses vary them)."""
        return ["--pipeline", self.pipeline, "--host", "127.0.0.1", "--port", str(self.port)]

    def spawn(self, log_path: Path) -> ServiceProcess:
        """Start the server process (it imports MLflow for a while: overlap other work)."""
        self.log_path = log_path
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor.serving.server", *self.server_args()],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = 120.0) -> ServiceProcess:
        """Wait (bounded) until the server answers /health, with or without a model."""
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code in (200, 503):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"service did not answer within {timeout} s:\n{self.output()}")

    def start(self, log_path: Path, timeout: float = 120.0) -> ServiceProcess:
        """Spawn and wait until ready."""
        return self.spawn(log_path).wait_ready(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful: the lifespan flushes the log), then SIGKILL if needed.

        Returns the exit code; uvicorn re-raises the signal after a clean shutdown, so
        a graceful stop reads ``-SIGTERM``.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""
