"""Process and port helpers shared by the Airflow supervisor and the background services.

Kept apart from both so neither imports the other (they only share these helpers).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable

import psutil

DEFAULT_HOST = "127.0.0.1"


def same_process_alive(pid: int, create_time: float | None = None) -> bool:
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def pid_alive(pid: int) -> bool:
    return same_process_alive(pid)


def session_members(sids: Iterable[int]) -> set[int]:
    """PIDs of every live process in the given sessions or process groups (not this process)."""
    wanted = set(sids)
    if not wanted:
        return set()
    found: set[int] = set()
    me = os.getpid()
    for pid in psutil.pids():
        if pid == me:
            continue
        try:
            if os.getsid(pid) in wanted or os.getpgid(pid) in wanted:
                found.add(pid)
        except (ProcessLookupError, PermissionError):
            continue
    # Children that left the session (setsid) are still found through the process tree.
    for sid in wanted:
        with contextlib.suppress(psutil.Error):
            found.update(c.pid for c in psutil.Process(sid).children(recursive=True))
    return {pid for pid in found if pid_alive(pid)}


def port_free(port: int, host: str = DEFAULT_HOST) -> bool:
    """True when nothing listens on ``host:port`` (TIME_WAIT sockets do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port the OS considers free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
