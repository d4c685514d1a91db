"""The model service against a real MLflow store, a real model and real HTTP on loopback.

One service process (``python -m conveyor.serving.server``) serves ``serving_test`` for
the HTTP tests, including the hot swap under load and the prediction log flushed on
shutdown; failure modes (no model yet, a version that cannot load, limits) run the same app
under uvicorn in a thread of the test process. Every loop is bounded in count and time.
"""

from __future__ import annotations

import json
import math
import re
import select
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from serving_helpers import (
    ServiceProcess,
    breast_cancer_config,
    log_trained,
    register,
    row,
    serve_in_thread,
    train_breast_cancer,
)

from conveyor.config import PipelineConfig
from conveyor.errors import ConfigError
from conveyor.registry import tracking
from conveyor.registry.models import promote
from conveyor.serving.app import create_app
from conveyor.serving.middleware import BodySizeLimit
from conveyor.serving.model_holder import build_schema
from conveyor.serving.prediction_log import PredictionLog, read_prediction_log
from conveyor.serving.predictor import Predictor
from conveyor.serving.schema import Column, InputSchema, RequestRejected, parse_records
from conveyor.serving.settings import ServingSettings

MODEL = "serving_test"
TOKEN = "s3rving-test-token"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    """One fitted breast-cancer pipeline (no grid search): (config, result, train, test)."""
    config = breast_cancer_config(MODEL)
    result, train, test = train_breast_cancer(config)
    return config, result, train, test


class Service:
    """The running service plus what the tests need to talk about it."""

    def __init__(self, proc: ServiceProcess, versions: list[str], log_dir: Path, test, columns):
        self.proc = proc
        self.versions = versions
        self.log_dir = log_dir
        self.test = test
        self.columns = columns
        self.client = httpx.Client(base_url=proc.url, timeout=30)
        self.ids: list[str] = []  # every prediction id any test received
        self._lock = threading.Lock()

    def record(self, i: int = 0) -> dict[str, float]:
        return row(self.test, i, self.columns)

    def predict(self, records: list[dict[str, Any]], client: httpx.Client | None = None):
        response = (client or self.client).post("/predict", json={"records": records})
        if response.status_code == 200:
            with self._lock:
                self.ids.extend(p["id"] for p in response.json()["predictions"])
        return response

    def post_raw(self, body: bytes, content_type: str = "application/json") -> httpx.Response:
        return self.client.post("/predict", content=body, headers={"Content-Type": content_type})


@pytest.fixture(scope="module")
def logged(settings, trained):
    """The fitted model logged once (with its config); every test registers this run."""
    config, result, train, _ = trained
    return log_trained(settings, config, result, train)


@pytest.fixture(scope="module")
def service(request, settings, tmp_path_factory):
    tracking.configure(settings)  # the store exists before two processes use it
    log_dir = tmp_path_factory.mktemp("predictions")
    proc = ServiceProcess(
        MODEL,
        env={
            "CONVEYOR_ADMIN_TOKEN": TOKEN,
            "CONVEYOR_PREDICTION_LOG_DIR": str(log_dir),
            # The tests reload explicitly; polling is covered in-process.
            "CONVEYOR_SERVE_POLL_SECONDS": "600",
        },
    )
    # The server spends a while importing MLflow and scikit-learn: train meanwhile.
    proc.spawn(tmp_path_factory.mktemp("service") / "service.log")
    try:
        config, _, _, test = request.getfixturevalue("trained")
        client, run_id, uri = request.getfixturevalue("logged")
        versions = [
            register(
                client, MODEL, uri, run_id, f"v{i}", data_md5=f"md5-{i}", project_git_rev=f"rev-{i}"
            )
            for i in (1, 2)
        ]
        promote(client, MODEL, versions[0], reason="serving tests", actor="pytest")
        proc.wait_ready()
        svc = Service(proc, versions, log_dir, test, config.feature_columns)
        reload = svc.client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert reload.status_code == 200, reload.text
        yield svc
    finally:
        proc.stop()


def _app_client(settings, tmp_path, name: str, **overrides):
    """The app for ``name`` under a real uvicorn server in this process."""
    serving = ServingSettings.from_env(
        name, settings=settings, prediction_log_dir=str(tmp_path / name), **overrides
    )
    return serve_in_thread(create_app(serving, settings))


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- /predict over HTTP ---------------------------------------------------------------


