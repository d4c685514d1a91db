"""FastAPI app mounted in the Airflow API server at ``/conveyor`` by the plugin.

Serves the pipeline overview page (an Airflow 3 external view) and, read-only, the
*reports* under the artifact root — so Data Docs, evaluation plots and drift reports open
from a task's extra link in the browser without a separate web server. Nothing here writes.

Every route needs Airflow's login and read access to the pipeline's DAG
(:mod:`conveyor_airflow.ui_auth`). Raw rows are never served: data copies, snapshots and
prediction logs stay readable to tasks and the CLI only. The artifact route answers only
for the files of :func:`servable` (``.html .png .css .js`` and ``summary.json`` inside a
report step's attempt folder) and 404 for anything else, confined to the artifact root.
"""

from __future__ import annotations

import html
import json
import mimetypes
import os
import re
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from conveyor.artifacts import join_url
from conveyor.overview import pipeline_overview
from conveyor.registry.lineage import short_code_identity
from conveyor_airflow.config import conveyor_settings
from conveyor_airflow.links import artifact_href
from conveyor_airflow.ui_auth import (
    GetUserDep,
    access_dag_id,
    install_login_redirect,
    may_read_dag,
    pipeline_dag_id,
    require_dag_read,
)

#: Where the plugin mounts this app on the API server.
URL_PREFIX = "/conveyor"
#: Steps whose attempt folders hold reports: GX Data Docs (validation), evaluation plots,
#: the drift report. The data step (the pulled file) and anything outside a run's step
#: folders (``predictions/``, ``audit/``) are never served.
REPORT_STEPS = frozenset({"validation", "evaluation", "drift", "model_card"})
#: File types served from a report folder; everything else there (snapshot.parquet,
#: metrics.json, drift.json...) answers 404. ``.woff2``: the icon font Data Docs' vendored
#: Font Awesome stylesheet loads (conveyor.validation's offline assets), no data.
SERVED_SUFFIXES = frozenset({".html", ".png", ".css", ".js", ".woff2"})
SERVED_NAMES = frozenset({"summary.json"})
_ATTEMPT = re.compile(r"try-[0-9]+")

# No /docs, /redoc or /openapi.json: every route of this app is one of ours, behind the login.
app = FastAPI(
    title="Conveyor",
    description="Conveyor pipeline overview and run reports",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)
install_login_redirect(app)


def servable(parts: Sequence[str]) -> bool:
    """Whether the artifact ``parts`` (``<dag>/<run>/<step>/try-<n>/.../<file>``) is a report
    file the UI may serve (see :data:`REPORT_STEPS`, :data:`SERVED_SUFFIXES`)."""
    if len(parts) < 5 or parts[2] not in REPORT_STEPS or not _ATTEMPT.fullmatch(parts[3]):
        return False
    name = parts[-1].lower()
    return name in SERVED_NAMES or PurePosixPath(name).suffix in SERVED_SUFFIXES


async def readable_pipelines(request: Request, user: GetUserDep) -> list[str]:
    """The pipelines whose training DAG the logged-in user may read."""
    from conveyor.config import list_pipelines

    names = list_pipelines(conveyor_settings().pipelines_dir)
    return [n for n in names if await may_read_dag(request, user, pipeline_dag_id(n))]


def _artifact_parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") or "\\" in p or "\x00" in p for p in parts):
        raise HTTPException(status_code=400, detail="invalid artifact path")
    return parts


async def artifact_access(request: Request, user: GetUserDep, path: str) -> list[str]:
    """The checked path segments of an artifact the user may read (400/403 otherwise)."""
    parts = _artifact_parts(path)
    await require_dag_read(request, user, access_dag_id(parts[0]))
    return parts


ReadablePipelines = Annotated[list[str], Depends(readable_pipelines)]
ReadableArtifact = Annotated[list[str], Depends(artifact_access)]


def _report_link(url: str | None, text: str = "report") -> str:
    """A link to a report in the artifact store, served by this app's /artifacts route."""
    href = artifact_href(url, conveyor_settings().artifact_root)
    return f' · <a href="{html.escape(href)}">{html.escape(text)}</a>' if href else ""


def _cell(value: Any) -> str:
    if value is None or value == "":
        return '<span class="muted">—</span>'
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True)
    return html.escape(str(value))


def _metrics(metrics: dict[str, float] | None) -> str:
    if not metrics:
        return _cell(None)
    return ", ".join(
        f"{html.escape(k)} {v:.4f}"
        for k, v in sorted(metrics.items())
        if isinstance(v, int | float)
    )


