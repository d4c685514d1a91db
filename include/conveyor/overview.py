"""The pipeline overview shown in the Airflow UI: production version, lineage, last checks.

Plain data gathered from the pipeline YAMLs, MLflow and the artifact store, so the UI
plugin only renders it and the CLI or tests can use the same facts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from conveyor.artifacts import join_url
from conveyor.config import list_pipelines, load_pipeline_config, pipeline_path
from conveyor.errors import ConveyorError
from conveyor.registry.pin import pin_from_tags
from conveyor.registry.production import alias_tags
from conveyor.settings import Settings

log = logging.getLogger(__name__)


def _json(value: str | None) -> Any:
    try:
        return json.loads(value) if value else None
    except ValueError:
        return value


def latest_step_summary(
    settings: Settings, dag_id: str, step: str, file: str
) -> dict[str, Any] | None:
    """The newest run's ``file`` (JSON) of ``step`` for ``dag_id``, with the run id, or None."""
    from fsspec.core import url_to_fs

    fs, base = url_to_fs(join_url(settings.artifact_root, dag_id))
    if not fs.exists(base):
        return None
    manifests = []
    for run_dir in fs.ls(base, detail=False):
        manifest = join_url(run_dir, step, "manifest.json")
        if fs.exists(manifest):
            with fs.open(manifest) as fh:
                data = json.load(fh)
            manifests.append((data.get("written_at", ""), run_dir, data))
    if not manifests:
        return None
    written_at, run_dir, manifest = max(manifests, key=lambda m: m[0])
    path = join_url(run_dir, step, f"try-{manifest['attempt']}", file)
    if not fs.exists(path):
        return None
    with fs.open(path) as fh:
        return {"run": run_dir.rsplit("/", 1)[-1], "written_at": written_at, **json.load(fh)}


def pipeline_overview(
    settings: Settings, names: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """One entry per pipeline YAML: config summary, production version and lineage, last checks.

    ``names``: only these pipelines (e.g. those the viewer may read); default every YAML.
    """
    entries = []
    for name in list_pipelines(settings.pipelines_dir) if names is None else names:
        entry: dict[str, Any] = {"name": name}
        try:
            config = load_pipeline_config(pipeline_path(name, settings.pipelines_dir))
        except ConveyorError as exc:
            entries.append({**entry, "error": str(exc)})
            continue
        entry.update(
            task=config.task,
            estimator=config.model.estimator,
            data_path=config.data.path,
            primary_metric=config.metrics.primary,
            service_url=config.deploy.service_url,
        )
        try:
            tags = alias_tags(settings.mlflow_tracking_uri, config.model_name)
        except ConveyorError as exc:
            tags, entry["registry_error"] = None, str(exc)
        if tags:
            entry["production"] = {
                "version": tags.get("version"),
                "data_md5": tags.get("conveyor.data_md5"),
                "data_git_sha": tags.get("conveyor.data_git_sha"),
                "data_rev_source": tags.get("conveyor.data_rev_source"),
                "metrics": _json(tags.get("conveyor.metrics")),
                "project_git_rev": tags.get("conveyor.project_git_rev"),
                "config_hash": tags.get("conveyor.config_hash"),
                "trained_by": f"{tags.get('conveyor.dag_id')} / {tags.get('conveyor.run_id')}",
                "gate": _json(tags.get("conveyor.gate")),
                "pinned": pin_from_tags(tags),
                "model_card": tags.get("conveyor.model_card"),
            }
        entry["last_validation"] = latest_step_summary(
            settings, f"train_{name}", "validation", "summary.json"
        )
        entry["last_drift_check"] = latest_step_summary(
            settings, f"conveyor_monitor_{name}", "drift", "summary.json"
        )
        entries.append(entry)
    return entries
