"""One monitoring check of a served model: drift, live performance, and what to do next.

The check reads a window of the prediction log, compares its inputs with the production
version's reference profile (:mod:`conveyor.monitoring.drift`) and, when labels have been delivered,
its live metric with the registered one. The outcome is one of:

``not_enough_data``
    Fewer logged predictions than ``monitor.min_rows``: no verdict (never a false alarm).
``stable``
    Nothing exceeded its threshold.
``retrain``
    Drift or a performance drop, and the data registry has a revision production was not
    trained on: the caller starts a retraining run on it (the Airflow adapter emits an
    event on the pipeline's data asset, carrying the revision and the reason).
``no_new_data``
    Drift or a performance drop, but the newest data is what production was trained on:
    retraining would rebuild the same model. The caller notifies; the data watcher starts
    retraining as soon as new data lands.

Nothing here imports Airflow; the DAG that runs it is ``conveyor_monitor_<pipeline>``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from conveyor.errors import DriftError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from conveyor.config import PipelineConfig
    from conveyor.settings import Settings

log = logging.getLogger(__name__)

NOT_ENOUGH_DATA = "not_enough_data"
STABLE = "stable"
RETRAIN = "retrain"
NO_NEW_DATA = "no_new_data"


@dataclass
class MonitorOutcome:
    """What one check found and decided (JSON-safe via :meth:`to_dict`)."""

    status: str
    message: str
    pipeline: str
    production_version: str | None
    rows: int
    window_start: str
    window_end: str
    drift: dict[str, Any] | None = None
    performance: dict[str, Any] | None = None
    #: For ``retrain``: the data revision to train on (repo, path, rev, md5) and the reason.
    retrain_payload: dict[str, Any] | None = None
    report_files: dict[str, str] = field(default_factory=dict)

    @property
    def alarm(self) -> bool:
        """Whether drift or a performance drop was found (retrain or not)."""
        return self.status in (RETRAIN, NO_NEW_DATA)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "alarm": self.alarm}


def prediction_log_dir(settings: Settings, pipeline: str) -> str:
    """Where the model service of ``pipeline`` logs predictions (the service's default)."""
    import os

    from conveyor.artifacts import join_url

    return os.environ.get("CONVEYOR_PREDICTION_LOG_DIR") or join_url(
        settings.artifact_root, "predictions", pipeline
    )


def load_window(log_dir: str, model_name: str, since: datetime, until: datetime) -> pd.DataFrame:
    """Logged predictions of ``model_name`` with ``since <= ts < until`` as one frame.

    Feature columns as logged, plus ``_id``, ``_version``, ``_prediction`` and
    ``_probabilities`` (dict or None).
    """
    import pandas as pd

    from conveyor.serving.prediction_log import read_prediction_log

    records = [
        r for r in read_prediction_log(log_dir, since, until=until) if r.get("model") == model_name
    ]
    frame = pd.DataFrame.from_records([r.get("inputs") or {} for r in records])
    frame["_id"] = [r.get("id") for r in records]
    frame["_version"] = [str(r.get("version")) for r in records]
    frame["_prediction"] = [r.get("prediction") for r in records]
    frame["_probabilities"] = [r.get("probabilities") for r in records]
    return frame


def read_labels(url: str) -> pd.DataFrame:
    """Delivered ground truth: ``*.csv``, ``*.jsonl`` or ``*.parquet`` files with ``id, label``.

    ``url`` is a directory (every matching file inside, recursively) or one file, local or
    any fsspec URL. Later files win when an id appears twice (a corrected label).
    """
    import pandas as pd
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url)
    if not fs.exists(root):
        return pd.DataFrame(columns=["id", "label"])
    paths = (
        [root]
        if fs.isfile(root)
        else sorted(p for p in fs.find(root) if p.endswith((".csv", ".jsonl", ".json", ".parquet")))
    )
    frames = []
    for path in paths:
        with fs.open(path, "rb") as handle:
            if path.endswith(".parquet"):
                part = pd.read_parquet(handle)
            elif path.endswith((".jsonl", ".json")):
                part = pd.read_json(handle, lines=True)
            else:
                part = pd.read_csv(handle)
        missing = {"id", "label"} - set(part.columns)
        if missing:
            raise DriftError(
                f"Label file {path} lacks column(s) {sorted(missing)}: label files need "
                "'id' (the prediction id /predict returned) and 'label'"
            )
        frames.append(part[["id", "label"]])
    if not frames:
        return pd.DataFrame(columns=["id", "label"])
    labels = pd.concat(frames, ignore_index=True)
    labels["id"] = labels["id"].astype(str)
    return labels.drop_duplicates("id", keep="last")


