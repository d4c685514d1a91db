"""Housekeeping: what an hourly pipeline leaves behind, deleted by a documented policy.

Every run copies its data into the artifact root, the prediction log grows every day, and
every candidate stays in the registry; a team running hourly fills its disk. The policy is
the pipeline's ``retention`` section (:class:`conveyor.config.RetentionSpec`):

* artifact folders of the pipeline's DAGs beyond the newest ``keep_runs`` per DAG;
* prediction-log date partitions older than ``prediction_log_days``;
* model versions older than ``candidate_days`` that never reached production.

Never deleted: audit records; the production, candidate and pinned versions and every
version the audit trail names; the runs those versions were trained in; anything younger
than ``min_age_hours`` (a run may still be going). :func:`plan` lists what would go (the
dry run), :func:`apply` deletes exactly that list.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from conveyor.artifacts import join_url, safe_segment

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from conveyor.config import PipelineConfig
    from conveyor.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deletion:
    """One thing housekeeping removes, and why."""

    kind: str  # "run_artifacts" | "prediction_log" | "model_version"
    target: str  # a URL, or "<model> v<version>"
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def pipeline_dag_ids(name: str) -> list[str]:
    """The DAGs whose artifact folders belong to pipeline ``name``."""
    return [f"train_{name}", f"conveyor_monitor_{name}", f"score_{name}"]


def _protected_versions(client: MlflowClient, artifact_root: str, name: str) -> set[str]:
    from conveyor.registry import audit
    from conveyor.registry.pin import PIN_TAG

    protected: set[str] = set()
    for model in client.search_registered_models(f"name = '{name}'"):
        protected |= {str(v) for v in (model.aliases or {}).values()}
    for event in audit.list_events(artifact_root, name):
        protected |= {v for v in (event.from_version, event.to_version) if v}
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get(PIN_TAG):
            protected.add(str(mv.version))
    return protected


def plan(
    settings: Settings,
    config: PipelineConfig,
    *,
    client: MlflowClient,
    now: datetime | None = None,
) -> list[Deletion]:
    """What the retention policy of ``config`` would delete now (nothing is touched)."""
    from fsspec.core import url_to_fs

    from conveyor.monitoring.checks import prediction_log_dir

    policy = config.retention
    now = now or datetime.now(UTC)
    young = now.timestamp() - policy.min_age_hours * 3600
    deletions: list[Deletion] = []

    # -- model versions that never reached production, older than candidate_days
    protected = _protected_versions(client, settings.artifact_root, config.model_name)
    kept_runs: set[str] = set()
    cutoff = (now - timedelta(days=policy.candidate_days)).timestamp() * 1000
    for mv in client.search_model_versions(f"name = '{config.model_name}'"):
        version = str(mv.version)
        if version in protected or mv.creation_timestamp >= cutoff:
            kept_runs.add(mv.tags.get("conveyor.run_id", ""))
            continue
        deletions.append(
            Deletion(
                "model_version",
                f"{config.model_name} v{version}",
                f"never in production, older than {policy.candidate_days} days",
            )
        )
    kept_folders = {safe_segment(r) for r in kept_runs if r}

    # -- artifact folders beyond the newest keep_runs per DAG
    for dag_id in pipeline_dag_ids(config.name):
        fs, base = url_to_fs(join_url(settings.artifact_root, safe_segment(dag_id)))
        if not fs.exists(base):
            continue
        folders = []
        for entry in fs.ls(base, detail=True):
            if entry.get("type") != "directory":
                continue
            modified = entry.get("mtime") or entry.get("LastModified") or entry.get("created")
            stamp = modified.timestamp() if isinstance(modified, datetime) else float(modified or 0)
            folders.append((stamp, entry["name"]))
        folders.sort(reverse=True)
        for stamp, path in folders[policy.keep_runs :]:
            folder = path.rstrip("/").rsplit("/", 1)[-1]
            if folder in kept_folders or stamp > young:
                continue
            deletions.append(
                Deletion(
                    "run_artifacts",
                    fs.unstrip_protocol(path),
                    f"older than the newest {policy.keep_runs} runs of {dag_id}",
                )
            )

    # -- prediction-log partitions older than prediction_log_days
    log_dir = prediction_log_dir(settings, config.name)
    fs, root = url_to_fs(log_dir)
    oldest_kept = (now - timedelta(days=policy.prediction_log_days)).date()
    if fs.exists(root):
        for path in sorted(fs.glob(f"{root}/date=*")):
            try:
                day = date.fromisoformat(path.rstrip("/").rsplit("date=", 1)[-1])
            except ValueError:
                continue
            if day < oldest_kept:
                deletions.append(
                    Deletion(
                        "prediction_log",
                        fs.unstrip_protocol(path),
                        f"prediction log older than {policy.prediction_log_days} days",
                    )
                )
    return deletions


def apply(deletions: list[Deletion], *, client: MlflowClient) -> list[Deletion]:
    """Delete exactly ``deletions`` (a :func:`plan`); returns what was deleted."""
    from fsspec.core import url_to_fs

    done: list[Deletion] = []
    for item in deletions:
        if item.kind == "model_version":
            name, _, version = item.target.rpartition(" v")
            client.delete_model_version(name, version)
        else:
            fs, path = url_to_fs(item.target)
            if fs.exists(path):
                fs.rm(path, recursive=True)
        log.info("Deleted %s %s (%s)", item.kind, item.target, item.reason)
        done.append(item)
    return done


def housekeeping(
    settings: Settings, config: PipelineConfig, *, dry_run: bool = True
) -> dict[str, Any]:
    """Plan (and unless ``dry_run``, apply) the retention policy of one pipeline."""
    from conveyor.registry import tracking

    started = time.monotonic()
    client = tracking.configure(settings)
    planned = plan(settings, config, client=client)
    done = [] if dry_run else apply(planned, client=client)
    summary = {
        "pipeline": config.name,
        "dry_run": dry_run,
        "planned": [d.to_dict() for d in planned],
        "deleted": [d.to_dict() for d in done],
        "seconds": round(time.monotonic() - started, 2),
    }
    log.info(
        "Housekeeping of %s: %d item(s) %s",
        config.name,
        len(planned),
        "would be deleted (dry run)" if dry_run else "deleted",
    )
    return summary
