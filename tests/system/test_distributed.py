"""The distributed runtime of ``docker-compose.yaml``, without Docker: the same services run
natively on loopback (``services/stack.py``) and the training DAG runs through them.

PostgreSQL (Airflow metadata DB, Celery result backend, MLflow store) and Redis (Celery broker)
come from Debian packages (``apt-get install -y postgresql redis-server``); moto's S3 server
stands in for MinIO, so run artifacts, MLflow's artifacts and the DVC remote take the S3 code
path. Airflow runs the CeleryExecutor: scheduler, dag-processor, triggerer and api-server under
Conveyor's supervisor plus one ``airflow celery worker --concurrency 2``; an MLflow server with
a Postgres store and the model service complete the picture. The run is triggered through the
REST API and must end with its model registered, deployed and served.

Runs by default (``make test`` installs the Debian packages through ``make system-deps``).
Without PostgreSQL or Redis the tests are skipped with the install command; under CI
(``CI=true``) they fail instead, so a missing install step cannot hide behind a green run.
``CONVEYOR_SKIP_DISTRIBUTED_TESTS=1`` skips them on request. The stack starts once for the
module (one fixture) and every test checks another side of the same training run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from services.deps import opt_out_mark, require
from services.stack import (
    APT_PACKAGES,
    BUCKETS,
    FIXED_ENV,
    PIPELINE,
    NativeStack,
    missing_binaries,
    tail,
)

from conveyor.artifacts import safe_segment
from conveyor_runtime.processes import port_free, session_members

pytestmark = [
    pytest.mark.system,
    opt_out_mark("CONVEYOR_SKIP_DISTRIBUTED_TESTS", "the distributed stack tests"),
    # Generous: the first test also starts the stack; every wait inside has its own bound,
    # and a busy 2-core machine needs the room.
    pytest.mark.timeout(1800),
]

DAG_ID = "train_breast_cancer"
MODEL = PIPELINE
#: Seconds each service may take to become ready (the stack: ~80 s on a quiet 2-core machine).
START_TIMEOUT = 300
#: Seconds the training run may take (~2 min on a quiet 2-core machine, cold worker).
RUN_TIMEOUT = 900


def require_services() -> None:
    problems = missing_binaries()
    try:
        import asyncpg  # noqa: F401  (Airflow 3's async metadata-DB engine on Postgres)
    except ImportError:
        problems.append(
            "the asyncpg package, Airflow's async Postgres driver (a project dependency)"
        )
    require(problems, "The distributed stack", f"apt-get install -y {' '.join(APT_PACKAGES)}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    """Postgres, Redis, S3, MLflow and Airflow (CeleryExecutor) on free loopback ports;
    everything is stopped afterwards, and the teardown checks that nothing survived."""
    require_services()
    native = NativeStack(tmp_path_factory.mktemp("distributed"))
    native.start(timeout=START_TIMEOUT)
    print(f"\n[distributed] stack ready: {native.describe()}")
    try:
        yield native
    finally:
        started = time.monotonic()
        native.stop()
        stops = {k: v for k, v in native.timings.items() if k.startswith("stop ")}
        print(f"\n[distributed] stopped in {time.monotonic() - started:.1f} s: {stops}")
        leftovers = {
            name: session_members({proc.popen.pid}) | ({proc.popen.pid} if proc.alive() else set())
            for name, proc in native.procs.items()
        }
        assert not {k: v for k, v in leftovers.items() if v}, f"processes survived: {leftovers}"
        assert native.supervisor is not None
        assert not native.supervisor.read_state(), "the Airflow supervisor kept its state"
        assert native.postgres is not None and not native.postgres.root.exists()
        assert port_free(native.ports["postgres"]), "PostgreSQL still listens"


@pytest.fixture(scope="module")
def training_run(stack: NativeStack) -> dict[str, Any]:
    """One run of the training DAG, triggered through the REST API, waited for to the end."""
    started = time.monotonic()
    with stack.client() as client:
        client.wait_for_dag(DAG_ID, timeout=180)
        client.unpause(DAG_ID)
        run_id = client.trigger(DAG_ID, conf={"force": True}, note="distributed system test")
        progress = client.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT, poll=2)
        task_instances = client.task_instances(DAG_ID, run_id)
        logs = {
            ti["task_id"]: client.task_log(DAG_ID, run_id, ti["task_id"], ti["try_number"] or 1)
            for ti in task_instances
            if ti["state"] != "success" and ti.get("try_number")
        }
    seconds = time.monotonic() - started
    print(f"\n[distributed] {DAG_ID} {progress.state} in {seconds:.1f} s: {progress.states}")
    return {"run_id": run_id, "progress": progress, "tis": task_instances, "failed_logs": logs}


def test_training_run_succeeds_on_celery_postgres_redis(stack, training_run):
    progress = training_run["progress"]
    details = "\n".join(
        f"--- {task}\n{log[-3000:]}" for task, log in training_run["failed_logs"].items()
    )
    worker_log = tail(stack.procs["celery-worker"].log, 30)
    assert progress.state == "success", (
        f"{progress.states}\n{details}\n--- celery worker\n{worker_log}"
    )
    assert training_run["tis"], "the run has no task instances"
    assert {ti["task_id"]: ti["state"] for ti in training_run["tis"]} == dict.fromkeys(
        progress.states, "success"
    )
    assert "register_model" in progress.states
    # The configuration docker-compose.yaml describes (test_compose.py checks that side).
    for key, value in FIXED_ENV.items():
        assert stack.env[key] == value, key
    assert stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert stack.env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://127.0.0.1:")


def test_every_task_ran_on_the_celery_worker(stack, training_run):
    run_id = training_run["run_id"]
    worker_log = stack.procs["celery-worker"].log.read_text(errors="replace")
    executed = [line for line in worker_log.splitlines() if "Executing workload in Celery" in line]
    for ti in training_run["tis"]:
        marker = f"run_id={run_id}/task_id={ti['task_id']}/"
        assert any(marker in line for line in executed), f"{ti['task_id']} not run by Celery"
        assert ti["queue"] == "default" and ti["hostname"], ti
    # Celery stored each task's result in its Postgres result backend (the last one may
    # still be finishing: the run is done when the task reports, before Celery records it).
    deadline = time.monotonic() + 60
    while True:
        rows = dict(
            stack.postgres.query(
                "airflow", "SELECT status, count(*) FROM celery_taskmeta GROUP BY status"
            )
        )
        if rows.get("SUCCESS", 0) >= len(training_run["tis"]) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert rows.get("SUCCESS", 0) >= len(training_run["tis"]), rows
    assert "FAILURE" not in rows, rows


def test_artifacts_are_in_the_s3_bucket(stack, training_run):
    prefix = f"{DAG_ID}/{safe_segment(training_run['run_id'])}/"
    listing = stack.s3().list_objects_v2(Bucket="conveyor-artifacts", Prefix=prefix)
    keys = [obj["Key"].removeprefix(prefix) for obj in listing.get("Contents", [])]
    steps = {key.split("/")[0] for key in keys if key.endswith("/manifest.json")}
    assert {"data", "validation", "evaluation"} <= steps, keys
    assert any(key.startswith("data/try-1/") and key.endswith(".csv") for key in keys), keys
    assert not (stack.home / "artifacts").exists(), "artifacts went to a local directory"


def test_model_version_is_registered_in_the_postgres_backed_mlflow(stack, training_run):
    run_id = training_run["run_id"]
    api = f"{stack.env['MLFLOW_TRACKING_URI']}/api/2.0/mlflow"
    found = httpx.get(
        f"{api}/model-versions/search", params={"filter": f"name = '{MODEL}'"}, timeout=30
    ).json()["model_versions"]
    ours = [v for v in found if {"key": "conveyor.run_id", "value": run_id} in v.get("tags", [])]
    assert len(ours) == 1, found
    version = ours[0]
    tags = {t["key"]: t["value"] for t in version["tags"]}
    assert tags.get("conveyor.complete") == "true", tags
    production = httpx.get(
        f"{api}/registered-models/alias", params={"name": MODEL, "alias": "production"}, timeout=30
    ).json()["model_version"]
    assert production["version"] == version["version"]

    # The tracking server stores it in Postgres...
    rows = stack.postgres.query(
        "mlflow",
        "SELECT v.version, v.status FROM model_versions v JOIN model_version_tags t "
        "ON t.name = v.name AND t.version = v.version "
        "WHERE v.name = %s AND t.key = 'conveyor.run_id' AND t.value = %s",
        (MODEL, run_id),
    )
    assert rows == [(int(version["version"]), "READY")], rows
    # ...and the model files on S3 (proxied: --artifacts-destination s3://mlflow).
    s3 = stack.s3()
    model_files = [
        obj["Key"]
        for obj in s3.list_objects_v2(Bucket="mlflow", Prefix="experiments/").get("Contents", [])
    ]
    assert any(Path(key).name == "MLmodel" for key in model_files), model_files
    assert any(Path(key).name == "model.skops" for key in model_files), model_files
    # The data was pulled from the DVC remote on S3: its md5 is the object's name.
    md5 = tags["conveyor.data_md5"]
    dvc = s3.list_objects_v2(Bucket="conveyor-dvc").get("Contents", [])
    assert f"files/md5/{md5[:2]}/{md5[2:]}" in {obj["Key"] for obj in dvc}
    assert set(BUCKETS) == {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_the_model_service_serves_the_deployed_version(stack, training_run):
    """deploy_model verified against this stack's service (the YAML copy points at it)."""
    api = f"{stack.env['MLFLOW_TRACKING_URI']}/api/2.0/mlflow"
    production = httpx.get(
        f"{api}/registered-models/alias", params={"name": MODEL, "alias": "production"}, timeout=30
    ).json()["model_version"]
    deadline = time.monotonic() + 120  # the service polls the alias every few seconds
    while True:
        health = httpx.get(f"{stack.service_url}/health", timeout=10)
        served = httpx.get(f"{stack.service_url}/version", timeout=10)
        if served.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert health.status_code == 200, health.text
    assert str(served.json().get("version")) == str(production["version"]), served.text
