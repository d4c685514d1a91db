"""Shared fixtures of the reliability tests: one real model service for the whole folder.

The service is ``python -m conveyor.serving.server`` started the way an operator would
start it — *without* ``--host`` (so the default bind address is what is under test), with
an admin token, the access log on and debug logging (so a leaked token would show up in
its output). It serves two registered versions of a breast-cancer model so a hot swap
can happen while it is under load.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from serving_helpers import (
    ServiceProcess,
    breast_cancer_config,
    log_trained,
    register,
    row,
    train_breast_cancer,
)

from conveyor.registry import tracking
from conveyor.registry.models import promote

MODEL = "reliability_service"
TOKEN = "rel-admin-9f3c2b7e1d"


class DefaultHostService(ServiceProcess):
    """The service process started with no ``--host`` and verbose logging."""

    def server_args(self) -> list[str]:
        return [
            "--pipeline",
            self.pipeline,
            "--port",
            str(self.port),
            "--log-level",
            "debug",
            "--access-log",
        ]


@dataclass
class Service:
    """The running service, its two versions and a good record to send it."""

    proc: ServiceProcess
    versions: list[str]
    columns: list[str]
    test_frame: Any
    client: httpx.Client
    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.proc.url

    def record(self, i: int = 0) -> dict[str, float]:
        return row(self.test_frame, i, self.columns)

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def healthy(self) -> bool:
        """Still serving: /health is 200 and a good record gets a prediction."""
        if self.client.get("/health").status_code != 200:
            return False
        response = self.client.post("/predict", json={"records": [self.record(0)]})
        return response.status_code == 200 and len(response.json()["predictions"]) == 1


@pytest.fixture(scope="package")
def service(settings, tmp_path_factory) -> Iterator[Service]:
    tracking.configure(settings)  # create the store before two processes use it
    proc = DefaultHostService(
        MODEL,
        env={
            "CONVEYOR_ADMIN_TOKEN": TOKEN,
            "CONVEYOR_PREDICTION_LOG_DIR": str(tmp_path_factory.mktemp("rel-predictions")),
            "CONVEYOR_SERVE_POLL_SECONDS": "600",  # swaps happen through /admin/reload
        },
    )
    # The server imports MLflow and scikit-learn for a while: train meanwhile.
    proc.spawn(tmp_path_factory.mktemp("rel-service") / "service.log")
    try:
        config = breast_cancer_config(MODEL)
        result, train, test = train_breast_cancer(config)
        client, run_id, uri = log_trained(settings, config, result, train)
        versions = [
            register(client, MODEL, uri, run_id, f"rel-{i}", data_md5=f"md5-{i}") for i in (1, 2)
        ]
        promote(client, MODEL, versions[0], reason="reliability tests", actor="pytest")
        proc.wait_ready()
        with httpx.Client(base_url=proc.url, timeout=30) as http:
            svc = Service(proc, versions, config.feature_columns, test, http)
            reload = http.post("/admin/reload", headers=svc.admin())
            assert reload.status_code == 200, reload.text
            yield svc
    finally:
        proc.stop()
