"""The distributed runtime of ``docker-compose.yaml``, run natively on loopback.

===================================================  ==============================================
``docker-compose.yaml`` service                      here
===================================================  ==============================================
``postgres`` (databases ``airflow`` and ``mlflow``)  a private PostgreSQL cluster (initdb, pg_ctl)
``redis`` (Celery broker)                            ``redis-server`` on a free port
``minio`` + ``createbuckets``                        moto's S3 server + ``create_bucket``
``mlflow`` (Postgres store, ``s3://mlflow``)         ``mlflow server``
``airflow-init``                                     ``airflow db migrate``, pool, data registry
``airflow-apiserver``/``-scheduler``/                :class:`conveyor_runtime.supervisor.AirflowSupervisor`
``-dag-processor``/``-triggerer``
``airflow-worker``                                   ``airflow celery worker --concurrency 2``
``model-service``                                    ``conveyor serve --pipeline breast_cancer``
===================================================  ==============================================

The pipeline YAML is a copy whose ``deploy.service_url`` names our model service's port, so
the deploy task verifies against this stack's service, never a demo's on 127.0.0.1:8000.

Every server listens on 127.0.0.1 and a free port; every wait has a timeout; :meth:`NativeStack
.stop` stops what :meth:`NativeStack.start` started (process sessions: SIGTERM, then SIGKILL).

:data:`FIXED_ENV` and :data:`ADDRESS_ENV` are the contract with ``docker-compose.yaml``
(checked by ``tests/system/test_compose.py``): the same settings, only addresses and secrets
differ.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from conveyor.settings import TELEMETRY_OFF, Settings
from conveyor_runtime.airflow_api import AirflowClient
from conveyor_runtime.processes import free_port, session_members
from conveyor_runtime.supervisor import AirflowSupervisor

log = logging.getLogger(__name__)
#: The project checkout (its dags/, plugins/ and include/pipelines/).
REPO_ROOT = Path(__file__).resolve().parents[3]

LOOPBACK = "127.0.0.1"
#: Buckets the ``createbuckets`` service makes in MinIO: run artifacts, MLflow, DVC remote.
BUCKETS = ("conveyor-artifacts", "mlflow", "conveyor-dvc")
#: The demo pipeline the stack trains and serves.
PIPELINE = "breast_cancer"
#: Databases in the one Postgres server.
DATABASES = ("airflow", "mlflow")
#: Sized for a small machine, and the same in docker-compose.yaml.
CELERY_CONCURRENCY = 2
#: Celery node name of the test's worker (``%h``: this host's name).
WORKER_NAME = "conveyor-test-worker@%h"

#: Settings with the same value in docker-compose.yaml and in the native stack.
FIXED_ENV: dict[str, str] = {
    **TELEMETRY_OFF,
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__PARALLELISM": "8",
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(CELERY_CONCURRENCY),
    "AIRFLOW__API__WORKERS": "1",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "true",
    "CONVEYOR_ARTIFACT_ROOT": "s3://conveyor-artifacts",
    # New experiments store artifacts through the MLflow server (--artifacts-destination
    # s3://mlflow): tasks and the model service need no S3 access for MLflow.
    "CONVEYOR_MLFLOW_ARTIFACTS": "mlflow-artifacts:///experiments",
    # The DVC remote of the data registry that airflow-init creates.
    "CONVEYOR_DVC_REMOTE": "s3://conveyor-dvc",
    "AWS_DEFAULT_REGION": "us-east-1",
}

#: Settings of the MLflow server (besides its Postgres store URI), the same in both.
MLFLOW_SERVER_ENV: dict[str, str] = {
    # Artifacts go through the server to S3; clients need no S3 access for MLflow.
    "MLFLOW_ARTIFACTS_DESTINATION": "s3://mlflow",
    # MLflow 3's GenAI job runner (8 more processes) is not used by Conveyor.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    # Host headers the server accepts: other containers (mlflow:5000), a browser, loopback.
    "MLFLOW_SERVER_ALLOWED_HOSTS": "mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*",
}

#: Settings both must have whose values are addresses or secrets -> required value prefix.
ADDRESS_ENV: dict[str, str] = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://",
    "AIRFLOW__CELERY__BROKER_URL": "redis://",
    "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql+psycopg2://",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://",
    "AIRFLOW__CORE__FERNET_KEY": "",
    "AIRFLOW__API_AUTH__JWT_SECRET": "",
    "AIRFLOW__API__SECRET_KEY": "",
    "MLFLOW_TRACKING_URI": "http://",
    "MLFLOW_S3_ENDPOINT_URL": "http://",
    "AWS_ENDPOINT_URL": "http://",
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "CONVEYOR_DATA_REGISTRY": "",
}

#: Debian packages that provide the servers (the project's setup installs them).
APT_PACKAGES = ("postgresql", "redis-server")


class StackError(RuntimeError):
    """A service of the native stack did not start; the message has its log's tail."""


