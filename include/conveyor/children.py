"""Child processes the library starts (the deploy smoke test), kept on a short leash.

Two guarantees, because an orchestrator may stop a task at any moment:

* every running child is tracked, so :func:`terminate_children` (called by an Airflow
  operator's ``on_kill``) stops them all when the task is killed or marked failed;
* on Linux each child asks the kernel for ``SIGKILL`` when the thread that started it dies
  (``PR_SET_PDEATHSIG``), so even a ``SIGKILL``-ed task process leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_running: set[subprocess.Popen] = set()
_lock = threading.Lock()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def run_child(
    command: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``subprocess.run`` with output captured, tracked for :func:`terminate_children`.

    Raises ``subprocess.TimeoutExpired`` (after killing the child) like ``subprocess.run``.
    """
    proc = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    with _lock:
        _running.add(proc)
    try:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    finally:
        with _lock:
            _running.discard(proc)


def running_children() -> list[int]:
    """PIDs of the tracked children still running."""
    with _lock:
        return [p.pid for p in _running if p.poll() is None]


def terminate_children(grace: float = 5.0) -> list[int]:
    """Stop every tracked child: TERM, then KILL after ``grace`` seconds. Returns their PIDs."""
    with _lock:
        procs = [p for p in _running if p.poll() is None]
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    if procs:
        log.warning("Stopped %d child process(es): %s", len(procs), [p.pid for p in procs])
    return [p.pid for p in procs]
