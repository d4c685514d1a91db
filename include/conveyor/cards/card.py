"""The model card of a registered version: JSON + a self-contained HTML page with its plots.

Built at registration from what the earlier steps recorded (data lineage, validation,
training config, held-out metrics and the production comparison, the evaluation plots and
:mod:`conveyor.cards.analysis`), stored twice: in the run's artifact location
(``model_card/try-N/``, served by the Conveyor UI and linked from the ``register_model``
task, the approval and the pipelines view) and as MLflow artifacts of the version's run
(``model_card/``). The version's ``conveyor.model_card`` tag holds the card's URL.
"""

from __future__ import annotations

import html
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.artifacts import RunArtifacts, join_url
from conveyor.registry.lineage import TAG_PREFIX

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from conveyor.config import PipelineConfig
    from conveyor.settings import Settings

log = logging.getLogger(__name__)

CARD_TAG = f"{TAG_PREFIX}model_card"
CARD_HTML, CARD_JSON = "index.html", "card.json"


def build_card(
    config: PipelineConfig,
    *,
    version: str,
    data: dict[str, Any],
    validation: dict[str, Any],
    training: dict[str, Any],
    evaluation: dict[str, Any],
    gate: dict[str, Any],
    dag_id: str,
    run_id: str,
) -> dict[str, Any]:
    """The card's content as a JSON-safe dict (also what the HTML shows)."""
    card = evaluation.get("card") or {}
    return {
        "model": {"name": config.model_name, "version": str(version), "task": config.task},
        "owner": config.owner or None,
        "intended_use": config.intended_use or None,
        "description": config.description,
        "data": {
            "repo": data.get("repo"),
            "path": data.get("path"),
            "rev": data.get("rev"),
            "git_sha": data.get("git_sha"),
            "md5": data.get("md5"),
            "rows": validation.get("rows"),
            "class_balance": validation.get("class_balance") or training.get("class_balance"),
            "validation": {k: validation.get(k) for k in ("success", "evaluated", "failed")},
        },
        "training": {
            "estimator": config.model.estimator,
            "params": config.model.params,
            "best_params": training.get("best_params") or {},
            "split": config.split.model_dump(),
            "config_hash": config.config_hash(),
            "mlflow_run_id": training.get("mlflow_run_id"),
        },
        "metrics": {
            "held_out_rows": evaluation.get("test_rows"),
            "candidate": evaluation.get("candidate"),
            "production": evaluation.get("production"),
        },
        "gate": {k: gate.get(k) for k in ("passed", "overridden", "override_reason", "reasons")},
        "slices": card.get("slices", {}),
        "grouping": card.get("grouping", {}),
        "fairness": card.get("fairness", {}),
        "importance": card.get("importance", []),
        "held_out_predictions": join_url(card["prefix"], card["files"]["predictions"])
        if card.get("prefix")
        else None,
        "airflow": {"dag_id": dag_id, "run_id": run_id},
    }