def live_performance(
    window: pd.DataFrame,
    labels: pd.DataFrame,
    config: PipelineConfig,
    registered: dict[str, float],
) -> dict[str, Any]:
    """The live metric on predictions that have labels, against the registered metric.

    The compared metric is the pipeline's primary metric when it can be computed from the
    log (``roc_auc`` needs logged probabilities), else the first that can.
    """
    import numpy as np

    from conveyor.modeling.evaluation import score

    spec = config.monitor
    joined = window.merge(labels, left_on="_id", right_on="id", how="inner")
    result: dict[str, Any] = {"labelled": len(joined), "min_labels": spec.min_labels}
    if len(joined) < spec.min_labels:
        result.update(status="not_enough_labels", degraded=False)
        return result
    proba = classes = None
    if config.task == "classification":
        if all(isinstance(p, dict) and p for p in joined["_probabilities"]):
            keys = sorted(joined["_probabilities"].iloc[0], key=_class_order)
            proba = np.array([[p.get(c, 0.0) for c in keys] for p in joined["_probabilities"]])
            classes = _as_classes(keys)
        y = _as_classes(joined["label"])
        predicted = _as_classes(joined["_prediction"])
    else:
        y = joined["label"].astype(float).to_numpy()
        predicted = joined["_prediction"].astype(float).to_numpy()
    live = score(y, predicted, config.task, proba=proba, classes=classes)
    candidates = [config.metrics.primary, *live]
    metric = next(m for m in candidates if m in live and m in registered)
    higher = config.higher_is_better(metric)
    drop = (registered[metric] - live[metric]) if higher else (live[metric] - registered[metric])
    result.update(
        status="measured",
        metric=metric,
        live=round(live[metric], 6),
        registered=round(registered[metric], 6),
        drop=round(drop, 6),
        max_drop=spec.max_metric_drop,
        degraded=drop > spec.max_metric_drop,
        all_live_metrics={k: round(v, 6) for k, v in live.items()},
    )
    return result


def _as_classes(values: Any) -> Any:
    """Class labels as the model's ``classes_`` hold them: integers when every label is an
    integral number (JSON and CSV turn ``1`` into ``"1"`` or ``1.0``), else strings."""
    import numpy as np
    import pandas as pd

    series = pd.Series(list(values))
    numbers = pd.to_numeric(series, errors="coerce")
    if numbers.notna().all() and (numbers == numbers.round()).all():
        return numbers.astype("int64").to_numpy()
    return series.astype(str).to_numpy(dtype=object) if len(series) else np.array([])


def _class_order(label: str) -> tuple[int, float | str]:
    """Numeric class labels in numeric order (as the model's ``classes_``), then strings."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def load_reference_profile(client: MlflowClient, version: Any) -> dict[str, Any]:
    """The reference profile stored with a model version (in its MLflow run)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from conveyor.monitoring.drift import PROFILE_ARTIFACT

    if not version.run_id:
        raise DriftError(f"Model version {version.version} has no MLflow run, so no profile")
    try:
        return mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{PROFILE_ARTIFACT}")
    except (MlflowException, OSError) as exc:
        raise DriftError(
            f"{version.name} v{version.version} has no reference profile ({PROFILE_ARTIFACT} in "
            f"run {version.run_id}): it was trained before monitoring existed. Retrain it "
            f"(trigger its training DAG with force=true) to monitor it. Cause: {exc}"
        ) from exc


def newest_data(config: PipelineConfig, settings: Settings) -> dict[str, str]:
    """The tracked branch's head in the data registry: repo, path, rev (commit) and md5."""
    from conveyor.data.source import read_tracked_md5, resolve_rev

    repo = config.data.repo or settings.data_registry
    sha = resolve_rev(repo, config.data.rev)
    return {
        "repo": repo,
        "path": config.data.path,
        "rev": sha,
        "md5": read_tracked_md5(repo, config.data.path, sha),
    }


