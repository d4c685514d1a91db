"""System tests: the real Airflow components (scheduler, dag-processor, triggerer, api-server)
under Conveyor's supervisor, once per test session, on a free port.

The session environment of ``tests/conftest.py`` applies: a private CONVEYOR_HOME and
AIRFLOW_HOME, and a DAGs folder holding ``dags/*.py`` plus the test pipelines' DAG files.
"""

from __future__ import annotations

import time

import psutil
import pytest

from conveyor.settings import Settings
from conveyor_runtime.processes import free_port, session_members
from conveyor_runtime.supervisor import AirflowSupervisor, embedded_client

#: Seconds the components may take to become healthy (about 45 s here without a bytecode cache).
START_TIMEOUT = 240


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "system: runs real Airflow components (scheduler, dag-processor, triggerer, api-server)",
    )


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Run the distributed stack's tests before the first test that uses the session's
    Airflow server: the stack is torn down at the end of its module, while the session
    server lives until the end of the session, so this way the two Airflows never run at
    the same time on a 2-core machine."""
    first = next(
        (
            i
            for i, item in enumerate(items)
            if "airflow_server" in getattr(item, "fixturenames", ())
        ),
        None,
    )
    if first is None:
        return
    distributed = [item for item in items[first:] if item.path.name == "test_distributed.py"]
    if distributed:
        moved = set(map(id, distributed))
        items[first:] = distributed + [item for item in items[first:] if id(item) not in moved]


def live(pids: set[int]) -> set[int]:
    """The PIDs of ``pids`` that still run (zombies count as gone)."""
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def assert_all_stopped(supervisor: AirflowSupervisor, seen: set[int], sessions: set[int]) -> None:
    leftover = live(seen) | session_members(sessions)
    details = []
    for pid in sorted(leftover):
        try:
            details.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:160]}")
        except psutil.Error:
            details.append(str(pid))
    assert not leftover, "processes survived stop():\n" + "\n".join(details)
    assert not supervisor.state_file.exists(), "stop() left the state file behind"


@pytest.fixture(scope="session")
def check_stopped():
    """``check_stopped(supervisor, pids, sessions)`` asserts that nothing of them survives."""
    return assert_all_stopped


@pytest.fixture(scope="session")
def airflow_server(settings: Settings, demo_registry: dict[str, str]):
    """(supervisor, client) for a real Airflow on a free port; everything stopped afterwards."""
    from conveyor_runtime.bootstrap import airflow_init

    started = time.monotonic()
    airflow_init(settings)  # db migrate, demo password, `conveyor_training` pool (idempotent)
    init_s = time.monotonic() - started
    supervisor = AirflowSupervisor(settings)
    started = time.monotonic()
    state = supervisor.start(port=free_port(), timeout=START_TIMEOUT)
    print(
        f"\n[airflow_server] init {init_s:.1f} s, components healthy after "
        f"{time.monotonic() - started:.1f} s on port {state['port']}"
    )
    client = embedded_client(settings, url=state["url"])
    sessions = {c["pgid"] for c in state["components"].values()}
    seen: set[int] = set()
    try:
        yield supervisor, client
    finally:
        client.close()
        # Tests may have restarted it: collect what runs now as well as at start.
        current = supervisor.read_state()
        if current:
            sessions |= {c["pgid"] for c in current["components"].values()}
        seen |= supervisor.pids()
        supervisor.stop(timeout=20)
        assert_all_stopped(supervisor, seen, sessions)
