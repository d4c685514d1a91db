"""A small client of Airflow's REST API v2 for the embedded runtime, the CLI and the tests.

JWT login through ``POST /auth/token`` (SimpleAuthManager), then Bearer; trigger, wait for
a run with task progress, read task logs. It knows nothing of how Airflow was started:
:meth:`conveyor_runtime.supervisor.AirflowSupervisor.client` builds one for the embedded
instance.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from conveyor.errors import ConveyorError

log = logging.getLogger(__name__)

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class AirflowApiError(ConveyorError):
    """A REST API call failed; the message names the method, URL, status and body."""

    def __init__(
        self, message: str, *, url: str = "", status: int | None = None, body: str = ""
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body


class AirflowTimeout(ConveyorError):
    """Waiting for Airflow (a DAG to be parsed, a run to finish) took too long."""


@dataclass(frozen=True)
class TaskProgress:
    task_id: str
    state: str | None
    try_number: int = 0
    duration: float | None = None
    start_date: str | None = None
    end_date: str | None = None


@dataclass(frozen=True)
class RunProgress:
    """A DAG run's state and its tasks' states (in DAG order), as one poll saw them."""

    dag_id: str
    run_id: str
    state: str
    tasks: tuple[TaskProgress, ...]
    elapsed: float = 0.0
    run: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def states(self) -> dict[str, str | None]:
        return {t.task_id: t.state for t in self.tasks}

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_RUN_STATES

    @property
    def duration(self) -> float | None:
        return self.run.get("duration")


class AirflowClient:
    """A small REST API v2 client: JWT login through ``POST /auth/token``, then Bearer."""

    def __init__(
        self,
        url: str,
        username: str = "admin",
        password: str = "admin",
        *,
        timeout: float = 30,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self._token: str | None = None
        loopback = httpx.URL(self.url).host in ("127.0.0.1", "localhost", "::1")
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, transport=transport, trust_env=not loopback
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AirflowApiError(
                f"{method} {self.url}{path} failed: {exc!r}. Is Airflow running "
                f"(`conveyor status`; start it with `conveyor up`)?",
                url=f"{self.url}{path}",
            ) from exc

    @staticmethod
    def _error(resp: httpx.Response, what: str = "") -> AirflowApiError:
        body = resp.text[:2000]
        req = resp.request
        return AirflowApiError(
            f"{what + ': ' if what else ''}{req.method} {req.url} -> HTTP {resp.status_code}: {body}",
            url=str(req.url),
            status=resp.status_code,
            body=body,
        )

    def token(self, refresh: bool = False) -> str:
        """A JWT for the configured user (cached; ``refresh`` fetches a new one)."""
        if self._token and not refresh:
            return self._token
        resp = self._send(
            "POST", "/auth/token", json={"username": self.username, "password": self.password}
        )
        if resp.status_code not in (200, 201):
            raise self._error(resp, f"login as {self.username!r} failed")
        self._token = resp.json()["access_token"]
        return self._token

    def request(
        self, method: str, path: str, *, ok: Iterable[int] = (200,), **kwargs: Any
    ) -> httpx.Response:
        """An authenticated call; a 401 refreshes the token once. Other statuses not in
        ``ok`` raise :class:`AirflowApiError`."""
        ok = tuple(ok)
        extra = dict(kwargs.pop("headers", None) or {})
        for attempt in (0, 1):
            headers = {**extra, "Authorization": f"Bearer {self.token(refresh=attempt == 1)}"}
            resp = self._send(method, path, headers=headers, **kwargs)
            if resp.status_code != 401:
                break
        if resp.status_code not in ok:
            raise self._error(resp)
        return resp

    # -- endpoints --------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        resp = self._send("GET", "/api/v2/monitor/health")
        if resp.status_code != 200:
            raise self._error(resp, "health check")
        return resp.json()

    def version(self) -> dict[str, Any]:
        return self.request("GET", "/api/v2/version").json()

    def get_dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG's details, or None while no dag-processor has stored it."""
        resp = self.request("GET", f"/api/v2/dags/{dag_id}", ok=(200, 404))
        return resp.json() if resp.status_code == 200 else None

    def import_errors(self) -> list[dict[str, Any]]:
        resp = self.request("GET", "/api/v2/importErrors", params={"limit": 100})
        return resp.json().get("import_errors", [])

    def wait_for_dag(self, dag_id: str, timeout: float = 120, poll: float = 1.0) -> dict[str, Any]:
        """Block until the dag-processor has parsed ``dag_id``; on timeout the error lists
        the DAG folder's import errors (the usual reason)."""
        deadline = time.monotonic() + timeout
        while True:
            dag = self.get_dag(dag_id)
            if dag is not None:
                return dag
            if time.monotonic() >= deadline:
                errors = self.import_errors()
                detail = "".join(
                    f"\n--- {e.get('filename')}\n{(e.get('stack_trace') or '')[-1500:]}"
                    for e in errors
                )
                raise AirflowTimeout(
                    f"DAG {dag_id!r} not parsed by the dag-processor within {timeout:.0f} s "
                    f"at {self.url}."
                    + (
                        f" Import errors:{detail}"
                        if errors
                        else " No import errors reported; "
                        "is its file in the DAGs folder and the dag-processor running?"
                    )
                )
            time.sleep(poll)

    @staticmethod
    def _retrying_5xx(what: str, call: Callable[[int], Any], attempts: int = 4) -> Any:
        """``call(attempt)``, again after a 5xx: a transient "Database error" (SQLite busy
        while the scheduler and triggerer write, seen on a loaded 2-core machine). Only
        for requests that are safe to repeat."""
        for attempt in range(1, attempts + 1):
            try:
                return call(attempt)
            except AirflowApiError as exc:
                if exc.status is None or exc.status < 500 or attempt == attempts:
                    raise
                log.warning("%s answered %s; retrying (%d/%d)", what, exc.status, attempt, attempts)
                time.sleep(attempt)
        raise AssertionError("unreachable")

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        """Pause or unpause (idempotent, so retried after a 5xx)."""
        return self._retrying_5xx(
            f"PATCH {dag_id}",
            lambda _: self.request(
                "PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused}
            ).json(),
        )

    def unpause(self, dag_id: str) -> dict[str, Any]:
        return self.set_paused(dag_id, False)

    def pause(self, dag_id: str) -> dict[str, Any]:
        return self.set_paused(dag_id, True)

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        *,
        note: str | None = None,
    ) -> str:
        """Create a manual run (``logical_date`` null: Airflow 3 runs need none); returns
        its run id."""
        # The run id is chosen here (Airflow's own format) so that a retry after a
        # transient "Database error" (SQLite busy under a loaded scheduler) cannot create
        # a second run: if the first attempt did commit, the retry gets 409 for this id.
        run_id = run_id or f"manual__{datetime.now(UTC).isoformat()}"
        body: dict[str, Any] = {
            "logical_date": None,
            "conf": dict(conf or {}),
            "dag_run_id": run_id,
        }
        if note:
            body["note"] = note

        def send(attempt: int) -> str:
            try:
                return self._send_trigger(dag_id, body).json()["dag_run_id"]
            except AirflowApiError as exc:
                if attempt > 1 and exc.status == 409:
                    return run_id  # an earlier attempt created it after all
                raise

        return self._retrying_5xx(f"Triggering {dag_id}", send)

    def _send_trigger(self, dag_id: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        except AirflowApiError as exc:
            hint = {
                404: " The DAG is unknown: wait for the dag-processor (wait_for_dag).",
                409: " A run with this run_id exists already.",
                400: " Check conf against the DAG's Params.",
            }.get(exc.status or 0, "")
            raise AirflowApiError(
                f"Triggering {dag_id!r} failed: {exc}{hint}",
                url=exc.url,
                status=exc.status,
                body=exc.body,
            ) from exc

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()

    def list_runs(self, dag_id: str, limit: int = 25) -> list[dict[str, Any]]:
        """The DAG's newest runs first."""
        resp = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns",
            params={"limit": limit, "order_by": "-run_after"},
        )
        return resp.json()["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        resp = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
            params={"limit": 1000},
        )
        return resp.json()["task_instances"]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        """A task attempt's log as text (``timestamp level event`` per structured line)."""
        resp = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true", "map_index": map_index},
            headers={"Accept": "application/json"},
        )
        lines = []
        base = ("timestamp", "level", "event", "logger")
        for item in resp.json().get("content") or []:
            if isinstance(item, str):
                lines.append(item)
                continue
            parts = [str(item[k]) for k in base if item.get(k) not in (None, "")]
            # Everything else too: an exception's details arrive as extra keys
            # (``error_detail``), and a failure is unreadable without them.
            extra = {k: v for k, v in item.items() if k not in base and v not in (None, "")}
            if extra:
                parts.append(json.dumps(extra, default=str, sort_keys=True))
            lines.append(" ".join(parts))
        return "\n".join(lines)

    def task_order(self, dag_id: str) -> list[str]:
        """Task ids in a topological order (ties alphabetical)."""
        tasks = self.request("GET", f"/api/v2/dags/{dag_id}/tasks").json()["tasks"]
        downstream = {t["task_id"]: set(t.get("downstream_task_ids") or ()) for t in tasks}
        indegree = dict.fromkeys(downstream, 0)
        for children in downstream.values():
            for child in children:
                if child in indegree:
                    indegree[child] += 1
        order: list[str] = []
        ready = sorted(t for t, n in indegree.items() if n == 0)
        while ready:
            task = ready.pop(0)
            order.append(task)
            for child in sorted(downstream[task]):
                if child in indegree:
                    indegree[child] -= 1
                    if indegree[child] == 0:
                        ready.append(child)
            ready.sort()
        return order + sorted(set(downstream) - set(order))

    def progress(
        self, dag_id: str, run_id: str, order: list[str] | None = None, started: float | None = None
    ) -> RunProgress:
        """One poll of the run and its task instances."""
        run = self.dag_run(dag_id, run_id)
        tis = self.task_instances(dag_id, run_id)
        rank = {t: i for i, t in enumerate(order or [])}
        tis.sort(
            key=lambda ti: (
                rank.get(ti["task_id"], len(rank)),
                ti["task_id"],
                ti.get("map_index", -1),
            )
        )
        tasks = tuple(
            TaskProgress(
                task_id=ti["task_id"]
                + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else ""),
                state=ti.get("state"),
                try_number=ti.get("try_number") or 0,
                duration=ti.get("duration"),
                start_date=ti.get("start_date"),
                end_date=ti.get("end_date"),
            )
            for ti in tis
        )
        return RunProgress(
            dag_id=dag_id,
            run_id=run_id,
            state=run["state"],
            tasks=tasks,
            elapsed=time.monotonic() - started if started is not None else 0.0,
            run=run,
        )

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 900,
        on_progress: Callable[[RunProgress], Any] | None = None,
        poll: float = 1.0,
    ) -> RunProgress:
        """Poll until the run is ``success`` or ``failed``; returns the last poll.

        ``on_progress`` is called with every poll's :class:`RunProgress` (task states in
        DAG order), e.g. :meth:`ProgressDisplay.update`. A run that does not finish
        within ``timeout`` raises :class:`AirflowTimeout` with the task states.
        """
        started = time.monotonic()
        try:
            order = self.task_order(dag_id)
        except AirflowApiError:
            order = []
        while True:
            try:
                progress = self.progress(dag_id, run_id, order, started)
            except AirflowApiError as exc:
                # A busy api-server may miss one poll (read timeout); the run goes on.
                if getattr(exc, "status", None) or time.monotonic() - started >= timeout:
                    raise
                time.sleep(poll)
                continue
            if on_progress is not None:
                on_progress(progress)
            if progress.done:
                return progress
            if time.monotonic() - started >= timeout:
                states = ", ".join(f"{t}={s}" for t, s in progress.states.items())
                raise AirflowTimeout(
                    f"Run {run_id} of {dag_id} still {progress.state} after {timeout:.0f} s "
                    f"({states}); see {self.url}/dags/{dag_id}/runs/{run_id}"
                )
            time.sleep(poll)
