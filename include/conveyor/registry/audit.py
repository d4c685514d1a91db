"""Append-only audit trail of what moved the ``production`` alias, and why.

Every promotion, rollback and rejected approval is one small JSON file of its own,
``{artifact_root}/audit/{model}/{utc-timestamp}-{uuid}.json``, written once through
fsspec and never changed. Nothing is appended to a shared file, so it works the same on
a local disk and on S3 (where there is no append) and two writers never collide. The
newest event's id is also recorded on the model version(s) it concerns as the tag
``conveyor.last_event``, so the MLflow UI leads to the record; the trail itself is
never kept in tags, which would grow without bound.

Who did it (``user`` of a record, ``by`` of the version tags), one format:

=========================== ====================================================
``<name>``                  an authenticated Airflow user: who triggered the run
                            (UI or REST), answered the approval, triggered the
                            rollback DAG (the name Airflow's auth manager reports)
``cli:<os user>``           the ``conveyor`` command line
``airflow:<dag_id>``        Airflow on its own: a scheduled, data- or
                            drift-triggered run, an automatic rollback, an
                            approval that timed out
=========================== ====================================================

Build it with :func:`airflow_user`, :func:`cli_actor`, :func:`airflow_actor` or
:func:`run_actor`; never by hand.
"""

from __future__ import annotations

import getpass
import json
import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from fsspec.core import url_to_fs

from conveyor.artifacts import join_url, safe_segment
from conveyor.registry.lineage import TAG_PREFIX

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

Action = Literal["promote", "rollback", "rejected", "pin", "release"]
ACTIONS: tuple[str, ...] = ("promote", "rollback", "rejected", "pin", "release")
LAST_EVENT_TAG = f"{TAG_PREFIX}last_event"
#: Prefixes of the actors that are not an Airflow user.
CLI_PREFIX, AIRFLOW_PREFIX = "cli:", "airflow:"
#: ``triggering_user_name`` Airflow gives runs that no user triggered (``dag.test()``).
_NOT_A_USER = frozenset({"dag_test"})


def airflow_user(name: str) -> str:
    """The actor of an action an authenticated Airflow user took (their name as is).

    Raises
    ------
    ValueError
        If ``name`` is empty.
    """
    name = str(name or "").strip()
    if not name:
        raise ValueError("An Airflow user actor needs the user's name; got an empty name")
    return name


def cli_actor(os_user: str | None = None) -> str:
    """``cli:<os user>``: an action from the ``conveyor`` command line (default: this
    process's user, ``cli:unknown`` when the system cannot tell)."""
    if not os_user:
        try:
            os_user = getpass.getuser()
        except (KeyError, OSError):
            os_user = "unknown"
    return f"{CLI_PREFIX}{os_user}"


def airflow_actor(dag_id: str) -> str:
    """``airflow:<dag_id>``: an action Airflow took on its own in a run of ``dag_id``."""
    if not dag_id:
        raise ValueError("An automatic action's actor needs the dag_id; got an empty one")
    return f"{AIRFLOW_PREFIX}{dag_id}"


def run_actor(dag_id: str, triggering_user: str | None) -> str:
    """The actor of an action a DAG run takes: the Airflow user who triggered the run
    (``dag_run.triggering_user_name``), else :func:`airflow_actor` of ``dag_id``
    (scheduled, asset-triggered and ``dag.test()`` runs have no triggering user)."""
    name = str(triggering_user or "").strip()
    if name and name not in _NOT_A_USER:
        return airflow_user(name)
    return airflow_actor(dag_id)


@dataclass(frozen=True)
class AuditEvent:
    """One change of (or refusal to change) the production alias."""

    model: str
    action: str
    from_version: str | None
    to_version: str | None
    reason: str
    user: str
    dag_id: str | None = None
    run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEvent:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def line(self) -> str:
        """One human-readable line (for logs and the CLI)."""
        arrow = f"v{self.from_version or '-'} -> v{self.to_version or '-'}"
        where = f" [{self.dag_id}/{self.run_id}]" if self.dag_id else ""
        return f"{self.at} {self.action:<8} {arrow} by {self.user}{where}: {self.reason}"