def test_batch_gets_ids_labels_and_probabilities(service, trained):
    _, result, _, test = trained
    records = [service.record(i) for i in range(5)]
    response = service.predict(records)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": MODEL, "version": service.versions[0]}
    predictions = body["predictions"]
    assert len(predictions) == 5
    assert all(HEX32.match(p["id"]) for p in predictions)
    assert len({p["id"] for p in predictions}) == 5
    expected = result.model.predict(test[service.columns].head(5)).tolist()
    assert [p["prediction"] for p in predictions] == expected
    proba = result.model.predict_proba(test[service.columns].head(5))
    for p, q in zip(predictions, proba, strict=True):
        assert set(p["probabilities"]) == {"0", "1"}
        assert p["probabilities"]["1"] == pytest.approx(q[1], abs=1e-12)
        assert math.isclose(sum(p["probabilities"].values()), 1.0)


def _mutate(record: dict[str, Any], change: str) -> tuple[dict[str, Any] | list, str]:
    """Apply one bad change; returns the record and the column the error must name."""
    record = dict(record)
    if change == "missing":
        del record["mean radius"]
        return record, "mean radius"
    if change == "extra":
        record["patient name"] = 1.0
        return record, "patient name"
    column = "mean texture"
    record[column] = {
        "string": "12.5",
        "bool": True,
        "null": None,
        "nan": float("nan"),
        "inf": float("inf"),
        "huge_float": 1e300,
        "huge_int": 10**30,
        "list": [1.0],
        "object": {"v": 1.0},
    }[change]
    return record, column


