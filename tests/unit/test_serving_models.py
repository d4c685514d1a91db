"""One model-service process serving several models by name, against real MLflow models.

``python -m conveyor.serving.server --pipeline multi_a,multi_b --pipeline multi_c`` serves
three registered models: ``multi_a`` and ``multi_b`` each have a production version,
``multi_c`` has none yet. Routes under ``/models/{name}`` act on one model; the root
``/predict`` of a several-model service refuses with a pointer to them; a deployment
probe given the service's root finds its model's routes by itself.
"""

from __future__ import annotations

import time

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

from conveyor.deploy.rollout import ServiceProbe
from conveyor.errors import ConfigError
from conveyor.registry import tracking
from conveyor.registry.models import promote
from conveyor.serving.app import create_app
from conveyor.serving.prediction_log import read_prediction_log
from conveyor.serving.settings import ServingSettings

MODELS = ("multi_a", "multi_b", "multi_c")
TOKEN = "multi-model-test-token"


class MultiService(ServiceProcess):
    """The service process with several ``--pipeline`` options."""

    def server_args(self) -> list[str]:
        first, *rest = self.pipeline.split(",")
        return [
            "--pipeline",
            ",".join([first, *rest[:-1]]),
            "--pipeline",
            rest[-1],
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]


@pytest.fixture(scope="module")
def multi(settings, tmp_path_factory):
    """(service, {name: version}, feature columns, test frame, log dir) of the 3-name service."""
    tracking.configure(settings)
    log_dir = tmp_path_factory.mktemp("multi-predictions")
    proc = MultiService(
        ",".join(MODELS),
        env={
            "CONVEYOR_ADMIN_TOKEN": TOKEN,
            "CONVEYOR_PREDICTION_LOG_DIR": str(log_dir),
            "CONVEYOR_SERVE_POLL_SECONDS": "600",
        },
    )
    proc.spawn(tmp_path_factory.mktemp("multi-service") / "service.log")
    try:
        versions = {}
        for name in MODELS[:2]:
            config = breast_cancer_config(name)
            result, train, test = train_breast_cancer(config)
            client, run_id, uri = log_trained(settings, config, result, train)
            versions[name] = register(client, name, uri, run_id, f"{name}-1", pipeline=name)
            promote(client, name, versions[name], reason="multi-model tests", actor="pytest")
        proc.wait_ready()
        for name in MODELS[:2]:
            reload = proc_post(proc, f"/models/{name}/admin/reload", token=TOKEN)
            assert reload.status_code == 200, reload.text
        yield proc, versions, config.feature_columns, test, log_dir
    finally:
        proc.stop()


def proc_post(proc: ServiceProcess, path: str, *, token: str | None = None, **kwargs):
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{proc.url}{path}", headers=headers, timeout=30, **kwargs)


def proc_get(proc: ServiceProcess, path: str):
    import httpx

    return httpx.get(f"{proc.url}{path}", timeout=30)


def test_each_model_answers_by_name(multi):
    proc, versions, columns, test, _ = multi
    records = [row(test, i, columns) for i in range(3)]
    for name in MODELS[:2]:
        response = proc_post(proc, f"/models/{name}/predict", json={"records": records})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == {"name": name, "version": versions[name]}
        assert len(body["predictions"]) == 3
        assert set(body["predictions"][0]["probabilities"]) == {"0", "1"}
        version = proc_get(proc, f"/models/{name}/version").json()
        assert (version["name"], version["version"]) == (name, versions[name])
        assert proc_get(proc, f"/models/{name}/health").status_code == 200


def test_bad_input_names_row_and_column_under_a_model(multi):
    proc, _, columns, test, _ = multi
    records = [row(test, 0, columns), {**row(test, 1, columns), columns[2]: "oops"}]
    response = proc_post(proc, "/models/multi_b/predict", json={"records": records})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"Invalid input at records[1], column {columns[2]!r}: expected a number, got string 'oops'"
    )
    assert response.json()["errors"] == [
        {"row": 1, "column": columns[2], "message": "expected a number, got string 'oops'"}
    ]


def test_unknown_name_and_the_root_routes_say_where_to_go(multi):
    proc, _, columns, test, _ = multi
    body = {"records": [row(test, 0, columns)]}
    unknown = proc_post(proc, "/models/nope/predict", json=body)
    assert unknown.status_code == 404
    assert "Unknown model 'nope'" in unknown.json()["detail"]
    assert all(name in unknown.json()["detail"] for name in MODELS)
    root = proc_post(proc, "/predict", json=body)
    assert root.status_code == 404
    assert "/models/{name}/predict" in root.json()["detail"]
    assert proc_get(proc, "/version").status_code == 404


