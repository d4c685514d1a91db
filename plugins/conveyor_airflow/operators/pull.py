"""DvcPullOperator: fetch the tracked file at the run's pinned data revision."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor_airflow.operators.base import ConveyorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


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
            if not isinstance(payload, dict) or "rev" not in payload:
                continue
            stamp = getattr(event, "timestamp", None)
            if newest is None or (
                stamp is not None and newest[0] is not None and stamp > newest[0]
            ):
                newest = (stamp, payload)
    return newest[1] if newest else None


class DvcPullOperator(ConveyorOperator):
    """Resolve the data revision once and pull the tracked file into the run's artifacts.

    Precedence: the ``data_rev`` argument (the UI/REST Param), else the newest triggering
    asset event's payload, else the tracked branch's head. Every later task uses the
    pinned git sha from this task's XCom.

    :param data_rev: Branch, tag or commit to train on; empty = follow events/branch. (templated)
    """

    template_fields: Sequence[str] = (*ConveyorOperator.template_fields, "data_rev")
    ui_color = "#945dd6"

    def __init__(self, *, data_rev: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_rev = data_rev

    def resolve_revision(self, context: Context) -> tuple[str, str, str]:
        """(repo, rev, source) for this run; source is 'param', 'asset_event' or 'branch'."""
        repo = self.config.data.repo or self.settings.data_registry
        if self.data_rev and str(self.data_rev).strip():
            return repo, str(self.data_rev).strip(), "param"
        payload = event_payload(context)
        if payload is not None:
            return payload.get("repo") or repo, str(payload["rev"]), "asset_event"
        return repo, self.config.data.rev, "branch"

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.data import fetch

        repo, rev, source = self.resolve_revision(context)
        self.log.info(
            "Data revision %r (from %s) of %s in %s", rev, source, self.config.data.path, repo
        )
        artifacts = self.run_artifacts(context)
        with tempfile.TemporaryDirectory(prefix="conveyor-pull-") as tmp:
            snapshot = fetch(repo, self.config.data.path, rev, tmp)
            with artifacts.step("data", attempt=context["ti"].try_number or 1) as out:
                data_uri = out.put_file(snapshot.local_path, snapshot.local_path.rsplit("/", 1)[-1])
        result = {**snapshot.to_dict(), "rev_source": source, "data_uri": data_uri}
        result.pop("local_path", None)
        self.log.info(
            "Pinned data: git sha %s, md5 %s -> %s", snapshot.git_sha, snapshot.md5, data_uri
        )
        return result