def check(
    config: PipelineConfig,
    settings: Settings,
    *,
    report_dir: str,
    now: datetime | None = None,
    log_dir: str | None = None,
) -> MonitorOutcome:
    """Run one monitoring check of pipeline ``config`` and write its report.

    Parameters
    ----------
    report_dir : str
        Local directory for the drift report (``drift.json``, ``index.html``, PNGs).
    now : datetime, optional
        End of the window (default: now); the window is ``monitor.window_hours`` long.
    log_dir : str, optional
        Prediction log directory (default: the service's, see :func:`prediction_log_dir`).
    """
    from conveyor.monitoring.drift import compute_drift
    from conveyor.monitoring.report import write_report
    from conveyor.registry import tracking
    from conveyor.registry.models import PRODUCTION, version_by_alias

    spec = config.monitor
    end = now or datetime.now(UTC)
    start = end - timedelta(hours=spec.window_hours)
    log_dir = log_dir or prediction_log_dir(settings, config.name)
    base = {
        "pipeline": config.name,
        "window_start": start.isoformat(timespec="seconds"),
        "window_end": end.isoformat(timespec="seconds"),
    }
    client = tracking.configure(settings)
    production = version_by_alias(client, config.model_name, PRODUCTION)
    if production is None:
        return MonitorOutcome(
            status=NOT_ENOUGH_DATA,
            message=f"{config.name} has no production version yet: nothing to monitor",
            production_version=None,
            rows=0,
            **base,
        )
    window = load_window(log_dir, config.model_name, start, end)
    log.info(
        "%d predictions of %s in %s .. %s (log %s)",
        len(window),
        config.name,
        base["window_start"],
        base["window_end"],
        log_dir,
    )
    if len(window) < spec.min_rows:
        return MonitorOutcome(
            status=NOT_ENOUGH_DATA,
            message=(
                f"not enough data: {len(window)} predictions in the last {spec.window_hours:g} h, "
                f"monitor.min_rows is {spec.min_rows}; no drift verdict"
            ),
            production_version=str(production.version),
            rows=len(window),
            **base,
        )
    profile = load_reference_profile(client, production)
    report = compute_drift(
        profile,
        window,
        psi_threshold=spec.psi_threshold,
        ks_pvalue=spec.ks_pvalue,
        drift_share=spec.drift_share,
        distance_threshold=spec.distance_threshold,
        unseen_share=spec.unseen_share,
    )
    performance = None
    if spec.labels:
        registered = json.loads(production.tags.get("conveyor.metrics") or "{}")
        performance = live_performance(window, read_labels(spec.labels), config, registered)
    reasons = []
    if report.dataset_drift:
        reasons.append(report.summary())
    if performance and performance.get("degraded"):
        reasons.append(
            f"live {performance['metric']} {performance['live']:.4f} is "
            f"{performance['drop']:.4f} worse than registered {performance['registered']:.4f} "
            f"(max drop {performance['max_drop']})"
        )
    facts = {
        "pipeline": config.name,
        "production version": production.version,
        "window": f"{base['window_start']} .. {base['window_end']}",
        "predictions": len(window),
        "prediction log": log_dir,
    }
    outcome = MonitorOutcome(
        status=STABLE,
        message=f"stable: {report.summary()}",
        production_version=str(production.version),
        rows=len(window),
        drift=report.to_dict(),
        performance=performance,
        **base,
    )
    if reasons:
        newest = newest_data(config, settings)
        trained_on = production.tags.get("conveyor.data_md5")
        reason = "; ".join(reasons)
        if newest["md5"] == trained_on:
            outcome.status = NO_NEW_DATA
            outcome.message = (
                f"{reason}. No new training data: the newest revision {newest['rev'][:10]} "
                f"(md5 {newest['md5']}) is what v{production.version} was trained on, so "
                "retraining would rebuild the same model. Publish new data to the registry; "
                "the data watcher retrains as soon as it lands."
            )
        else:
            outcome.status = RETRAIN
            outcome.retrain_payload = {**newest, "reason": f"monitor: {reason}"}
            outcome.message = (
                f"{reason}. Retraining on revision {newest['rev'][:10]} (md5 {newest['md5']})."
            )
    facts["outcome"] = outcome.status
    facts["decision"] = outcome.message
    outcome.report_files = write_report(report, report_dir, context=facts)
    return outcome
