"""Task-state tables for the terminal: what `conveyor demo up` shows while a run goes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor_runtime.airflow_api import RunProgress, TaskProgress

STATE_STYLES = {
    "success": "green",
    "failed": "bold red",
    "upstream_failed": "red",
    "up_for_retry": "yellow",
    "up_for_reschedule": "yellow",
    "running": "cyan",
    "queued": "blue",
    "scheduled": "blue",
    "deferred": "magenta",
    "awaiting_input": "magenta",
    "skipped": "dim",
    "removed": "dim",
    None: "dim",
}


def render_progress(progress: RunProgress | Mapping[str, str | None]):
    """A rich Table of task ids and states (a :class:`RunProgress` adds tries and durations)."""
    from rich.table import Table

    if isinstance(progress, RunProgress):
        # no run id: it is printed once above the table, and a long one (manual__2026-...)
        # wrapped the title at 80 columns
        title = f"{progress.dag_id} · {progress.state} · {progress.elapsed:.0f} s"
        tasks = progress.tasks
    else:
        title = None
        tasks = tuple(TaskProgress(task_id=t, state=s) for t, s in progress.items())
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("task")
    table.add_column("state")
    table.add_column("try", justify="right")
    table.add_column("duration", justify="right")
    for task in tasks:
        style = STATE_STYLES.get(task.state, "")
        table.add_row(
            task.task_id,
            f"[{style}]{task.state or 'none'}[/]" if style else (task.state or "none"),
            str(task.try_number or ""),
            f"{task.duration:.1f} s" if task.duration is not None else "",
        )
    return table


class ProgressDisplay:
    """Live, in-place task-state table for :meth:`AirflowClient.wait_for_run`::

    with ProgressDisplay() as display:
        result = client.wait_for_run(dag_id, run_id, on_progress=display.update)
    """

    def __init__(self, console: Any = None) -> None:
        from rich.live import Live

        self._live = Live(console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> ProgressDisplay:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def update(self, progress: RunProgress) -> None:
        self._live.update(render_progress(progress), refresh=True)
