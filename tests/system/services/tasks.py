"""The OS processes behind an Airflow task instance on this machine (LocalExecutor)."""

from __future__ import annotations

import psutil


def task_processes(ti_id: str) -> list[psutil.Process]:
    """The task process (titled ``airflow worker -- <ti id>``) and the worker above it.

    Empty when no process runs that task instance any more.
    """
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if f"airflow worker -- {ti_id}" in " ".join(proc.info["cmdline"] or ()):
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                parent = proc.parent()
                return [proc] + ([parent] if parent is not None else [])
        except psutil.Error:  # it ended while we looked
            continue
    return []
