"""Run Airflow's components as our own child processes, and talk to them over REST API v2.

``airflow standalone`` is awkward to stop (SIGTERM orphans its children; idle LocalExecutor
workers ignore SIGTERM), so the embedded runtime starts the four components itself::

    sup = AirflowSupervisor(Settings.from_env())
    sup.start(port=8080)             # db migrate if needed, spawn, wait for /monitor/health
    client = sup.client()            # AirflowClient, logged in as the demo user
    run_id = client.trigger("train_breast_cancer", conf={"force": True})
    client.wait_for_run("train_breast_cancer", run_id, timeout=600)
    sup.stop()                       # TERM every process group, KILL what is left

Each component runs in its own session (``start_new_session=True``), logs to
``{AIRFLOW_HOME}/logs/<component>.log``, and is recorded in ``{CONVEYOR_HOME}/run/airflow.json``
so another process (``conveyor down``, ``make stop``) can stop it. Task processes put
themselves in their own process group but stay in the component's session, so ``stop`` kills
by session as well as by group.

Core module: it never imports Airflow; it runs the ``airflow`` CLI with
:func:`conveyor_runtime.airflow_env.airflow_env` plus the runtime variables of :meth:`runtime_env`.

================================ ===========================================================
variable                         default
================================ ===========================================================
``CONVEYOR_AIRFLOW_PORT``        ``8080`` (port of the api-server: UI, REST and execution API)
================================ ===========================================================
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from conveyor.errors import ConveyorError
from conveyor.settings import Settings
from conveyor_runtime.airflow_api import AirflowClient, AirflowTimeout
from conveyor_runtime.airflow_env import airflow_env
from conveyor_runtime.bootstrap import airflow_init, sync_airflow_cfg
from conveyor_runtime.processes import (
    DEFAULT_HOST,
    free_port,
    pid_alive,
    port_free,
    same_process_alive,
    session_members,
)

log = logging.getLogger(__name__)

#: The components of a complete Airflow 3 deployment, in start order.
COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
#: Component -> key of its entry in ``GET /api/v2/monitor/health``.
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
DEFAULT_PORT = 8080
#: Side ports Airflow opens besides the api-server: env var -> Airflow's default.
SIDE_PORTS = {
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": 8793,
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": 8794,
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": 8974,
}
STATE_VERSION = 1


class AirflowStartError(ConveyorError):
    """The embedded Airflow could not be started (port taken, component died, not healthy)."""


# --------------------------------------------------------------------------- processes


@dataclass
class ComponentProcess:
    """One started component, as recorded in the state file."""

    name: str
    pid: int
    pgid: int
    create_time: float
    started_at: str
    log: str

    def alive(self) -> bool:
        """Still running, and still the process we started (not a recycled PID)."""
        return same_process_alive(self.pid, self.create_time)

    def owns_session(self) -> bool:
        """Its session id still means our processes: the leader is ours or gone (its
        children may live on), not a recycled PID of someone else's process."""
        try:
            return abs(psutil.Process(self.pgid).create_time() - self.create_time) <= 1.0
        except psutil.NoSuchProcess:
            return True
        except psutil.AccessDenied:
            return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _tail(path: str | Path, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- supervisor


class AirflowSupervisor:
    """Start, inspect and stop the embedded Airflow (SQLite + LocalExecutor) of ``settings``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        host: str = DEFAULT_HOST,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.host = host
        self._base = dict(os.environ if base_env is None else base_env)
        self.run_dir = self.settings.home / "run"
        self.state_file = self.run_dir / "airflow.json"
        self.secrets_file = self.run_dir / "secrets.json"
        self._popen: dict[int, subprocess.Popen] = {}

    # -- configuration ----------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        """:func:`airflow_env` of our settings (no runtime ports or secrets)."""
        return airflow_env(self.settings, base=self._base)

    @property
    def airflow_home(self) -> Path:
        return Path(self.base_env()["AIRFLOW_HOME"])

    @property
    def logs_dir(self) -> Path:
        return self.airflow_home / "logs"

    def _secrets(self) -> dict[str, str]:
        """JWT secret and API secret key, generated once per CONVEYOR_HOME (mode 0600)."""
        if self.secrets_file.exists():
            data = json.loads(self.secrets_file.read_text())
            if data.get("jwt_secret") and data.get("secret_key"):
                return data
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = {"jwt_secret": secrets.token_urlsafe(48), "secret_key": secrets.token_urlsafe(32)}
        fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        return data

    def runtime_env(self, port: int, side_ports: Mapping[str, int] | None = None) -> dict[str, str]:
        """The environment every component gets.

        On top of :func:`airflow_env`: one JWT secret for all components (the scheduler signs
        task tokens, the api-server's execution API checks them), the execution API URL
        LocalExecutor tasks call back to, the api-server's address, and free side ports
        (log servers, scheduler health server) so two instances on one machine don't collide.
        Secrets already set in the environment win; addresses are ours.
        """
        env = self.base_env()
        keys = self._secrets()
        env.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", keys["jwt_secret"])
        env.setdefault("AIRFLOW__API__SECRET_KEY", keys["secret_key"])
        env.update(
            {
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{self._connect_host}:{port}/execution/",
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": DEFAULT_HOST,
                # Log lines of the components go to our per-component files.
                "PYTHONUNBUFFERED": "1",
            }
        )
        for key, value in (side_ports or {}).items():
            env[key] = str(value)
        return env

    @property
    def _connect_host(self) -> str:
        return DEFAULT_HOST if self.host in ("0.0.0.0", "") else self.host

    def _airflow_bin(self) -> str:
        local = Path(sys.executable).with_name("airflow")
        if local.exists():
            return str(local)
        found = shutil.which("airflow", path=self._base.get("PATH"))
        if not found:
            raise AirflowStartError(
                "The `airflow` command is not installed next to this Python; run `uv sync`."
            )
        return found

    def _command(self, component: str, port: int) -> list[str]:
        airflow = self._airflow_bin()
        if component == "api-server":
            return [
                airflow,
                "api-server",
                "--host",
                self.host,
                "--port",
                str(port),
                "--workers",
                "1",
            ]
        if component in ("scheduler", "dag-processor", "triggerer"):
            return [airflow, component]
        raise AirflowStartError(f"Unknown Airflow component {component!r}; known: {COMPONENTS}")

    # -- state file -------------------------------------------------------------------

    def read_state(self) -> dict[str, Any] | None:
        """The recorded state, or None when nothing was started (or the file is unreadable)."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return state if state.get("version") == STATE_VERSION else None

    def _write_state(self, state: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One start/stop at a time per CONVEYOR_HOME (two `conveyor up` must not race)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "airflow.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _components(state: Mapping[str, Any] | None) -> list[ComponentProcess]:
        if not state:
            return []
        return [ComponentProcess(**c) for c in state.get("components", {}).values()]

    # -- public API -------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        state = self.read_state()
        return state["port"] if state else None

    @property
    def url(self) -> str:
        port = self.port
        if port is None:
            raise AirflowStartError("Airflow is not running; start it with `conveyor up`.")
        return f"http://{self._connect_host}:{port}"

    def ensure_initialized(self) -> bool:
        """Migrate the DB and create the pool (``conveyor airflow-init``) if the SQLite DB is
        missing; returns True when it ran. A non-SQLite DB is the operator's to migrate."""
        conn = self.base_env().get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
        if not conn.startswith("sqlite:///"):
            return False
        if (
            Path(conn.removeprefix("sqlite:///")).exists()
            and (self.airflow_home / "airflow.cfg").exists()
        ):
            # `airflow ...` commands with this AIRFLOW_HOME see what the components see
            sync_airflow_cfg(self.settings, self.base_env())
            return False
        log.info("Initialising Airflow under %s (db migrate, pool)", self.airflow_home)
        airflow_init(self.settings)
        return True

    def start(
        self,
        components: Iterable[str] = COMPONENTS,
        port: int | None = None,
        wait: bool = True,
        timeout: float = 180,
    ) -> dict[str, Any]:
        """Start the components (or reuse the running ones); returns the recorded state.

        A healthy running instance is reused as it is (even on another port: use
        ``state["port"]``). Recorded processes that died, or that do not become healthy
        within ``timeout``, are stopped and started afresh.
        """
        components = tuple(components)
        for name in components:
            if name not in COMPONENTS:
                raise AirflowStartError(f"Unknown Airflow component {name!r}; known: {COMPONENTS}")
        if port is None:
            port = int(self._base.get("CONVEYOR_AIRFLOW_PORT") or DEFAULT_PORT)
        with self._lock():
            state = self.read_state()
            recorded = self._components(state)
            if recorded and all(c.alive() for c in recorded):
                try:
                    if wait:
                        self.wait_healthy(timeout=timeout, state=state)
                except (AirflowStartError, AirflowTimeout) as exc:
                    log.warning("Recorded Airflow is not healthy (%s); restarting it", exc)
                else:
                    if state["port"] != port:
                        log.warning(
                            "Airflow already runs on port %s (asked for %s); reusing it",
                            state["port"],
                            port,
                        )
                    state["reused"] = True
                    return state
            if recorded or state:
                log.info("Cleaning up a stale Airflow state (%s)", self.state_file)
                self._stop_locked(timeout=10)
            state = self._spawn(components, port)
        if wait:
            try:
                self.wait_healthy(timeout=timeout, state=state)
            except BaseException:
                self.stop()
                raise
        state["reused"] = False
        return state

    def _spawn(self, components: tuple[str, ...], port: int) -> dict[str, Any]:
        if not port_free(port, self.host):
            raise AirflowStartError(
                f"Port {port} on {self.host} is already in use, so the Airflow api-server cannot "
                f"start. Stop whatever listens there (an Airflow demo: `conveyor down` or "
                f"`make stop`; else `ss -ltnp 'sport = :{port}'` shows it) or choose another port "
                f"(`conveyor up --port N` / CONVEYOR_AIRFLOW_PORT=N)."
            )
        self.ensure_initialized()
        side_ports = {
            key: default if port_free(default, DEFAULT_HOST) and default != port else free_port()
            for key, default in SIDE_PORTS.items()
        }
        env = self.runtime_env(port, side_ports)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "port": port,
            "host": self.host,
            "url": f"http://{self._connect_host}:{port}",
            "started_at": _now(),
            "airflow_home": str(self.airflow_home),
            "side_ports": side_ports,
            "components": {},
        }
        try:
            for name in components:
                state["components"][name] = asdict(self._spawn_one(name, port, env))
                self._write_state(state)  # written as we go: a crash mid-way is still stoppable
        except BaseException:
            self._stop_locked(timeout=10)
            raise
        return state

    def _spawn_one(self, name: str, port: int, env: dict[str, str]) -> ComponentProcess:
        log_path = self.logs_dir / f"{name}.log"
        with open(log_path, "ab") as out:
            out.write(f"\n===== conveyor supervisor: starting {name} at {_now()} =====\n".encode())
            out.flush()
            proc = subprocess.Popen(
                self._command(name, port),
                env=env,
                cwd=self.airflow_home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._popen[proc.pid] = proc
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            create_time = time.time()
        log.info("Started airflow %s (pid %s), log %s", name, proc.pid, log_path)
        return ComponentProcess(
            name=name,
            pid=proc.pid,
            pgid=proc.pid,  # session and group leader: start_new_session=True
            create_time=create_time,
            started_at=_now(),
            log=str(log_path),
        )

    def health(self, port: int | None = None, timeout: float = 5) -> dict[str, Any] | None:
        """``GET /api/v2/monitor/health``, or None when the api-server does not answer."""
        port = port or self.port
        if port is None:
            return None
        try:
            resp = httpx.get(
                f"http://{self._connect_host}:{port}/api/v2/monitor/health",
                timeout=timeout,
                trust_env=False,  # loopback: never through an HTTP(S)_PROXY
            )
        except httpx.HTTPError:
            return None
        if resp.status_code != 200:
            return None
        try:
            return resp.json()
        except ValueError:
            return None

    @staticmethod
    def unhealthy(health: Mapping[str, Any] | None, components: Iterable[str]) -> list[str]:
        """Names (health keys) of the components that are not yet healthy."""
        if health is None:
            return ["api-server"]
        keys = ["metadatabase", *(HEALTH_KEYS[c] for c in components if c in HEALTH_KEYS)]
        return [k for k in keys if ((health.get(k) or {}).get("status")) != "healthy"]

    def wait_healthy(
        self, timeout: float = 180, *, state: Mapping[str, Any] | None = None, poll: float = 1.0
    ) -> dict[str, Any]:
        """Block until the api-server answers and every started component reports healthy.

        Raises :class:`AirflowStartError` (with the tail of its log) as soon as a component
        exits, and :class:`AirflowTimeout` naming what is still unhealthy after ``timeout``.
        """
        state = state or self.read_state()
        if not state:
            raise AirflowStartError("Airflow is not running; start it with `conveyor up`.")
        procs = self._components(state)
        names = [c.name for c in procs]
        deadline = time.monotonic() + timeout
        missing: list[str] = []
        while True:
            for comp in procs:
                if not self._alive(comp):
                    raise AirflowStartError(
                        f"airflow {comp.name} exited during start-up; last lines of {comp.log}:\n"
                        f"{_tail(comp.log)}"
                    )
            if "api-server" not in names:
                return {}  # nothing answers health checks; the processes run, that is all
            health = self.health(state["port"])
            missing = self.unhealthy(health, names)
            if not missing:
                return health or {}
            if time.monotonic() >= deadline:
                raise AirflowTimeout(
                    f"Airflow on port {state['port']} not healthy after {timeout:.0f} s: "
                    f"{', '.join(missing)} not ready. Logs: {self.logs_dir}/<component>.log"
                )
            time.sleep(poll)

    def _alive(self, comp: ComponentProcess) -> bool:
        proc = self._popen.get(comp.pid)
        if proc is not None:
            return proc.poll() is None
        return comp.alive()

    def status(self) -> dict[str, Any]:
        """What runs: ``{"running", "healthy", "port", "url", "components": {...}, "health"}``."""
        state = self.read_state()
        if not state:
            return {"running": False, "healthy": False, "port": None, "components": {}}
        comps = {
            c.name: {
                "pid": c.pid,
                "alive": self._alive(c),
                "log": c.log,
                "started_at": c.started_at,
            }
            for c in self._components(state)
        }
        running = bool(comps) and all(c["alive"] for c in comps.values())
        health = self.health(state["port"]) if any(c["alive"] for c in comps.values()) else None
        return {
            "running": running,
            "healthy": running and not self.unhealthy(health, comps),
            "port": state["port"],
            "url": state.get("url"),
            "started_at": state.get("started_at"),
            "components": comps,
            "health": health,
        }

    def pids(self) -> set[int]:
        """Every live process of the recorded components, task processes included."""
        comps = self._components(self.read_state())
        roots = {c.pid for c in comps if self._alive(c)}
        return roots | session_members(c.pgid for c in comps if c.owns_session())

    def stop(self, timeout: float = 20) -> list[int]:
        """Stop everything recorded: SIGTERM each session/group, wait up to ``timeout``,
        SIGKILL the rest (idle LocalExecutor workers ignore SIGTERM). Returns the PIDs
        that were signalled; removes the state file. Safe to call when nothing runs."""
        with self._lock():
            return self._stop_locked(timeout)

    def _stop_locked(self, timeout: float) -> list[int]:
        state = self.read_state()
        comps = self._components(state)
        # Sessions whose leader is ours (alive or exited); a recycled leader PID is not ours.
        groups = {c.pgid for c in comps if c.owns_session()}
        victims = session_members(groups) | {c.pid for c in comps if self._alive(c)}
        signalled = sorted(victims)
        if victims:
            log.info("Stopping Airflow: SIGTERM to %d processes", len(victims))
        # The api-server last, so running tasks can still report their state while stopping.
        for comp in sorted(comps, key=lambda c: c.name == "api-server"):
            if comp.pgid in groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(comp.pgid, signal.SIGTERM)
        # Task processes put themselves in their own group (same session): TERM them once too.
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) not in groups:
                    os.kill(pid, signal.SIGTERM)
        start = time.monotonic()
        hurried = False
        while time.monotonic() - start < timeout:
            self._reap()
            victims = {p for p in victims if pid_alive(p)} | session_members(groups)
            if not victims:
                break
            if not hurried and time.monotonic() - start >= timeout / 2:
                # Airflow's components read a second SIGTERM as "stop waiting for tasks".
                hurried = True
                for comp in comps:
                    if comp.pgid in groups and self._alive(comp):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(comp.pid, signal.SIGTERM)
            time.sleep(0.2)
        for _ in range(3):  # stragglers, and anything forked while we were waiting
            victims = {p for p in victims if pid_alive(p)} | session_members(groups)
            if not victims:
                break
            log.info("SIGKILL to %d processes that ignored SIGTERM: %s", len(victims), victims)
            signalled = sorted(set(signalled) | victims)
            for pgid in groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + 5
            while time.monotonic() < end and any(pid_alive(p) for p in victims):
                self._reap()
                time.sleep(0.1)
        self._reap()
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        return signalled

    def _reap(self) -> None:
        for pid, proc in list(self._popen.items()):
            if proc.poll() is not None:
                del self._popen[pid]

    def client(self, **kwargs: Any) -> AirflowClient:
        """An :class:`AirflowClient` for the running instance, with the demo credentials."""
        return embedded_client(self.settings, url=self.url, **kwargs)


def embedded_client(
    settings: Settings, *, url: str | None = None, username: str = "admin", **kwargs: Any
) -> AirflowClient:
    """Client for the embedded Airflow of ``settings``: the password comes from the
    simple auth manager's passwords file (``admin`` if the file has none)."""
    env = airflow_env(settings)
    if url is None:
        state = AirflowSupervisor(settings).read_state()
        port = state["port"] if state else DEFAULT_PORT
        url = f"http://{DEFAULT_HOST}:{port}"
    password = "admin"
    with contextlib.suppress(OSError, ValueError):
        passwords = json.loads(
            Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text()
        )
        password = passwords.get(username, password)
    return AirflowClient(url, username, password, **kwargs)