@pytest.mark.parametrize(
    "change",
    [
        "missing",
        "extra",
        "string",
        "bool",
        "null",
        "nan",
        "inf",
        "huge_float",
        "huge_int",
        "list",
        "object",
    ],
)
def test_bad_values_are_422_naming_row_and_column(service, change):
    record, column = _mutate(service.record(1), change)
    # Row 0 is fine, row 1 is not: the error must say which.
    body = json.dumps({"records": [service.record(0), record]}).encode()  # NaN -> NaN literal
    response = service.post_raw(body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "records[1]" in detail and repr(column) in detail, detail
    assert response.json()["errors"][0] == {
        "row": 1,
        "column": column,
        "message": response.json()["errors"][0]["message"],
    }


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"records": []}', 422, "empty"),
        (b'{"rows": [{"a": 1}]}', 422, "'rows'"),
        (b"{}", 422, "'records' must be a list"),
        (b'{"records": {"a": 1}}', 422, "got object"),
        (b'[{"a": 1}]', 422, "JSON object"),
        (b'{"records": [1, 2]}', 422, "records[0]"),
        (b'{"records": [{"mean radius": 1.0,', 400, "Invalid JSON"),
        (b"not json at all", 400, "Invalid JSON"),
        (b"\xff\xfe{}", 400, "Invalid JSON"),
        (b"", 400, "Empty body"),
        (b"[" * 200_000 + b"]" * 200_000, 400, "nested too deeply"),
        (b'{"records": [{"mean radius": ' + b"[" * 50_000 + b"]" * 50_000 + b"}]}", 400, "nested"),
    ],
    ids=[
        "empty-batch",
        "wrong-key",
        "no-records",
        "records-object",
        "top-level-list",
        "records-not-objects",
        "truncated",
        "not-json",
        "not-utf8",
        "no-body",
        "deeply-nested",
        "deeply-nested-value",
    ],
)
def test_malformed_bodies_are_4xx(service, body, status, words):
    response = service.post_raw(body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_wrong_content_type_is_415(service):
    response = service.post_raw(json.dumps({"records": [service.record()]}).encode(), "text/plain")
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def _raw_http(
    port: int, head: bytes, chunks: list[bytes], timeout: float = 20.0
) -> tuple[int, dict]:
    """Send ``head`` then ``chunks`` (stopping as soon as the server answers); parse the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for chunk in chunks:
            if select.select([sock], [], [], 0.05)[0]:
                break  # the server answered already: stop sending
            sock.sendall(chunk)
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            if time.monotonic() > deadline:
                raise AssertionError(f"incomplete response: {data[:200]!r}")
            part = sock.recv(65536)
            if not part:
                break
            data += part
    head_text, _, payload = data.partition(b"\r\n\r\n")
    return int(head_text.split()[1]), json.loads(payload)


def _length(data: bytes) -> int:
    match = re.search(rb"content-length: (\d+)", data.split(b"\r\n\r\n", 1)[0], re.I)
    return int(match.group(1)) if match else 0


def test_body_over_limit_is_413_from_content_length(service):
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2097152\r\n\r\n"
    )
    status, body = _raw_http(service.proc.port, head, [])  # no body sent: refused on the header
    assert status == 413
    assert "larger than 1048576 bytes" in body["detail"]


def test_streamed_body_over_limit_is_413(service):
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b" " * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 20  # 1.25 MiB, no Content-Length
    status, body = _raw_http(service.proc.port, head, chunks)
    assert status == 413
    assert "larger than" in body["detail"]
    assert service.client.get("/health").status_code == 200


# -- /health, /version, /admin ----------------------------------------------------------


def test_health_and_version(service):
    health = service.client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["model_loaded"] is True
    assert body["last_reload_error"] is None
    assert body["prediction_log"]["dir"] == str(service.log_dir)

    version = service.client.get("/version").json()
    current = version["version"]
    index = service.versions.index(current) + 1
    assert version["name"] == MODEL and version["alias"] == "production"
    assert version["data_md5"] == f"md5-{index}"
    assert version["project_git_rev"] == f"rev-{index}"
    assert datetime.fromisoformat(version["loaded_at"]) <= datetime.now(UTC)
    assert version["task"] == "classification" and version["classes"] == [0, 1]
    assert [c["name"] for c in version["input_schema"]] == service.columns
    assert version["schema_source"].startswith("signature + run artifact")
    assert version["fast_path"] is True


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ],
    ids=["none", "wrong", "no-scheme", "basic"],
)
def test_admin_reload_refuses_without_the_token(service, headers):
    response = service.client.post("/admin/reload", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in response.text


def test_admin_reload_with_token_reports_the_version(service):
    response = service.client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.json()["changed"] is False
    assert response.json()["model"]["version"] in service.versions
    assert TOKEN not in service.proc.output()


def test_single_row_latency(service):
    """~500 sequential one-row requests on loopback; prints p50/p99 (see the report)."""
    record = service.record(2)
    body = json.dumps({"records": [record]}).encode()
    timings = []
    with httpx.Client(base_url=service.proc.url, timeout=10) as client:
        for _ in range(20):  # warm up
            client.post("/predict", content=body, headers={"Content-Type": "application/json"})
        for _ in range(500):
            started = time.perf_counter()
            response = client.post(
                "/predict", content=body, headers={"Content-Type": "application/json"}
            )
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200
            service.ids.extend(p["id"] for p in response.json()["predictions"])
    p50, p99 = np.percentile(timings, [50, 99]) * 1000
    print(f"\nsingle-row /predict over loopback: p50 {p50:.2f} ms, p99 {p99:.2f} ms (n=500)")
    assert p50 < 250  # a sanity bound only: this machine's load varies


# -- hot swap under load ------------------------------------------------------------------


def test_hot_swap_under_load_fails_no_request(service, settings):
    old = service.client.get("/version").json()["version"]
    new = next(v for v in service.versions if v != old)
    outcomes: list[tuple[int, str | None]] = []
    stop_at = time.monotonic() + 90
    done = threading.Event()

    def fire(n: int) -> None:
        # Until told to stop (a fixed count finished before the reload once requests
        # took ~1 ms): bounded by n requests and the deadline.
        with httpx.Client(base_url=service.proc.url, timeout=30) as client:
            for i in range(n):
                if done.is_set() or time.monotonic() > stop_at:
                    break
                try:
                    response = service.predict([service.record(i % 10)], client)
                    version = (
                        response.json()["model"]["version"] if response.status_code == 200 else None
                    )
                    outcomes.append((response.status_code, version))
                except httpx.HTTPError as exc:
                    outcomes.append((0, repr(exc)))

    threads = [threading.Thread(target=fire, args=(100_000,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    _wait_for(lambda: len(outcomes) >= 40, 60, "requests before the swap")
    client = tracking.configure(settings)
    promote(client, MODEL, new, reason="hot swap test", actor="pytest")
    reload = service.client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    after_reload = len(outcomes)
    try:
        assert reload.status_code == 200, reload.text
        assert reload.json()["changed"] is True and reload.json()["model"]["version"] == new
        _wait_for(lambda: len(outcomes) >= after_reload + 100, 60, "requests after the swap")
    finally:
        done.set()
        for thread in threads:
            thread.join(120)
    failures = [o for o in outcomes if o[0] != 200]
    assert failures == []
    served = [v for _, v in outcomes]
    assert set(served) == {old, new}
    assert served.index(new) > 0 and old not in served[served.index(new) + 5 :]
    assert service.client.get("/version").json()["version"] == new
    assert service.client.get("/health").json()["model"]["version"] == new


# -- the prediction log (stops the service: keep last among the HTTP tests) ------------------


def test_prediction_log_holds_every_prediction_after_shutdown(service):
    response = service.predict([service.record(i) for i in range(3)])
    assert response.status_code == 200
    expected = set(service.ids)
    assert len(expected) >= 3
    service.proc.stop()  # SIGTERM: the lifespan flushes the queue
    records = read_prediction_log(service.log_dir)
    by_id = {r["id"]: r for r in records}
    assert expected <= set(by_id)
    last = by_id[response.json()["predictions"][2]["id"]]
    assert last["inputs"] == service.record(2)
    assert last["model"] == MODEL and last["version"] in service.versions
    assert set(last["probabilities"]) == {"0", "1"}
    assert last["prediction"] == response.json()["predictions"][2]["prediction"]
    day = datetime.fromisoformat(last["ts"]).strftime("%Y-%m-%d")
    parts = list((service.log_dir / f"date={day}").glob("part-*.jsonl"))
    assert len(parts) == 1 and re.match(r"part-\d+-\d{8}T\d+Z\.jsonl", parts[0].name)
    assert "Prediction log closed" in service.proc.output()


# -- failure modes, in-process -----------------------------------------------------------


def test_no_model_at_start_is_503_until_one_is_promoted(settings, trained, logged, tmp_path):
    config = trained[0]
    name = "serving_late"
    with _app_client(settings, tmp_path, name, poll_seconds=0.2) as client:
        assert client.get("/health").status_code == 503
        assert client.get("/health").json()["model_loaded"] is False
        response = client.post("/predict", json={"records": [{"a": 1.0}]})
        assert response.status_code == 503
        assert "serving_late@production" in response.json()["detail"]
        assert client.get("/version").status_code == 503
        admin = client.post("/admin/reload", headers={"Authorization": "Bearer x"})
        assert admin.status_code == 401 and "disabled" in admin.json()["detail"]

        mlflow_client, run_id, uri = logged
        version = register(mlflow_client, name, uri, run_id, "late")
        promote(mlflow_client, name, version, reason="late", actor="pytest")
        _wait_for(lambda: client.get("/health").status_code == 200, 60, "the poller to load")
        record = row(trained[3], 0, config.feature_columns)
        assert (
            client.post("/predict", json={"records": [record]}).json()["model"]["version"]
            == version
        )


def test_version_that_fails_to_load_keeps_the_old_one(settings, trained, logged, tmp_path):
    import mlflow

    config, _, _, test = trained
    name = "serving_broken"
    mlflow_client, run_id, uri = logged
    good = register(mlflow_client, name, uri, run_id, "good")
    promote(mlflow_client, name, good, reason="good", actor="pytest")
    with mlflow.start_run(
        experiment_id=tracking.ensure_experiment(mlflow_client, name, settings)
    ) as run:
        mlflow.log_text("not a model", "broken/README.txt")
    bad = register(mlflow_client, name, f"runs:/{run.info.run_id}/broken", run.info.run_id, "bad")
    record = row(test, 0, config.feature_columns)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with _app_client(settings, tmp_path, name, admin_token=TOKEN, poll_seconds=600) as client:
        assert client.get("/version").json()["version"] == good
        promote(mlflow_client, name, bad, reason="bad", actor="pytest")
        reload = client.post("/admin/reload", headers=auth)
        assert reload.status_code == 503
        assert f"Cannot load {name} v{bad}" in reload.json()["detail"]
        assert reload.json()["model"]["version"] == good
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["model"]["version"] == good
        assert "model.skops" in health["last_reload_error"]
        assert health["registry_version"] == bad
        assert (
            client.post("/predict", json={"records": [record]}).json()["model"]["version"] == good
        )

        promote(mlflow_client, name, good, reason="rollback", actor="pytest")
        assert client.post("/admin/reload", headers=auth).status_code == 200
        assert client.get("/health").json()["last_reload_error"] is None


def test_row_and_body_limits_are_configurable(settings, trained, logged, tmp_path):
    config, _, _, test = trained
    name = "serving_limits"
    mlflow_client, run_id, uri = logged
    promote(
        mlflow_client, name, register(mlflow_client, name, uri, run_id, "x"), reason="t", actor="t"
    )
    records = [row(test, i, config.feature_columns) for i in range(4)]
    with _app_client(settings, tmp_path, name, max_batch_rows=3, max_body_bytes=4096) as client:
        too_many = client.post("/predict", json={"records": records})
        assert too_many.status_code == 413 and "limit is 3" in too_many.json()["detail"]
        assert client.post("/predict", json={"records": records[:3]}).status_code == 200
        too_big = client.post("/predict", json={"records": records * 2})
        assert too_big.status_code == 413 and "4096 bytes" in too_big.json()["detail"]
        assert client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]


def test_predict_token_when_configured(settings, trained, logged, tmp_path, caplog):
    """With a predict token, /predict answers only to it (or the admin token a deployment
    verifies with); the token is in no response and no log line."""
    import logging

    caplog.set_level(logging.DEBUG)
    config, _, _, test = trained
    name = "serving_locked"
    mlflow_client, run_id, uri = logged
    promote(
        mlflow_client, name, register(mlflow_client, name, uri, run_id, "x"), reason="t", actor="t"
    )
    predict_token = "pr3dict-t0ken-0123456789"
    body = {"records": [row(test, 0, config.feature_columns)]}
    with _app_client(
        settings, tmp_path, name, admin_token=TOKEN, predict_token=predict_token
    ) as client:
        answers = {
            label: client.post("/predict", json=body, headers=headers)
            for label, headers in {
                "none": {},
                "wrong": {"Authorization": f"Bearer {predict_token}x"},
                "not bearer": {"Authorization": f"Basic {predict_token}"},
                "predict": {"Authorization": f"Bearer {predict_token}"},
                "admin": {"Authorization": f"Bearer {TOKEN}"},
            }.items()
        }
        assert {k: r.status_code for k, r in answers.items()} == {
            "none": 401,
            "wrong": 401,
            "not bearer": 401,
            "predict": 200,
            "admin": 200,
        }
        assert answers["none"].headers["www-authenticate"] == "Bearer"
        assert "CONVEYOR_PREDICT_TOKEN" in answers["none"].json()["detail"]
        # /health and /version stay open (monitoring probes); the schema names no token
        assert client.get("/health").status_code == 200
        texts = [r.text for r in answers.values()]
        texts += [client.get(p).text for p in ("/health", "/version", "/openapi.json")]
    assert not [t for t in texts if predict_token in t or TOKEN in t]
    assert caplog.records and predict_token not in caplog.text


def test_predict_token_settings(tmp_path):
    env = {"CONVEYOR_PREDICT_TOKEN": "abcdefghijklmnop"}
    assert ServingSettings.from_env("churn", env={}).predict_token is None  # off by default
    token = ServingSettings.from_env("churn", env=env).predict_token
    assert token.get_secret_value() == "abcdefghijklmnop"
    secret = tmp_path / "predict-token"
    secret.write_text("from-a-mounted-secret-file\n")
    from_file = ServingSettings.from_env("churn", env={"CONVEYOR_PREDICT_TOKEN_FILE": str(secret)})
    assert from_file.predict_token.get_secret_value() == "from-a-mounted-secret-file"
    assert "from-a-mounted" not in repr(from_file)
    with pytest.raises(ConfigError, match="keep one"):
        ServingSettings.from_env("churn", env={**env, "CONVEYOR_PREDICT_TOKEN_FILE": str(secret)})
    with pytest.raises(ConfigError, match="Cannot read the predict token file"):
        ServingSettings.from_env("churn", env={"CONVEYOR_PREDICT_TOKEN_FILE": str(tmp_path / "x")})
    with pytest.raises(ConfigError, match="at least 16 characters") as short:
        ServingSettings.from_env("churn", env={"CONVEYOR_PREDICT_TOKEN": "sh0rt-secret"})
    assert "sh0rt-secret" not in str(short.value)


# -- pure parts ---------------------------------------------------------------------------


def test_serving_settings_from_env(settings):
    env = {"CONVEYOR_ARTIFACT_ROOT": "/data/art", "CONVEYOR_ADMIN_TOKEN": "t0ken"}
    serving = ServingSettings.from_env("churn", env=env)
    assert (serving.host, serving.port, serving.max_body_bytes) == ("127.0.0.1", 8000, 1 << 20)
    assert (serving.max_batch_rows, serving.poll_seconds) == (10_000, 5.0)
    assert serving.prediction_log_dir == "/data/art/predictions/churn"
    assert serving.admin_token.get_secret_value() == "t0ken"
    assert "t0ken" not in repr(serving)
    assert ServingSettings.from_env("churn", env={}).admin_token is None
    custom = ServingSettings.from_env(
        "churn", env={"CONVEYOR_SERVE_PORT": "9001", "CONVEYOR_SERVE_HOST": "0.0.0.0"}, port=None
    )
    assert (custom.host, custom.port) == ("0.0.0.0", 9001)
    assert ServingSettings.from_env("churn", env={"CONVEYOR_SERVE_PORT": "9001"}, port=7).port == 7
    with pytest.raises(ConfigError, match="CONVEYOR_SERVE_PORT"):
        ServingSettings.from_env("churn", env={"CONVEYOR_SERVE_PORT": "http"})
    with pytest.raises(ConfigError, match="pipeline"):
        ServingSettings.from_env("Bad Name", env={})


def _mixed_config(estimator: str, params: dict | None = None) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "mixed",
            "task": "classification",
            "data": {"path": "mixed.csv"},
            "target": "y",
            "validation": {
                "columns": {
                    "size": {"type": "float", "nullable": True},
                    "colour": {"type": "str"},
                    "count": {"type": "int"},
                    "y": {"type": "int"},
                }
            },
            "model": {"estimator": estimator, "params": params or {}},
            "metrics": {"primary": "accuracy"},
        }
    )


@pytest.mark.parametrize(
    ("estimator", "params", "from_proba"),
    [
        # Trees have 50/50 leaves: ties go through predict().
        ("sklearn.tree.DecisionTreeClassifier", {"max_depth": 3}, True),
        ("sklearn.neighbors.KNeighborsClassifier", {"n_neighbors": 4}, False),
    ],
)
def test_predictor_general_path_matches_sklearn(estimator, params, from_proba):
    from conveyor.modeling.training import train_model

    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame(
        {
            "size": rng.normal(10, 3, n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "count": rng.integers(0, 5, n),
        }
    )
    frame["y"] = ((frame["size"] > 10) ^ (frame["colour"] == "red")).astype(int)
    config = _mixed_config(estimator, params)
    model = train_model(frame, config).model
    schema = build_schema(None, config)
    predictor = Predictor(model, schema)
    assert not predictor.fast_path and predictor.label_from_proba is from_proba
    records = frame[config.feature_columns].head(30).to_dict(orient="records")
    records[0]["size"] = None  # nullable: imputed like in training
    records[1]["colour"] = "purple"  # unseen category: ignored by the encoder
    rows = schema.check_records(records, max_abs=1e15)
    labels, proba = predictor.predict(rows)
    reference = pd.DataFrame(records).astype({"size": float})
    assert labels == model.predict(reference).tolist()
    assert np.allclose([p["1"] for p in proba], model.predict_proba(reference)[:, 1])


def test_predictor_fast_path_matches_the_pipeline(trained):
    config, result, _, test = trained
    schema = build_schema(None, config)
    predictor = Predictor(result.model, schema)
    assert predictor.fast_path and predictor.label_from_proba
    records = test[config.feature_columns].to_dict(orient="records")
    labels, proba = predictor.predict(schema.check_records(records, max_abs=1e15))
    assert labels == result.model.predict(test[config.feature_columns]).tolist()
    expected = result.model.predict_proba(test[config.feature_columns])
    assert np.allclose([[p["0"], p["1"]] for p in proba], expected, rtol=1e-12, atol=1e-15)


def test_tree_walk_gives_sklearns_probabilities_bit_for_bit(trained):
    """Small batches of the boosted trees are walked with NumPy: the probabilities and
    labels are exactly scikit-learn's, for one row, for the largest walked batch and with
    missing values; a larger batch goes through scikit-learn."""
    from conveyor.serving.predictor import TREE_WALK_MAX_ROWS

    config, result, _, test = trained
    schema = build_schema(None, config)
    predictor = Predictor(result.model, schema)
    assert predictor.tree_walk
    frame = test[config.feature_columns].astype(float)
    frame = pd.concat([frame] * 3, ignore_index=True)  # more rows than are walked
    assert len(frame) > TREE_WALK_MAX_ROWS
    frame.iloc[::3, 2] = np.nan  # nullable inputs are imputed first: the trees see numbers
    estimator = result.model.steps[-1][1]
    for size in (1, 2, TREE_WALK_MAX_ROWS, TREE_WALK_MAX_ROWS + 1):
        part = frame.head(size)
        features = predictor.features(part.to_numpy())
        expected = estimator.predict_proba(features)
        np.testing.assert_array_equal(predictor._proba(features), expected)
        records = [
            {k: (None if math.isnan(v) else v) for k, v in r.items()}
            for r in part.to_dict(orient="records")
        ]
        nullable = InputSchema(tuple(Column(c.name, c.kind, True) for c in schema.columns))
        labels, proba = predictor.predict(nullable.check_batch(records, max_abs=1e15))
        assert labels == result.model.predict(part).tolist()
        np.testing.assert_array_equal([[p["0"], p["1"]] for p in proba], expected)
    # The raw-feature trees see NaN too when a model has no imputer: the walk checks
    # missing_go_to_left; verified on load against scikit-learn with NaNs.
    raw = np.full((3, features.shape[1]), np.nan)
    np.testing.assert_array_equal(predictor._walk(raw), estimator.predict_proba(raw))


def test_schema_from_signature_and_config(trained):
    config = trained[0]
    columns = config.feature_columns
    signature = [(c, "double", True) for c in columns]
    assert build_schema(signature, config).names == tuple(columns)
    # Without a config the signature's own types and required flags decide.
    alone = build_schema([("a", "long", True), ("b", "string", False)], None)
    assert alone.columns == (Column("a", "int", False), Column("b", "str", True))
    with pytest.raises(Exception, match="cannot check inputs"):
        build_schema(None, None)


def test_value_checks():
    schema = InputSchema(
        (
            Column("x", "float"),
            Column("n", "int", nullable=True),
            Column("s", "str"),
            Column("b", "bool"),
        )
    )
    rows = schema.check_records([{"x": 1, "n": None, "s": "a", "b": False}], max_abs=1e6)
    assert rows[0][0] == 1.0 and math.isnan(rows[0][1]) and rows[0][2:] == ["a", False]
    assert schema.check_records([{"x": 1.5, "n": 3.0, "s": "", "b": True}], max_abs=1e6)
    bad = [
        {"x": 1.0, "n": 2.5, "s": "a", "b": True},  # non-integral int
        {"x": 2e6, "n": 1, "s": "a", "b": True},  # over max_abs
        {"x": 1.0, "n": 1, "s": 3, "b": True},  # number in a string column
        {"x": 1.0, "n": 1, "s": "a", "b": 1},  # number in a bool column
    ]
    with pytest.raises(RequestRejected) as exc:
        schema.check_records(bad, max_abs=1e6)
    assert exc.value.status_code == 422
    assert [(e["row"], e["column"]) for e in exc.value.errors] == [
        (0, "n"),
        (1, "x"),
        (2, "s"),
        (3, "b"),
    ]
    assert "(and 3 more)" in exc.value.message
    many = [{"x": "no", "n": 1, "s": "a", "b": True}] * 100
    with pytest.raises(RequestRejected) as exc:
        schema.check_records(many, max_abs=1e6)
    assert len(exc.value.errors) == 20 and "more)" in exc.value.message
    with pytest.raises(RequestRejected, match="JSON"):
        parse_records(b'{"records": [{"x": 1' + b"0" * 5000 + b"}]}", content_type=None, max_rows=5)


@pytest.mark.parametrize(
    "records",
    [
        [{"x": 1.0, "n": 2.5}],  # non-integral int
        [{"x": 2e6, "n": 1}],  # over max_abs
        [{"x": 1.0, "n": 2**63}],  # beyond int64
        [{"x": float("nan"), "n": 1}],  # NaN (what json's parse_constant gives)
        [{"x": 1.0, "n": None}, {"x": None, "n": 1}],  # null: allowed in n only
        [{"x": True, "n": 1}],  # a boolean is not a number
        [{"x": "1", "n": 1}],  # nor a numeric string
        [{"x": 1.0}],  # missing column
        [{"x": 1.0, "n": 1, "extra": 2}],  # unknown column
        [{"x": 1.0, "n": 1}, [1.0, 1]],  # not an object
        [{"x": 1.0, "n": 1}] * 3 + [{"x": 1e9, "n": 0.5}] * 30,  # many problems
    ],
)
def test_column_wise_check_gives_the_per_value_verdict(records):
    """check_batch (the service's NumPy path) accepts and refuses exactly what
    check_records does, with the same messages and the same values."""
    schema = InputSchema((Column("x", "float"), Column("n", "int", nullable=True)))
    try:
        expected = schema.check_records(records, max_abs=1e6)
    except RequestRejected as exc:
        with pytest.raises(RequestRejected) as got:
            schema.check_batch(records, max_abs=1e6)
        assert (got.value.status_code, got.value.message, got.value.errors) == (
            exc.status_code,
            exc.message,
            exc.errors,
        )
    else:
        got_rows = schema.check_batch(records, max_abs=1e6)
        np.testing.assert_array_equal(np.asarray(got_rows, dtype=float), np.asarray(expected))


def test_column_wise_check_of_good_batches():
    schema = InputSchema((Column("x", "float"), Column("n", "int"), Column("y", "float")))
    records = [{"y": 0.5, "x": -3, "n": 7.0}, {"x": 1e6, "n": -(2**40), "y": -1e-300}]
    matrix = schema.check_batch(records, max_abs=1e13)
    assert isinstance(matrix, np.ndarray) and matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, schema.check_records(records, max_abs=1e13))
    single = InputSchema((Column("only", "float"),))
    np.testing.assert_array_equal(single.check_batch([{"only": 2}], max_abs=10), [[2.0]])


async def test_body_limit_counts_streamed_bytes():
    seen: list[bytes] = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = iter([{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 3)

    async def receive():
        return next(messages)

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    limited = BodySizeLimit(app, max_bytes=1024)
    await limited({"type": "http", "headers": []}, receive, send)
    assert sent[0]["status"] == 413 and len(seen) == 1  # stopped at the second chunk


def test_prediction_log_partitions_and_since(tmp_path):
    log = PredictionLog(tmp_path / "log", flush_seconds=0.05, flush_records=2)
    log.start()
    yesterday = datetime.now(UTC) - timedelta(days=1)
    common = {"model": "m", "version": "1", "predictions": [0.5], "probabilities": None}
    log.submit(ids=["old"], inputs=[{"a": 1}], ts=yesterday.timestamp(), **common)
    log.submit(ids=["new"], inputs=[{"a": 2}], **common)
    log.close()
    days = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert days == [f"date={yesterday:%Y-%m-%d}", f"date={datetime.now(UTC):%Y-%m-%d}"]
    part = next((tmp_path / "log" / days[1]).glob("part-*.jsonl"))
    with part.open("a") as handle:
        handle.write('{"id": "cut sh')  # a crash mid-line
    assert [r["id"] for r in read_prediction_log(tmp_path / "log")] == ["old", "new"]
    since = datetime.now(UTC) - timedelta(hours=1)
    assert [r["id"] for r in read_prediction_log(tmp_path / "log", since)] == ["new"]
    assert read_prediction_log(tmp_path / "log", until=since.isoformat())[0]["id"] == "old"
    assert "probabilities" not in read_prediction_log(tmp_path / "log")[0]
    assert read_prediction_log(tmp_path / "missing") == []
    with pytest.raises(ConfigError, match="local directory"):
        PredictionLog("s3://bucket/predictions")


def test_server_refuses_a_busy_port_at_once(monkeypatch, capsys):
    from conveyor.serving.server import main

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")  # main() sets them if unset; keep this process as it was
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--pipeline", "busy_port", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["--pipeline", "Not A Name"]) == 2
    assert "Invalid model service settings" in capsys.readouterr().err