def render_overview(entries: list[dict[str, Any]]) -> str:
    """The overview page: one card per pipeline."""
    cards = []
    for e in entries:
        if "error" in e:
            cards.append(
                f'<section><h2>{_cell(e["name"])}</h2><p class="bad">{_cell(e["error"])}</p></section>'
            )
            continue
        prod = e.get("production") or {}
        val = e.get("last_validation") or {}
        drift = e.get("last_drift_check") or {}
        rows = [
            ("Task / estimator", f"{_cell(e['task'])} · <code>{_cell(e['estimator'])}</code>"),
            (
                "Production version",
                (
                    _cell(prod.get("version"))
                    + (
                        f' <span class="bad">pinned by {_cell(prod["pinned"].get("by"))}: '
                        f"{_cell(prod['pinned'].get('reason'))}</span>"
                        if prod.get("pinned")
                        else ""
                    )
                    + _report_link(prod.get("model_card"), "model card")
                )
                if prod
                else '<span class="muted">none yet</span>',
            ),
            ("Metrics", _metrics(prod.get("metrics"))),
            (
                "Data",
                f"<code>{_cell(e['data_path'])}</code> @ <code>{_cell((prod.get('data_git_sha') or '')[:12])}</code> "
                f"md5 <code>{_cell(prod.get('data_md5'))}</code> ({_cell(prod.get('data_rev_source'))})",
            ),
            (
                "Code / config",
                f"<code>{_cell(short_code_identity(prod.get('project_git_rev') or ''))}</code> · "
                f"<code>{_cell(prod.get('config_hash'))}</code>",
            ),
            ("Trained by", _cell(prod.get("trained_by"))),
            (
                "Last validation",
                (
                    f'<span class="{"ok" if val.get("success") else "bad"}">'
                    f"{'passed' if val.get('success') else 'FAILED'}</span> "
                    f"{_cell(val.get('evaluated'))} expectations, {_cell(val.get('failed'))} broken · run {_cell(val.get('run'))}"
                )
                if val
                else '<span class="muted">none yet</span>',
            ),
            (
                "Last drift check",
                (
                    f'<span class="{"bad" if drift.get("alarm") else "ok"}">'
                    f"{_cell(drift.get('status'))}</span> · run {_cell(drift.get('run'))}"
                    + _report_link(drift.get("report_uri"))
                    if drift
                    else '<span class="muted">none yet</span>'
                ),
            ),
            (
                "Model service",
                f'<a href="{_cell(e["service_url"])}/version" target="_blank">{_cell(e["service_url"])}</a>'
                if e.get("service_url")
                else '<span class="muted">none configured</span>',
            ),
        ]
        body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        cards.append(f"<section><h2>{_cell(e['name'])}</h2><table>{body}</table></section>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Conveyor pipelines</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1f24}}
section{{border:1px solid #d0d7de;border-radius:8px;padding:1rem;margin-bottom:1rem}}
th{{text-align:left;padding-right:1.5rem;font-weight:600;vertical-align:top}}td,th{{padding:.2rem .5rem}}
.muted{{color:#6e7781}}.ok{{color:#1a7f37;font-weight:600}}.bad{{color:#cf222e;font-weight:600}}</style></head>
<body><h1>Conveyor pipelines</h1>{"".join(cards) or "<p>No pipeline YAMLs found.</p>"}</body></html>"""


def _overview(names: list[str]) -> list[dict]:
    """The overview, with each pipeline's model service as deployments see it: the YAML's
    ``deploy.service_url``, else the default model-service connection."""
    from conveyor_airflow.config import conf_value
    from conveyor_airflow.hooks.model_service import server_side_service_url

    entries = pipeline_overview(conveyor_settings(), names)
    default = server_side_service_url(
        conf_value("model_service_conn_id", "conveyor_model_service_default")
    )
    for entry in entries:
        if "error" not in entry and not entry.get("service_url"):
            entry["service_url"] = default
    return entries


@app.get("/", response_class=HTMLResponse)
def overview_page(names: ReadablePipelines) -> str:
    return render_overview(_overview(names))


@app.get("/api/pipelines")
def overview_json(names: ReadablePipelines) -> JSONResponse:
    return JSONResponse(_overview(names))


@app.get("/artifacts/{path:path}")
def artifact(path: str, parts: ReadableArtifact) -> Response:
    from fsspec.core import url_to_fs

    missing = HTTPException(status_code=404, detail=f"no report {path}")
    if not servable(parts):
        raise missing
    fs, root = url_to_fs(conveyor_settings().artifact_root)
    target = join_url(root, *parts)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        # A symbolic link inside the root must not lead out of it.
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, os.path.realpath(target)]) != real_root:
            raise missing
    if not fs.isfile(target):
        raise missing
    with fs.open(target, "rb") as fh:
        data = fh.read()
    media = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    return Response(
        content=data,
        media_type=media,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private"},
    )