def _table(rows: list[dict[str, Any]], css: str = "") -> str:
    if not rows:
        return '<p class="muted">none</p>'
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return html.escape("—" if v is None else str(v))

    body = "".join(
        "<tr>" + "".join(f"<td>{cell(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_html(card: dict[str, Any], images: list[str]) -> str:
    """A self-contained page (plots referenced relatively, no external assets)."""
    m = card["model"]
    esc = html.escape
    metrics = card["metrics"]
    prod = metrics.get("production") or {}
    metric_rows = [
        {
            "metric": k,
            "candidate": v,
            f"production v{prod.get('version')}" if prod.get("version") else "production": (
                prod.get("metrics") or {}
            ).get(k),
        }
        for k, v in (metrics.get("candidate") or {}).items()
    ]
    parts = [
        f"<h1>Model card: {esc(m['name'])} v{esc(m['version'])}</h1>",
        f'<p id="model-version" data-version="{esc(m["version"])}">{esc(m["task"])} · '
        f"{esc(card.get('description') or '')}</p>",
        "<h2>Intended use and owner</h2>",
        _table(
            [
                {
                    "intended use": card.get("intended_use") or "not stated (intended_use)",
                    "owner": card.get("owner") or "not stated (owner)",
                }
            ]
        ),
        "<h2>Data</h2>",
        _table(
            [{k: v for k, v in card["data"].items() if k not in ("validation", "class_balance")}]
        ),
        f"<p>Class balance: <code>{esc(json.dumps(card['data'].get('class_balance')))}</code> · "
        f"validation: <code>{esc(json.dumps(card['data']['validation']))}</code></p>",
        "<h2>Training</h2>",
        f"<pre>{esc(json.dumps(card['training'], indent=2, default=str))}</pre>",
        f"<h2>Held-out metrics ({esc(str(metrics.get('held_out_rows')))} rows)</h2>",
        _table(metric_rows),
        "<p>Gate: " + esc("; ".join(card["gate"].get("reasons") or [])) + "</p>",
    ]
    for column, rows in card.get("slices", {}).items():
        how = card.get("grouping", {}).get(column, "")
        parts += [
            f"<h2>Sliced metrics: {esc(column)}</h2><p class='muted'>{esc(how)}</p>",
            _table(rows),
        ]
    for column, result in card.get("fairness", {}).items():
        how = card.get("grouping", {}).get(column, "")
        parts += [
            f"<h2>Fairness: {esc(column)}</h2>",
            f"<p class='muted'>groups: {esc(how)}; positive class "
            f"{esc(str(result.get('positive_class')))}; fairlearn MetricFrame</p>",
            _table(result["by_group"], "fairness"),
            _table([{k: v for k, v in result["differences"].items()}], "fairness-differences"),
        ]
    if not card.get("fairness"):
        parts.append(
            "<h2>Fairness</h2><p class='muted'>no evaluation.sensitive_features configured</p>"
        )
    parts += ["<h2>Permutation importance (held-out)</h2>", _table(card.get("importance", [])[:15])]
    parts += [f'<p><img src="{esc(name)}" alt="{esc(name)}"></p>' for name in images]
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;"
        "margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
        ".muted{color:#777}img{max-width:48em}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Model card {esc(m['name'])} "
        f"v{esc(m['version'])}</title><style>{style}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )


def publish_card(
    client: MlflowClient,
    config: PipelineConfig,
    settings: Settings,
    *,
    version: str,
    dag_id: str,
    run_id: str,
    try_number: int = 1,
    **facts: Any,
) -> str:
    """Build, store and tag the card of ``version``; return the HTML's URL.

    ``facts``: the upstream results (``data``, ``validation``, ``training``,
    ``evaluation``, ``gate``) as :func:`build_card` takes them.
    """
    import fsspec

    card = build_card(config, version=version, dag_id=dag_id, run_id=run_id, **facts)
    evaluation = facts.get("evaluation") or {}
    sources = list(evaluation.get("plots") or [])
    prefix = (evaluation.get("card") or {}).get("prefix")
    for key in ("importance_plot", "calibration_plot"):
        name = ((evaluation.get("card") or {}).get("files") or {}).get(key)
        if prefix and name:
            sources.append(join_url(prefix, name))
    with tempfile.TemporaryDirectory(prefix="conveyor-card-") as tmp:
        folder = Path(tmp)
        images = []
        for url in sources:
            name = url.rsplit("/", 1)[-1]
            with fsspec.open(url, "rb") as src:
                (folder / name).write_bytes(src.read())
            images.append(name)
        (folder / CARD_JSON).write_text(json.dumps(card, indent=2, default=str))
        (folder / CARD_HTML).write_text(render_html(card, images))
        with RunArtifacts(settings.artifact_root, dag_id, run_id).step(
            "model_card", attempt=try_number
        ) as out:
            root = out.put_dir(folder, "card")
        client.log_artifacts(card["training"]["mlflow_run_id"], str(folder), "model_card")
    url = join_url(root, CARD_HTML)
    client.set_model_version_tag(config.model_name, str(version), CARD_TAG, url)
    log.info("Model card of %s v%s: %s", config.model_name, version, url)
    return url