# --------------------------------------------------------------------------- binaries


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def postgres_bindir() -> Path | None:
    """Directory of PostgreSQL's server binaries (Debian keeps them off PATH)."""
    found = shutil.which("pg_ctl")
    if found and Path(found).resolve().with_name("initdb").exists():
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version_key)
    return Path(candidates[-1]).parent if candidates else None


def redis_server() -> str | None:
    return shutil.which("redis-server")


def missing_binaries() -> list[str]:
    """What this machine lacks to run the stack, as messages."""
    missing = []
    if postgres_bindir() is None:
        missing.append("PostgreSQL server (initdb, pg_ctl)")
    if redis_server() is None:
        missing.append("redis-server")
    if os.geteuid() == 0:
        # initdb refuses root: the cluster runs as Debian's `postgres` user, via runuser.
        if shutil.which("runuser") is None:
            missing.append("runuser (util-linux), to run initdb as the postgres user")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing.append("the `postgres` system user (created by Debian's postgresql package)")
    return missing


def distinct_free_ports(names: tuple[str, ...]) -> dict[str, int]:
    """A free loopback port for each name, no two the same (the OS may hand one out twice
    when each probe socket is closed before the next)."""
    ports: dict[str, int] = {}
    while len(ports) < len(names):
        port = free_port()
        if port not in ports.values():
            ports[names[len(ports)]] = port
    return ports


