"""DvcUpdateSensor: wait for a new version of a pipeline's data, deferrable by default.

For teams that prefer a sensor DAG to an asset watcher (``dags/conveyor_watch.py``). It
remembers the last md5 it reported in an Airflow Variable (tasks cannot read the
metadata DB in Airflow 3, Variables go through the API), so consecutive runs wait for
the *next* change instead of re-reporting the same one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseSensorOperator, Variable

from conveyor_airflow.compat import AirflowFailException
from conveyor_airflow.operators.base import PipelineMixin

if TYPE_CHECKING:
    from airflow.sdk import Context


def last_seen_variable(pipeline: str) -> str:
    """Name of the Variable holding the last md5 the sensor reported for ``pipeline``."""
    return f"conveyor_last_seen_md5_{pipeline}"


class DvcUpdateSensor(PipelineMixin, BaseSensorOperator):
    """Succeed with the payload (repo, path, rev, md5) when the pipeline's data changes.

    Deferrable by default — unlike Airflow's ``[operators] default_deferrable`` (False),
    because a data watch may wait for days and must cost no worker slot meanwhile. With
    ``deferrable=False`` it runs in ``reschedule`` mode, again holding no slot between pokes.

    :param pipeline: Pipeline name (its YAML gives repo, path and branch). (templated)
    :param poll_interval: Seconds between checks.
    """

    template_fields: Sequence[str] = ("pipeline",)
    ui_color = "#b8a1e3"

    def __init__(
        self,
        *,
        pipeline: str,
        poll_interval: float = 10.0,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "poke" if deferrable else "reschedule")
        kwargs.setdefault("poke_interval", poll_interval)
        kwargs.setdefault("timeout", timedelta(days=7).total_seconds())
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.poll_interval = poll_interval
        self.deferrable = deferrable

    def _repo(self) -> str:
        return self.config.data.repo or self.settings.data_registry

    def _baseline(self) -> str:
        from conveyor.registry.production import alias_tags

        seen = Variable.get(last_seen_variable(self.pipeline), default="")
        if seen:
            return seen
        tags = alias_tags(self.settings.mlflow_tracking_uri, self.config.model_name)
        return (tags or {}).get("conveyor.data_md5", "")

    def _payload(self, sha: str, md5: str) -> dict[str, Any]:
        return {
            "status": "changed",
            "repo": self._repo(),
            "path": self.config.data.path,
            "branch": self.config.data.rev,
            "rev": sha,
            "md5": md5,
        }

    def _accept(self, payload: dict[str, Any]) -> dict[str, Any]:
        Variable.set(last_seen_variable(self.pipeline), payload["md5"])
        self.log.info(
            "New data: %s md5 %s at commit %s", payload["path"], payload["md5"], payload["rev"]
        )
        return payload

    def execute(self, context: Context) -> Any:
        from conveyor.data.source import read_tracked_md5, resolve_rev
        from conveyor.errors import DataError

        try:
            baseline = self._baseline()
            sha = resolve_rev(self._repo(), self.config.data.rev)
            md5 = read_tracked_md5(self._repo(), self.config.data.path, sha)
        except DataError as exc:
            raise AirflowFailException(str(exc)) from exc
        if md5 != baseline:
            return self._accept(self._payload(sha, md5))
        if not self.deferrable:
            return super().execute(context)
        from conveyor_airflow.triggers.dvc_update import DvcUpdateTrigger

        self.log.info("No new data (md5 %s); deferring to the triggerer", md5)
        self.defer(
            trigger=DvcUpdateTrigger(
                repo=self._repo(),
                path=self.config.data.path,
                rev=self.config.data.rev,
                poll_interval=self.poll_interval,
                baseline_md5=md5,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def poke(self, context: Context) -> Any:
        from airflow.sdk import PokeReturnValue

        from conveyor.data.source import read_tracked_md5, resolve_rev

        sha = resolve_rev(self._repo(), self.config.data.rev)
        md5 = read_tracked_md5(self._repo(), self.config.data.path, sha)
        if md5 == self._baseline():
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._accept(self._payload(sha, md5)))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") == "error":
            raise AirflowFailException(f"Data watcher error: {event.get('message')}")
        return self._accept(event)


class AnnounceDataOperator(BaseOperator):
    """Record an event on each outlet asset carrying the sensor's payload in its extra
    (``extra = {"payload": {repo, path, branch, rev, md5}}``), so the training DAG it
    schedules pins the same revision as with the asset watcher.

    A plain operator rather than a ``@task`` function: the ``task`` decorator pulls the
    standard provider's Python operators (and ``packaging``) into every parse of the
    watch DAGs, about as much as all of Conveyor's own parse-time imports.

    :param payload: XCom of :class:`DvcUpdateSensor` (its ``.output``). (templated)
    """

    template_fields: Sequence[str] = ("payload",)
    ui_color = "#b8a1e3"

    def __init__(self, *, payload: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.payload = payload
        if not self.outlets:  # a wiring mistake: say so when the DAG is parsed
            raise ValueError(
                f"AnnounceDataOperator {self.task_id!r} has no outlets: declare the "
                "pipeline's data asset (conveyor_airflow.factory.data_asset)"
            )

    def execute(self, context: Context) -> None:
        for asset in self.outlets:
            context["outlet_events"][asset].extra = {"payload": self.payload}
        self.log.info("Announced new data on %s: %s", self.outlets, self.payload)
