"""Background services of the demo besides Airflow: the MLflow UI and the model service.

Each runs in its own session (so it survives the shell that started it and can be
stopped as a group), with its PID recorded under ``$CONVEYOR_HOME/run/<name>.json`` so
``make stop`` works from another process and ``make demo`` run twice reuses what runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from conveyor.errors import ConveyorError
from conveyor.settings import Settings
from conveyor_runtime.processes import port_free, same_process_alive, session_members


@dataclass(frozen=True)
class Service:
    """A background service: its command line, port and health URL."""

    name: str
    command: list[str]
    port: int
    health_path: str = "/"
    #: Statuses of the health URL that mean "up" (the model service answers 503 while it
    #: has no model yet: it is running and polls the registry).
    up_statuses: tuple[int, ...] = (200,)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _state_file(settings: Settings, name: str) -> Path:
    return settings.home / "run" / f"{name}.json"


def healthy(service: Service, timeout: float = 2.0) -> bool:
    """True when the service answers its health URL with one of its ``up_statuses``."""
    try:
        response = httpx.get(service.url + service.health_path, timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.status_code in service.up_statuses


def running(settings: Settings, name: str) -> dict | None:
    """The recorded state of ``name`` if its process is still alive."""
    path = _state_file(settings, name)
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    return state if same_process_alive(state["pid"], state.get("create_time")) else None


def start(
    settings: Settings, service: Service, env: dict[str, str], *, timeout: float = 60
) -> dict:
    """Start ``service`` in the background (or reuse it) and wait until it is healthy."""
    import psutil

    current = running(settings, service.name)
    if current is not None and healthy(service):
        return {**current, "reused": True}
    if current is not None:
        stop(settings, service.name)
    if not port_free(service.port):
        raise ConveyorError(
            f"Port {service.port} for {service.name} is taken by another program; stop it "
            f"(`make stop` if it is an earlier demo) or choose another port."
        )
    log_path = settings.home / "logs" / f"{service.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            service.command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    state = {
        "name": service.name,
        "pid": proc.pid,
        "create_time": psutil.Process(proc.pid).create_time(),
        "port": service.port,
        "url": service.url,
        "log": str(log_path),
        "reused": False,
    }
    path = _state_file(settings, service.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConveyorError(
                f"{service.name} exited with code {proc.returncode} while starting; see {log_path}"
            )
        if healthy(service):
            return state
        time.sleep(0.5)
    stop(settings, service.name)
    raise ConveyorError(
        f"{service.name} did not become healthy within {timeout:.0f}s; see {log_path}"
    )


def stop(settings: Settings, name: str, *, timeout: float = 10) -> bool:
    """Stop ``name``'s whole session: TERM, then KILL what is left. True if it was running."""
    path = _state_file(settings, name)
    state = running(settings, name)
    if state is None:
        path.unlink(missing_ok=True)
        return False
    members = session_members([state["pid"]]) | {state["pid"]}
    for pid in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(same_process_alive(p) for p in members):
        time.sleep(0.2)
    for pid in members:
        if same_process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return True


def demo_service_url(settings: Settings) -> str | None:
    """URL of the model service the demo runs (``conveyor demo up``), if it is running."""
    state = running(settings, "model-service")
    return str(state["url"]) if state else None
