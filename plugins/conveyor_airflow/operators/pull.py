"""ResolveInputsOperator and DvcPullOperator: pin the data revision, then fetch the file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from conveyor_airflow.compat import (
    AirflowFailException,
    AirflowSkipException,
    DownstreamTasksSkipped,
)
from conveyor_airflow.operators.base import ConveyorOperator, as_bool
from conveyor_airflow.triggers.message import is_message_payload, payload_from_message

if TYPE_CHECKING:
    from airflow.sdk import Context

    from conveyor.config import PipelineConfig
    from conveyor_airflow.hooks.dvc import DvcRegistryHook


def event_payload(context: Context) -> dict[str, Any] | None:
    """The newest triggering asset event's DVC payload (repo, path, rev, md5), if any.

    Several events merged into one run: the newest wins, so a run never trains on older
    data than what triggered it.
    """
    events = context.get("triggering_asset_events") or {}
    newest: tuple[Any, dict[str, Any]] | None = None
    for asset_events in events.values():
        for event in asset_events:
            extra = getattr(event, "extra", None) or {}
            payload = extra.get("payload", extra)
            if is_message_payload(payload) and not ("rev" in payload or "status" in payload):
                payload = payload_from_message(payload)  # triggers.message: same shape
            if not isinstance(payload, dict) or not ("rev" in payload or "status" in payload):
                continue
            stamp = getattr(event, "timestamp", None)
            if newest is None or (stamp is not None and (newest[0] is None or stamp > newest[0])):
                newest = (stamp, payload)
    return newest[1] if newest else None


class _RevisionMixin:
    """Where the data comes from and which revision a run trains on (DESIGN: Which data
    revision a run trains on).

    ``repo``, ``path`` and ``branch`` override the pipeline config's ``data`` section;
    ``dvc_conn_id`` names a ``conveyor_dvc`` connection whose host is the registry and whose
    login/password are the remote's keys (default ``[conveyor] dvc_conn_id`` when it exists).
    """

    repo: str | None = None
    path: str | None = None
    branch: str | None = None
    dvc_conn_id: str | None = None

    def _init_source(
        self, repo: str | None, path: str | None, branch: str | None, dvc_conn_id: str | None
    ) -> None:
        self.repo, self.path, self.branch, self.dvc_conn_id = repo, path, branch, dvc_conn_id

    @cached_property
    def config(self) -> PipelineConfig:
        config = ConveyorOperator.config.func(self)  # type: ignore[attr-defined]
        update = {
            key: value
            for key, value in (("repo", self.repo), ("path", self.path), ("rev", self.branch))
            if value
        }
        if not update:
            return config
        return config.model_copy(update={"data": config.data.model_copy(update=update)})

    @cached_property
    def dvc_hook(self) -> DvcRegistryHook | None:
        from conveyor_airflow.config import conf_value
        from conveyor_airflow.hooks.dvc import DvcRegistryHook
        from conveyor_airflow.hooks.model_service import connection_or_none

        if self.dvc_conn_id:  # named explicitly: it must exist
            return DvcRegistryHook(self.dvc_conn_id)
        return connection_or_none(
            DvcRegistryHook, conf_value("dvc_conn_id", "conveyor_dvc_default")
        )

    def data_repo(self) -> str:
        """The registry: ``repo``, else the DVC connection's, else the config's, else the
        ``[conveyor] data_registry`` setting. Puts the connection's remote credentials in
        this process's environment, where DVC's clients read them."""
        hook = self.dvc_hook
        if hook is not None:
            os.environ.update(hook.env())
        if self.repo:
            return self.repo
        if hook is not None:
            return hook.repo()
        return self.config.data.repo or self.settings.data_registry

    def resolve_revision(self, context: Context) -> tuple[str, str, str]:
        """(repo, rev, source); source is 'param', 'asset_event' or 'branch'."""
        repo = self.data_repo()
        if self.data_rev and str(self.data_rev).strip():
            return repo, str(self.data_rev).strip(), "param"
        payload = event_payload(context)
        if payload is not None:
            if payload.get("status") == "error":
                raise AirflowFailException(
                    f"The data watcher reported an error: {payload.get('message')}"
                )
            # a message or a code change names no revision: the tracked branch's head
            rev = payload.get("rev") or self.config.data.rev
            return payload.get("repo") or repo, str(rev), "asset_event"
        return repo, self.config.data.rev, "branch"


_SOURCE_DOC = """
    :param repo: Data registry (git URL or path); default: the DVC connection's host, else
        the config's ``data.repo``, else ``[conveyor] data_registry``. (templated)
    :param path: The DVC-tracked file in it; default the config's ``data.path``. (templated)
    :param branch: Branch/tag followed when no revision is given; default ``data.rev``.
        (templated)
    :param dvc_conn_id: ``conveyor_dvc`` connection (registry + remote credentials)."""


def _short_circuited(task: Any) -> list[str]:
    """The downstream tasks the scheduler would skip after ``task`` is skipped: those with
    the default ``all_success`` trigger rule and a skipped upstream, in dependency order.
    Tasks with other trigger rules are left to the scheduler."""
    skipped: set[str] = {task.task_id}
    out: list[str] = []
    for t in task.dag.topological_sort():
        if t.task_id in skipped or not (set(t.upstream_task_ids) & skipped):
            continue
        if t.trigger_rule == "all_success":  # a str enum
            skipped.add(t.task_id)
            out.append(t.task_id)
    return out


class ResolveInputsOperator(_RevisionMixin, ConveyorOperator):
    """First task of a training run: pin the data revision and skip unchanged inputs.

    Resolves the revision once (UI Param, else the newest triggering data event, else the
    tracked branch's head) to a git sha, reads the file's md5 from its ``.dvc`` file with
    git, and compares data md5 + config hash + code rev with production's lineage. Equal
    → this task succeeds and marks the rest of the run skipped at once (as
    ``ShortCircuitOperator`` does), with the reason in the log. Cheap by
    design: no pandas, DVC or MLflow import.

    :param data_rev: Branch, tag or commit to train on; empty = follow events/branch. (templated)
    :param force: Retrain even when the inputs equal production's. (templated)
    :param gate_override: / :param override_reason: the run's gate override, checked here
        so an override without a reason fails before any data is pulled. (templated)
    """

    __doc__ = (__doc__ or "") + _SOURCE_DOC
    template_fields: Sequence[str] = (
        *ConveyorOperator.template_fields,
        "data_rev",
        "force",
        "repo",
        "path",
        "branch",
        "gate_override",
        "override_reason",
    )
    ui_color = "#d9c8f5"

    def __init__(
        self,
        *,
        data_rev: str = "",
        force: Any = False,
        repo: str | None = None,
        path: str | None = None,
        branch: str | None = None,
        dvc_conn_id: str | None = None,
        gate_override: Any = False,
        override_reason: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_rev = data_rev
        self.force = force
        self.gate_override = gate_override
        self.override_reason = override_reason
        self._init_source(repo, path, branch, dvc_conn_id)

    def _skip_run(self, reason: str) -> Exception:
        """Unchanged inputs: this task succeeds and marks the run's steps skipped in one
        call, as ``ShortCircuitOperator`` does. Raising a skip here instead left the
        scheduler to skip them one level per loop: 1.5-6 s of an unchanged-input run
        that does 1 s of work (bench/caching.py)."""
        self.log.info("%s", reason)
        downstream = _short_circuited(self) if self.has_dag() else []
        if not downstream:
            return AirflowSkipException(reason)
        self.log.info("Marking %d downstream task(s) skipped: %s", len(downstream), downstream)
        return DownstreamTasksSkipped(tasks=downstream)

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.registry.caching import check_inputs

        if as_bool(self.gate_override) and not str(self.override_reason or "").strip():
            raise AirflowFailException(
                "gate_override is set but override_reason is empty: give the reason (it is "
                "recorded on the model version and in the audit trail); nothing was pulled"
            )
        repo, rev, source = self.resolve_revision(context)
        payload = (event_payload(context) or {}) if source == "asset_event" else {}
        result = check_inputs(
            self.config,
            repo=repo,
            rev=rev,
            rev_source=source,
            tracking_uri=self.settings.mlflow_tracking_uri,
            code_rev=self.code_identity(context),
            force=as_bool(self.force) or payload.get("force") is True,
        )
        self.log.info(
            "Data %s at %r (from %s) = commit %s, md5 %s",
            result.path,
            rev,
            source,
            result.git_sha,
            result.md5,
        )
        self.log.info("Cache key %s: %s", result.cache_key, result.reason)
        if result.skip:
            raise self._skip_run(f"Skipping the run: {result.reason}")
        trigger_reason = None
        if source == "asset_event":
            trigger_reason = payload.get("reason") or "new data version"
            self.log.info("Started by a data asset event: %s", trigger_reason)
        # About to train: fail now, not after pulling and validating, if the estimator
        # path in the YAML is wrong (checking it at parse time would import sklearn).
        from conveyor.modeling.training import load_estimator_class

        load_estimator_class(self.config.model.estimator)
        return {**result.to_dict(), "trigger_reason": trigger_reason}


class DvcPullOperator(_RevisionMixin, ConveyorOperator):
    """Pull the tracked file at the pinned revision into the run's artifact location.

    :param inputs: XCom of :class:`ResolveInputsOperator` (``repo``, ``git_sha``,
        ``rev_source``); when given, the revision is not resolved again. (templated)
    :param data_rev: Used only without ``inputs``: branch, tag or commit. (templated)
    """

    __doc__ = (__doc__ or "") + _SOURCE_DOC
    template_fields: Sequence[str] = (
        *ConveyorOperator.template_fields,
        "inputs",
        "data_rev",
        "repo",
        "path",
        "branch",
    )
    ui_color = "#945dd6"

    def __init__(
        self,
        *,
        inputs: Any = None,
        data_rev: str = "",
        repo: str | None = None,
        path: str | None = None,
        branch: str | None = None,
        dvc_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inputs = inputs
        self.data_rev = data_rev
        self._init_source(repo, path, branch, dvc_conn_id)

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.data.source import fetch

        if self.inputs:
            self.data_repo()  # the DVC connection's remote credentials, if any
            repo, rev, source = (
                self.inputs["repo"],
                self.inputs["git_sha"],
                self.inputs["rev_source"],
            )
        else:
            repo, rev, source = self.resolve_revision(context)
        self.log.info(
            "Pulling %s at %s (from %s) from %s", self.config.data.path, rev, source, repo
        )
        with tempfile.TemporaryDirectory(prefix="conveyor-pull-") as tmp:
            snapshot = fetch(repo, self.config.data.path, rev, tmp)
            with self.run_artifacts(context).step(
                "data", attempt=context["ti"].try_number or 1
            ) as out:
                data_uri = out.put_file(snapshot.local_path, snapshot.local_path.rsplit("/", 1)[-1])
        if self.inputs and snapshot.md5 != self.inputs["md5"]:
            raise AirflowFailException(
                f"Pulled md5 {snapshot.md5} differs from the pinned md5 {self.inputs['md5']} of commit "
                f"{rev}: the registry's remote holds different content than its .dvc file says"
            )
        result = {**snapshot.to_dict(), "rev_source": source, "data_uri": data_uri}
        result.pop("local_path", None)
        if self.inputs:
            result["cache_key"] = self.inputs["cache_key"]
            result["trigger_reason"] = self.inputs.get("trigger_reason")
        # the code identity is pinned once per run, like the data revision
        result["code_rev"] = (self.inputs or {}).get("code_rev") or self.code_identity(context)
        self.log.info(
            "Pinned data: git sha %s, md5 %s -> %s", snapshot.git_sha, snapshot.md5, data_uri
        )
        return result
