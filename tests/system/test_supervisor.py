"""The supervisor and REST client against real Airflow 3 components (``system`` tests), plus
its process handling on cheap stand-in processes (no Airflow, a second or two each)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest
from rich.console import Console

from conveyor.settings import Settings
from conveyor_runtime.airflow_api import AirflowApiError, RunProgress
from conveyor_runtime.progress import render_progress
from conveyor_runtime.supervisor import AirflowStartError, AirflowSupervisor, ComponentProcess

DAG_ID = "train_breast_cancer"
#: Tasks every training DAG has (the factory may add more; all of them must succeed).
TRAINING_TASKS = ["pull_data", "validate_data", "train_model", "evaluate_model", "gate"]
#: Runs `AirflowSupervisor(Settings.from_env()).<call>` in a fresh process, as `conveyor up|down|
#: status` or `make stop` would, and prints the result as JSON.
OTHER_PROCESS = (
    "import json, sys\n"
    "from conveyor.settings import Settings\n"
    "from conveyor_runtime.supervisor import AirflowSupervisor\n"
    "sup = AirflowSupervisor(Settings.from_env())\n"
    "print(json.dumps(eval(sys.argv[1]), default=str))\n"
)


def in_other_process(call: str, env: dict[str, str] | None = None, timeout: float = 120):
    done = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, call],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or os.environ.copy(),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- stand-ins

#: A "component" that ignores SIGTERM (like an idle LocalExecutor worker) with a child that
#: moves to its own process group (like a task process) and ignores SIGTERM too.
STUBBORN = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import os, signal, time; os.setpgid(0, 0); "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print(child.pid, flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def scratch(tmp_path: Path):
    """A supervisor whose state lives in a scratch CONVEYOR_HOME (never starts Airflow)."""
    env = {**os.environ, "CONVEYOR_HOME": str(tmp_path)}
    return AirflowSupervisor(Settings.from_env(env), base_env=env), env


def record(sup: AirflowSupervisor, procs: list[ComponentProcess], port: int = 1) -> None:
    sup._write_state(
        {
            "version": 1,
            "port": port,
            "host": "127.0.0.1",
            "url": f"http://127.0.0.1:{port}",
            "started_at": "now",
            "components": {p.name: asdict(p) for p in procs},
        }
    )


def test_stop_kills_sigterm_ignoring_processes_from_another_process(scratch, check_stopped):
    sup, env = scratch
    proc = subprocess.Popen(
        [sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        child = int(proc.stdout.readline())
        comp = ComponentProcess(
            name="scheduler",
            pid=proc.pid,
            pgid=proc.pid,
            create_time=psutil.Process(proc.pid).create_time(),
            started_at="now",
            log=os.devnull,
        )
        record(sup, [comp])
        assert sup.pids() == {proc.pid, child}
        assert sup.status()["components"]["scheduler"]["alive"]
        started = time.monotonic()
        stopped = in_other_process("sup.stop(timeout=1)", env)
        assert set(stopped) == {proc.pid, child}
        assert time.monotonic() - started < 30
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        check_stopped(sup, {proc.pid, child}, {proc.pid})
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_stale_state_with_a_recycled_pid_is_not_ours(scratch):
    """A recorded PID now used by another process (here: this test) is never signalled."""
    sup, _ = scratch
    me = ComponentProcess(
        name="scheduler",
        pid=os.getpid(),
        pgid=os.getpid(),
        create_time=1.0,
        started_at="then",
        log=os.devnull,
    )
    record(sup, [me])
    status = sup.status()
    assert not status["running"]
    assert not status["components"]["scheduler"]["alive"]
    assert sup.pids() == set()
    assert sup.stop(timeout=1) == []
    assert not sup.state_file.exists()


def test_port_in_use_is_a_clear_error(scratch):
    import socket

    sup, _ = scratch
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(AirflowStartError, match=rf"Port {port} .*already in use.*--port"):
            sup.start(port=port, timeout=5)
    assert sup.read_state() is None


def test_stale_state_is_cleaned_up_before_starting(scratch):
    """Recorded processes that died are forgotten; then the port check runs (and fails here)."""
    import socket

    sup, _ = scratch
    dead = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    create_time = psutil.Process(dead.pid).create_time()
    dead.wait()
    record(
        sup,
        [ComponentProcess("scheduler", dead.pid, dead.pid, create_time, "then", os.devnull)],
    )
    assert not sup.status()["running"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(AirflowStartError, match="already in use"):
            sup.start(port=sock.getsockname()[1], timeout=5)
    assert sup.read_state() is None


def test_render_progress_lists_tasks_and_states():
    from conveyor_runtime.airflow_api import TaskProgress
    from conveyor_runtime.progress import ProgressDisplay

    progress = RunProgress(
        dag_id=DAG_ID,
        run_id="manual__1",
        state="running",
        tasks=(
            TaskProgress("pull_data", "success", 1, 2.5),
            TaskProgress("train_model", "running", 1, None),
            TaskProgress("gate", None),
        ),
        elapsed=12.0,
    )
    console = Console(record=True, width=120)
    console.print(render_progress(progress))
    console.print(render_progress({"pull_data": "failed"}))
    with ProgressDisplay(console) as display:
        display.update(progress)
    text = console.export_text()
    # the title names the DAG and state, not the long run id (it wrapped at 80 columns)
    assert "manual__1" not in text
    for expected in (
        DAG_ID,
        "pull_data",
        "2.5 s",
        "running",
        "gate",
        "none",
        "failed",
    ):
        assert expected in text


# --------------------------------------------------------------------------- real Airflow


@pytest.mark.system
def test_all_components_report_healthy(airflow_server):
    sup, client = airflow_server
    health = client.health()
    for key in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[key]["status"] == "healthy", health
    status = sup.status()
    assert status["running"] and status["healthy"], status
    assert set(status["components"]) == {"scheduler", "dag-processor", "triggerer", "api-server"}
    assert client.version()["version"].startswith("3.")


@pytest.mark.system
def test_start_again_reuses_the_running_instance(airflow_server):
    sup, _ = airflow_server
    before = sup.read_state()
    pids = {n: c["pid"] for n, c in before["components"].items()}
    again = sup.start(port=before["port"], timeout=30)
    assert again["reused"] is True
    assert {n: c["pid"] for n, c in again["components"].items()} == pids
    # From another process, as a second `conveyor up` would (default port: reused anyway).
    other = in_other_process("sup.start(timeout=30)")
    assert other["reused"] is True
    assert other["port"] == before["port"]
    assert {n: c["pid"] for n, c in other["components"].items()} == pids
    status = in_other_process("sup.status()")
    assert status["running"] and status["healthy"]


@pytest.mark.system
def test_training_dag_succeeds_on_the_local_executor(airflow_server, demo_registry):
    _, client = airflow_server
    started = time.monotonic()
    dag = client.wait_for_dag(DAG_ID, timeout=120)
    assert dag["dag_id"] == DAG_ID
    parsed_s = time.monotonic() - started
    assert client.unpause(DAG_ID)["is_paused"] is False
    # Pinned to the demo commit (other tests may publish newer data); forced, because an
    # earlier test of the session may have trained the same inputs already.
    conf = {"force": True, "data_rev": demo_registry["breast_cancer"]}
    started = time.monotonic()
    run_id = client.trigger(DAG_ID, conf=conf)
    seen: list[RunProgress] = []
    final = client.wait_for_run(DAG_ID, run_id, timeout=600, on_progress=seen.append, poll=0.5)
    wall_s = time.monotonic() - started
    durations = {t.task_id: t.duration for t in final.tasks}
    print(
        f"\n[training] parsed after {parsed_s:.1f} s; run {run_id} {final.state} in {wall_s:.1f} s "
        f"(Airflow duration {final.duration}); task durations: {json.dumps(durations)}"
    )
    if final.state != "success":
        logs = "\n".join(
            f"--- {t.task_id} (try {t.try_number})\n"
            + client.task_log(DAG_ID, run_id, t.task_id, max(t.try_number, 1))[-3000:]
            for t in final.tasks
            if t.state != "success"
        )
        pytest.fail(f"run ended {final.state}: {final.states}\n{logs}")
    order = client.task_order(DAG_ID)
    assert [t.task_id for t in final.tasks] == order  # every task ran, shown in DAG order
    assert [t for t in order if t in TRAINING_TASKS] == TRAINING_TASKS
    assert any(t.startswith("register") for t in order), order
    assert all(state == "success" for state in final.states.values()), final.states
    assert seen and seen[-1] == final
    assert client.dag_run(DAG_ID, run_id)["conf"] == conf
    assert run_id in [r["dag_run_id"] for r in client.list_runs(DAG_ID)]
    assert client.task_log(DAG_ID, run_id, "train_model").strip()


@pytest.mark.system
def test_stop_from_another_process_leaves_nothing(airflow_server, request, check_stopped):
    """Runs last in this module: `make stop` in another process, then nothing survives."""
    sup, client = airflow_server
    state = sup.read_state()
    pids = sup.pids()
    assert len(pids) >= 4
    sessions = {c["pgid"] for c in state["components"].values()}
    started = time.monotonic()
    in_other_process("sup.stop()")
    stop_s = time.monotonic() - started
    print(f"\n[stop] {len(pids)} processes stopped in {stop_s:.1f} s")
    sup._reap()
    check_stopped(sup, pids, sessions)
    with pytest.raises(AirflowApiError, match="Is Airflow running"):
        client.health()
    assert not sup.status()["running"]
    # Later tests in this session that use the server get it back.
    items = request.session.items
    later = items[items.index(request.node) + 1 :]
    if any("airflow_server" in getattr(item, "fixturenames", ()) for item in later):
        sup.start(port=state["port"])