def venv_bin(name: str) -> str:
    """A console script of this virtualenv (``airflow``, ``mlflow``, ``moto_server``)."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise StackError(f"{name} is not installed next to {sys.executable}; run `uv sync`.")
    return str(path)


# --------------------------------------------------------------------------- processes


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def wait_for(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    *,
    proc: Proc | None = None,
    poll: float = 0.5,
) -> float:
    """Poll ``check`` until true; returns the seconds it took. Fails fast if ``proc`` exits."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(Exception):
            if check():
                return time.monotonic() - started
        if proc is not None and not proc.alive():
            raise StackError(
                f"{proc.name} exited (code {proc.popen.returncode}) while waiting for {what}; "
                f"last lines of {proc.log}:\n{tail(proc.log)}"
            )
        if time.monotonic() - started > timeout:
            detail = f"; last lines of {proc.log}:\n{tail(proc.log)}" if proc else ""
            raise StackError(f"Timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(poll)


@dataclass
class Proc:
    """A server we started in its own session; :meth:`stop` ends the whole session."""

    name: str
    popen: subprocess.Popen
    log: Path

    @classmethod
    def spawn(cls, name: str, cmd: list[str], env: Mapping[str, str], logs: Path) -> Proc:
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(
                cmd,
                env=dict(env),
                cwd=logs,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log.info("started %s (pid %s): %s", name, popen.pid, " ".join(cmd))
        return cls(name, popen, log_path)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20) -> float:
        """SIGTERM the session (task processes move to their own groups but stay in it),
        wait up to ``timeout``, then SIGKILL whatever is left; returns the seconds it took."""
        started = time.monotonic()
        sid = self.popen.pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
            victims = session_members({sid})
            if self.alive():
                victims.add(sid)
            if not victims:
                break
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self.popen.poll()
                if not session_members({sid}) and not self.alive():
                    break
                time.sleep(0.2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        seconds = time.monotonic() - started
        log.info("stopped %s in %.1f s", self.name, seconds)
        return seconds


# --------------------------------------------------------------------------- services


class PostgresCluster:
    """A throw-away PostgreSQL cluster on 127.0.0.1:``port`` with trust auth for ``user``.

    ``initdb`` refuses to run as root: as root the cluster belongs to the ``postgres`` user
    (created by Debian's ``postgresql`` package) and its commands run through ``runuser``.
    """

    def __init__(self, port: int, user: str = "conveyor") -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise StackError("PostgreSQL is not installed (apt-get install -y postgresql)")
        self.bindir = bindir
        self.port = port
        self.user = user
        # Not under pytest's tmp dirs: those are private to root, postgres must traverse.
        self.root = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        if done.returncode != 0:
            raise StackError(
                f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                f"{tail(self.log)}"
            )
        return done

    def start(self, timeout: float = 60) -> None:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-instructions", timeout=timeout,
        )  # fmt: skip
        options = " ".join(
            [
                f"-p {self.port}",
                f"-c listen_addresses={LOOPBACK}",
                f"-k {self.root}",  # unix socket in our directory, not /var/run/postgresql
                "-c max_connections=200",
                # A test cluster: durability is not needed, speed is.
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            ]
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10,
        )  # fmt: skip

    def url(self, database: str, scheme: str = "postgresql+psycopg2") -> str:
        return f"{scheme}://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host=LOOPBACK, port=self.port, user=self.user, dbname=database, connect_timeout=10
        )

    def create_database(self, name: str) -> None:
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def query(self, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def stop(self) -> None:
        try:
            if self.data.exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")
        except (StackError, subprocess.TimeoutExpired) as exc:
            log.warning("pg_ctl stop failed (%s); killing the postmaster", exc)
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _s3_client(endpoint: str, env: Mapping[str, str]):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


# --------------------------------------------------------------------------- the stack


@dataclass
class NativeStack:
    """Postgres, Redis, S3 (moto), MLflow and Airflow with the CeleryExecutor on loopback."""

    home: Path
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    timings: dict[str, float] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)
    postgres: PostgresCluster | None = None
    supervisor: AirflowSupervisor | None = None
    airflow_url: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    _stops: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def s3_endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]

    def s3(self):
        """A boto3 S3 client for the stand-in of MinIO."""
        return _s3_client(self.s3_endpoint, self.env)

    def client(self) -> AirflowClient:
        return AirflowClient(self.airflow_url, "admin", "admin", timeout=60)

    # -- configuration ------------------------------------------------------------------

    def build_env(self) -> dict[str, str]:
        """The environment of every process: the compose file's, with loopback addresses."""
        from cryptography.fernet import Fernet

        pg, redis, s3, mlflow = (self.ports[k] for k in ("postgres", "redis", "s3", "mlflow"))
        model = self.ports["model"]
        airflow_home = self.home / "airflow"
        dags = self.home / "dags"
        env = dict(self.base_env)
        env.update(FIXED_ENV)
        env.update(
            {
                "CONVEYOR_HOME": str(self.home),
                "AIRFLOW_HOME": str(airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    airflow_home / "passwords.json"
                ),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://conveyor@{LOOPBACK}:{pg}/airflow",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://{LOOPBACK}:{redis}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://conveyor@{LOOPBACK}:{pg}/airflow",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                # A single run, deterministically: no asset watcher starting a second one.
                "CONVEYOR_DATA_WATCHER": "false",
                "CONVEYOR_DATA_REGISTRY": str(self.home / "data-registry"),
                "CONVEYOR_PIPELINES_DIR": str(self.home / "pipelines"),
                "CONVEYOR_ADMIN_TOKEN": secrets.token_urlsafe(24),
                "CONVEYOR_SERVE_HOST": LOOPBACK,
                "CONVEYOR_SERVE_PORT": str(model),
                "CONVEYOR_PREDICTION_LOG_DIR": str(self.home / "predictions" / PIPELINE),
                "MLFLOW_TRACKING_URI": f"http://{LOOPBACK}:{mlflow}",
                "MLFLOW_S3_ENDPOINT_URL": f"http://{LOOPBACK}:{s3}",
                "AWS_ENDPOINT_URL": f"http://{LOOPBACK}:{s3}",
                "AWS_ACCESS_KEY_ID": "conveyor-test",
                "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(16),
                "AWS_EC2_METADATA_DISABLED": "true",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1",
            }
        )
        # The execution API URL is the supervisor's (it knows the api-server's port).
        env.pop("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", None)
        return env

    # -- start/stop ---------------------------------------------------------------------

    def _timed(self, what: str, started: float) -> None:
        self.timings[what] = round(time.monotonic() - started, 1)

    def start(self, timeout: float = 240) -> NativeStack:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        t0 = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        names = ("postgres", "redis", "s3", "mlflow", "airflow", "model")
        self.ports = distinct_free_ports(names)
        self.env = env = self.build_env()
        dags = Path(env["AIRFLOW__CORE__DAGS_FOLDER"])
        dags.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / "dags" / f"{PIPELINE}.py", dags / f"{PIPELINE}.py")
        self._write_pipeline(Path(env["CONVEYOR_PIPELINES_DIR"]))
        airflow_home = Path(env["AIRFLOW_HOME"])
        airflow_home.mkdir(parents=True, exist_ok=True)
        Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).write_text(
            json.dumps({"admin": "admin"})
        )

        # postgres: one server, the airflow and mlflow databases (compose: postgres + init)
        started = time.monotonic()
        self.postgres = PostgresCluster(self.ports["postgres"])
        self._stops.callback(self._stop_timed, "stop postgres", self.postgres.stop)
        self.postgres.start()
        for name in DATABASES:
            self.postgres.create_database(name)
        self._timed("postgres", started)

        # Everything that needs only Postgres starts now, in parallel: the MLflow server
        # (it migrates its database on start), the Airflow DB migration, Redis and S3.
        started = time.monotonic()
        mlflow_env = {
            **env,
            **MLFLOW_SERVER_ENV,
            "MLFLOW_BACKEND_STORE_URI": self.postgres.url("mlflow"),
        }
        mlflow_cmd = [venv_bin("mlflow"), "server", "--host", LOOPBACK]
        mlflow_cmd += ["--port", str(self.ports["mlflow"]), "--workers", "1"]
        self._spawn("mlflow", mlflow_cmd, mlflow_env)
        airflow = venv_bin("airflow")
        migrate = self._spawn("airflow-db-migrate", [airflow, "db", "migrate"])
        redis_dir = self.home / "redis"
        redis_dir.mkdir(exist_ok=True)
        redis_cmd = [redis_server() or "redis-server", "--port", str(self.ports["redis"])]
        redis_cmd += ["--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
        redis_cmd += ["--dir", str(redis_dir), "--protected-mode", "yes"]
        self._spawn("redis", redis_cmd)
        s3_cmd = [venv_bin("moto_server"), "-H", LOOPBACK, "-p", str(self.ports["s3"])]
        self._spawn("s3", s3_cmd)
        wait_for(self._redis_ping, "redis", 30, proc=self.procs["redis"])
        wait_for(
            lambda: httpx.get(f"{self.s3_endpoint}/moto-api/", timeout=2).status_code == 200,
            "moto S3 server",
            60,
            proc=self.procs["s3"],
        )
        s3 = self.s3()
        for bucket in BUCKETS:
            s3.create_bucket(Bucket=bucket)
        self._timed("redis + s3 buckets", started)
        # The DVC data registry with its remote on S3 (compose: airflow-init).
        registry = self._spawn(
            "data-registry",
            [
                sys.executable,
                "-c",
                "import os; from pathlib import Path\n"
                "from conveyor_runtime.demo import init_data_registry\n"
                "print(init_data_registry(Path(os.environ['CONVEYOR_DATA_REGISTRY']),"
                f" os.environ['CONVEYOR_DVC_REMOTE'], [{PIPELINE!r}]))",
            ],
        )
        self._wait_exit(migrate, timeout)
        self._timed("airflow db migrate", started)

        # Airflow: scheduler, dag-processor, triggerer, api-server and one Celery worker,
        # started together; the pool is created meanwhile.
        started = time.monotonic()
        pool = self._spawn(
            "airflow-pool",
            [airflow, "pools", "set", "conveyor_training", "1", "Conveyor training tasks"],
        )
        settings = Settings.from_env(env)
        self.supervisor = AirflowSupervisor(settings, base_env=env)
        self._stops.callback(self._stop_timed, "stop airflow", self.supervisor.stop, timeout=20)
        state = self.supervisor.start(port=self.ports["airflow"], wait=False)
        self.airflow_url = state["url"]
        self.env = worker_env = self.supervisor.runtime_env(state["port"], state["side_ports"])
        worker_cmd = [airflow, "celery", "worker", "--concurrency", str(CELERY_CONCURRENCY)]
        worker_cmd += ["--celery-hostname", WORKER_NAME, "--without-gossip", "--without-mingle"]
        worker = self._spawn("celery-worker", worker_cmd, worker_env, stop_timeout=30)
        wait_for(
            lambda: httpx.get(f"{env['MLFLOW_TRACKING_URI']}/health", timeout=2).status_code == 200,
            "MLflow server /health",
            timeout,
            proc=self.procs["mlflow"],
        )
        self._timed("mlflow healthy", started)
        # The model service: 503 until a production model exists, then serves it.
        service = self._spawn(
            "model-service", [venv_bin("conveyor"), "serve", "--pipeline", PIPELINE], env
        )
        self.supervisor.wait_healthy(timeout=timeout, state=state)
        self._timed("airflow components healthy", started)
        wait_for(
            lambda: " ready." in worker.log.read_text(errors="replace"),
            "the Celery worker",
            timeout,
            proc=worker,
        )
        self._timed("celery worker ready", started)
        self._wait_exit(pool, 120)
        self._wait_exit(registry, timeout)
        wait_for(
            lambda: httpx.get(f"{self.service_url}/health", timeout=2).status_code in (200, 503),
            "the model service",
            timeout,
            proc=service,
        )
        self._timed("stack total", t0)

    @property
    def service_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['model']}"

    def _write_pipeline(self, directory: Path) -> None:
        """The demo pipeline with ``deploy.service_url`` pointing at our model service."""
        import yaml

        directory.mkdir(parents=True, exist_ok=True)
        source = REPO_ROOT / "include" / "pipelines" / f"{PIPELINE}.yaml"
        config = yaml.safe_load(source.read_text())
        config.setdefault("deploy", {})["service_url"] = self.service_url
        (directory / f"{PIPELINE}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _spawn(
        self,
        name: str,
        cmd: list[str],
        env: Mapping[str, str] | None = None,
        stop_timeout: float = 15,
    ) -> Proc:
        proc = Proc.spawn(name, cmd, env or self.env, self.logs)
        self.procs[name] = proc
        self._stops.callback(self._stop_timed, f"stop {name}", proc.stop, stop_timeout)
        return proc

    def _stop_timed(self, what: str, stop: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        started = time.monotonic()
        try:
            stop(*args, **kwargs)
        finally:
            self._timed(what, started)

    def _wait_exit(self, proc: Proc, timeout: float) -> None:
        try:
            code = proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise StackError(
                f"{proc.name} did not finish within {timeout:.0f} s:\n{tail(proc.log)}"
            ) from exc
        if code != 0:
            raise StackError(f"{proc.name} failed ({code}):\n{tail(proc.log)}")

    def _redis_ping(self) -> bool:
        import redis

        client = redis.Redis(host=LOOPBACK, port=self.ports["redis"], socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self) -> None:
        """Stop everything, the Celery worker first, Postgres last."""
        self._stops.close()

    def __enter__(self) -> NativeStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        return {"home": str(self.home), "ports": self.ports, "timings": self.timings}