def test_a_model_without_a_version_is_503_and_health_says_which(multi):
    proc, versions, columns, test, _ = multi
    response = proc_post(proc, "/models/multi_c/predict", json={"records": [row(test, 0, columns)]})
    assert response.status_code == 503
    assert "multi_c@production has no complete version" in response.json()["detail"]
    health = proc_get(proc, "/health")
    assert health.status_code == 503
    body = health.json()
    assert (body["models_loaded"], body["models_total"]) == (2, 3)
    assert body["models"]["multi_a"]["model"] == {"name": "multi_a", "version": versions["multi_a"]}
    assert "multi_c" in body["detail"]
    listed = proc_get(proc, "/models").json()["models"]
    assert [(m["name"], m["version"]) for m in listed] == [
        ("multi_a", versions["multi_a"]),
        ("multi_b", versions["multi_b"]),
        ("multi_c", None),
    ]


def test_admin_reload_per_model_needs_the_token(multi):
    proc, versions, _, _, _ = multi
    refused = proc_post(proc, "/models/multi_a/admin/reload")
    assert refused.status_code == 401
    ok = proc_post(proc, "/models/multi_a/admin/reload", token=TOKEN)
    assert ok.status_code == 200
    assert ok.json()["model"]["version"] == versions["multi_a"]
    waiting = proc_post(proc, "/models/multi_c/admin/reload", token=TOKEN)
    assert waiting.status_code == 503
    assert "No complete version of multi_c" in waiting.json()["detail"]


def test_deploy_probe_given_the_root_uses_the_models_routes(multi):
    """What a deployment does: reload, read /version, predict, from the service's root URL."""
    proc, versions, columns, test, _ = multi
    probe = ServiceProbe(proc.url, token=TOKEN, model="multi_b")
    try:
        assert probe.url == f"{proc.url}/models/multi_b"
        ok, message = probe.wait_for(
            versions["multi_b"], rows=[row(test, 0, columns)], timeout=30, interval=0.5
        )
        assert ok, message
    finally:
        probe.close()


def test_each_model_logs_its_own_predictions(multi):
    """Both models log into the shared CONVEYOR_PREDICTION_LOG_DIR, one file each, and the
    monitor's reader sees every id with the right model (flushed within a second)."""
    import time

    proc, _, columns, test, log_dir = multi
    ids = {}
    for name in MODELS[:2]:
        response = proc_post(
            proc, f"/models/{name}/predict", json={"records": [row(test, 5, columns)]}
        )
        ids[name] = response.json()["predictions"][0]["id"]
    deadline = time.monotonic() + 20
    found: dict[str, str] = {}
    while time.monotonic() < deadline and len(found) < 2:
        found = {
            r["id"]: r["model"] for r in read_prediction_log(log_dir) if r["id"] in ids.values()
        }
        time.sleep(0.2)
    assert found == {ids["multi_a"]: "multi_a", ids["multi_b"]: "multi_b"}
    parts = sorted(p.name for p in log_dir.glob("date=*/part-*.jsonl"))
    assert any(p.endswith("-multi_a.jsonl") for p in parts)
    assert any(p.endswith("-multi_b.jsonl") for p in parts)


def test_create_app_refuses_a_pipeline_listed_twice(settings, tmp_path):
    serving = ServingSettings.from_env(
        "multi_a", settings=settings, prediction_log_dir=str(tmp_path)
    )
    with pytest.raises(ConfigError, match=r"Pipelines listed more than once: \['multi_a'\]"):
        create_app([serving, serving], settings)
    with pytest.raises(ConfigError, match="at least one pipeline"):
        create_app([], settings)


def test_one_poller_picks_up_each_models_new_version(multi, settings, tmp_path):
    """The same app in this process, polling every 0.2 s: promoting a new version of one
    model swaps that model only (keep last: it moves multi_b's production alias)."""
    _, versions, columns, test, _ = multi
    client = tracking.configure(settings)
    every = [
        ServingSettings.from_env(
            name, settings=settings, prediction_log_dir=str(tmp_path / name), poll_seconds=0.2
        )
        for name in MODELS
    ]
    with serve_in_thread(create_app(every, settings)) as http:
        assert http.get("/models/multi_b/version").json()["version"] == versions["multi_b"]
        source = client.get_model_version("multi_b", versions["multi_b"])
        new = register(client, "multi_b", source.source, source.run_id, "multi_b-2")
        promote(client, "multi_b", new, reason="poll test", actor="pytest")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if http.get("/models/multi_b/version").json()["version"] == new:
                break
            time.sleep(0.1)
        assert http.get("/models/multi_b/version").json()["version"] == new
        assert http.get("/models/multi_a/version").json()["version"] == versions["multi_a"]
        body = {"records": [row(test, 0, columns)]}
        answer = http.post("/models/multi_b/predict", json=body).json()
        assert answer["model"] == {"name": "multi_b", "version": new}