def audit_url(artifact_root: str, model: str) -> str:
    """Folder of ``model``'s audit records."""
    return join_url(artifact_root, "audit", safe_segment(model))


def record_event(
    artifact_root: str,
    *,
    model: str,
    action: Action,
    from_version: str | None,
    to_version: str | None,
    reason: str,
    user: str,
    dag_id: str | None = None,
    run_id: str | None = None,
    details: dict[str, Any] | None = None,
    client: MlflowClient | None = None,
) -> AuditEvent:
    """Write one audit record (its own file) and tag the versions it concerns.

    Parameters
    ----------
    artifact_root : str
        fsspec URL of the artifact root.
    client : MlflowClient, optional
        When given, ``conveyor.last_event`` is set to the event id on ``to_version``
        and ``from_version``. A failure to tag is logged, never raised: the record is
        the source of truth and is already written.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; use one of {ACTIONS}")
    now = datetime.now(UTC)
    event_id = f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{uuid.uuid4().hex[:12]}"
    event = AuditEvent(
        model=model,
        action=action,
        from_version=None if from_version is None else str(from_version),
        to_version=None if to_version is None else str(to_version),
        reason=reason,
        user=user,
        dag_id=dag_id,
        run_id=run_id,
        details=dict(details or {}),
        at=now.isoformat(),
        id=event_id,
    )
    fs, base = url_to_fs(audit_url(artifact_root, model))
    fs.makedirs(base, exist_ok=True)
    with fs.open(join_url(base, f"{event_id}.json"), "w") as fh:
        json.dump(event.to_dict(), fh, indent=2, default=str)
    log.info("Audit: %s %s", model, event.line())
    if client is not None:
        for version in {event.to_version, event.from_version} - {None}:
            try:
                client.set_model_version_tag(model, version, LAST_EVENT_TAG, event_id)
            except Exception as exc:  # the record exists; a missing tag is cosmetic
                log.warning("Could not tag %s v%s with the audit event: %s", model, version, exc)
    return event


def list_events(artifact_root: str, model: str) -> list[AuditEvent]:
    """Every audit record of ``model``, oldest first (empty if there is none)."""
    fs, base = url_to_fs(audit_url(artifact_root, model))
    if not fs.exists(base):
        return []
    events = []
    for path in sorted(p for p in fs.ls(base, detail=False) if str(p).endswith(".json")):
        try:
            with fs.open(path, "r") as fh:
                events.append(AuditEvent.from_dict(json.load(fh)))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("Skipping unreadable audit record %s: %s", path, exc)
    return sorted(events, key=lambda e: (e.at, e.id))


def production_history(events: list[AuditEvent]) -> list[str]:
    """Versions that served as ``production``, in the order they got the alias.

    A version whose promotion was undone automatically (its deployment failed
    verification) never served: it is left out.
    """
    failed = {
        e.from_version
        for e in events
        if e.action == "rollback" and e.details.get("automatic") and e.from_version
    }
    return [
        e.to_version
        for e in events
        if e.action in ("promote", "rollback") and e.to_version and e.to_version not in failed
    ]


def previous_production(events: list[AuditEvent], current: str | None) -> str | None:
    """The newest version that served before ``current`` (the default rollback target)."""
    for version in reversed(production_history(events)):
        if version != current:
            return version
    return None


def find_event(
    events: list[AuditEvent], *, action: str, dag_id: str, run_id: str, to_version: str | None
) -> AuditEvent | None:
    """An event an earlier attempt of the same task already recorded (idempotency)."""
    for event in events:
        if (event.action, event.dag_id, event.run_id, event.to_version) == (
            action,
            dag_id,
            run_id,
            to_version,
        ):
            return event
    return None
