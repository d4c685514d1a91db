"""What a model card reports beyond the headline metrics, computed on the held-out rows.

* the held-out predictions themselves (``predictions.parquet``: the rows' sensitive and
  slice columns, ``y_true``, ``y_pred``, ``proba_<class>``), so anyone can recompute
  every number below;
* metrics per value of each ``evaluation.slices`` column;
* fairness per ``evaluation.sensitive_features`` column with fairlearn's ``MetricFrame``
  (per group: selection rate, true/false positive rate, accuracy, count) and the gaps
  between groups (demographic parity difference, equalized odds difference, TPR/FPR
  differences): lower is better, bounded by ``metrics.fairness`` at the gate;
* permutation importance (``sklearn.inspection``) with a plot of the top features;
* a calibration curve (classification).

A numeric column with more than :data:`MAX_GROUPS` distinct values is grouped into
quartiles of the held-out rows (labels such as ``"[11.7, 13.4)"``); the card says so.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.config import PipelineConfig

log = logging.getLogger(__name__)

#: Columns with more distinct values than this are grouped into quartiles.
MAX_GROUPS = 10
PREDICTIONS_FILE = "predictions.parquet"
GROUP_SUFFIX = "__group"


@dataclass
class CardAnalysis:
    """The card's analyses; JSON-safe through :meth:`to_dict`."""

    rows: int
    slices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fairness: dict[str, dict[str, Any]] = field(default_factory=dict)
    importance: list[dict[str, float]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    grouping: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def worst_fairness(self) -> dict[str, float]:
        """Each fairness gap's largest value over the sensitive features (for the gate)."""
        worst: dict[str, float] = {}
        for result in self.fairness.values():
            for metric, value in result["differences"].items():
                if value is not None:
                    worst[metric] = max(worst.get(metric, 0.0), float(value))
        return worst


def group_labels(values: pd.Series) -> tuple[pd.Series, str]:
    """Group labels of a column and how they were made (as is, or quartiles)."""
    import pandas as pd

    if values.nunique(dropna=False) <= MAX_GROUPS or not pd.api.types.is_numeric_dtype(values):
        return values.astype(str), "values as they are"
    edges = sorted(set(values.quantile([0.0, 0.25, 0.5, 0.75, 1.0]).round(6).tolist()))
    binned = pd.cut(values, bins=edges, include_lowest=True, right=False, duplicates="drop")
    labels = binned.astype(str).where(binned.notna(), f">= {edges[-1]:g}")
    labels = labels.str.replace(r"^\(", "[", regex=True)
    return labels, "quartiles of the held-out rows"


def _classification_rates(y_true: Any, y_pred: Any, positive: Any) -> dict[str, Any]:
    from fairlearn.metrics import (
        count,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    return {
        "count": count,
        "accuracy": accuracy_score,
        "selection_rate": lambda t, p: selection_rate(t, p, pos_label=positive),
        "true_positive_rate": lambda t, p: true_positive_rate(t, p, pos_label=positive),
        "false_positive_rate": lambda t, p: false_positive_rate(t, p, pos_label=positive),
    }


def fairness_frame(
    y_true: Any, y_pred: Any, groups: Any, *, positive: Any
) -> tuple[Any, dict[str, float | None]]:
    """fairlearn ``MetricFrame`` by group and the gaps between groups (lower is better)."""
    from fairlearn.metrics import MetricFrame

    frame = MetricFrame(
        metrics=_classification_rates(y_true, y_pred, positive),
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=groups,
    )
    diff = frame.difference(method="between_groups")

    def gap(name: str) -> float | None:
        value = float(diff[name])
        return None if value != value else round(value, 6)

    tpr, fpr = gap("true_positive_rate"), gap("false_positive_rate")
    return frame, {
        "demographic_parity_difference": gap("selection_rate"),
        "equalized_odds_difference": None if tpr is None or fpr is None else max(tpr, fpr),
        "true_positive_rate_difference": tpr,
        "false_positive_rate_difference": fpr,
    }


def analyze(
    model: Any, test: pd.DataFrame, config: PipelineConfig, out_dir: str | Path
) -> CardAnalysis:
    """Write the held-out predictions and plots to ``out_dir`` and return the analyses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    from sklearn.inspection import permutation_importance

    from conveyor.data.splits import features_and_target
    from conveyor.modeling.evaluation import score

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = config.evaluation
    if len(test) > spec.max_card_rows:
        test = test.sample(n=spec.max_card_rows, random_state=config.split.seed)
    X, y = features_and_target(test, config)
    classification = config.task == "classification"
    y_pred = np.asarray(model.predict(X))
    proba = model.predict_proba(X) if classification and hasattr(model, "predict_proba") else None
    classes = list(getattr(model, "classes_", [])) if proba is not None else []
    result = CardAnalysis(rows=len(test))

    # held-out predictions with the grouping columns: the card's numbers come from this file
    kept = list(dict.fromkeys([*spec.slices, *spec.sensitive_features]))
    preds = pd.DataFrame({c: X[c].to_numpy() for c in kept})
    for column in kept:
        labels, how = group_labels(X[column])
        preds[f"{column}{GROUP_SUFFIX}"] = labels.to_numpy()
        result.grouping[column] = how
    preds["y_true"] = np.asarray(y)
    preds["y_pred"] = y_pred
    for j, cls in enumerate(classes):
        preds[f"proba_{cls}"] = proba[:, j]
    preds.to_parquet(out / PREDICTIONS_FILE, index=False)
    result.files["predictions"] = PREDICTIONS_FILE

    for column in spec.slices:
        rows = []
        for label, part in preds.groupby(f"{column}{GROUP_SUFFIX}", sort=True):
            part_proba = part[[f"proba_{c}" for c in classes]].to_numpy() if classes else None
            metrics = (
                score(
                    part["y_true"], part["y_pred"], config.task, proba=part_proba, classes=classes
                )
                if len(part) > 1
                else {}
            )
            rows.append({"group": str(label), "rows": len(part), **metrics})
        result.slices[column] = rows

    if classification and spec.sensitive_features:
        positive = classes[-1] if classes else sorted(pd.unique(y))[-1]
        for column in spec.sensitive_features:
            frame, gaps = fairness_frame(
                preds["y_true"],
                preds["y_pred"],
                preds[f"{column}{GROUP_SUFFIX}"],
                positive=positive,
            )
            by_group = frame.by_group.reset_index()
            by_group.columns = ["group", *by_group.columns[1:]]
            result.fairness[column] = {
                "positive_class": positive if not hasattr(positive, "item") else positive.item(),
                "by_group": [
                    {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                    for row in by_group.to_dict(orient="records")
                ],
                "differences": gaps,
            }

    scoring = "roc_auc" if classification and len(classes) == 2 else None
    imp = permutation_importance(
        model,
        X,
        y,
        n_repeats=spec.importance_repeats,
        random_state=config.split.seed,
        scoring=scoring,
        n_jobs=1,
    )
    order = np.argsort(imp.importances_mean)[::-1]
    result.importance = [
        {
            "feature": str(X.columns[i]),
            "mean": round(float(imp.importances_mean[i]), 6),
            "std": round(float(imp.importances_std[i]), 6),
        }
        for i in order
    ]
    top = result.importance[:15][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(top) + 1.2))
    ax.barh([t["feature"] for t in top], [t["mean"] for t in top], xerr=[t["std"] for t in top])
    ax.set_title(f"{config.name}: permutation importance (held-out, {scoring or 'score'} drop)")
    fig.savefig(out / "permutation_importance.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    result.files["importance_plot"] = "permutation_importance.png"

    if proba is not None and len(classes) == 2:
        from sklearn.calibration import CalibrationDisplay

        display = CalibrationDisplay.from_predictions(
            y, proba[:, 1], n_bins=10, pos_label=classes[1], name=config.name
        )
        display.ax_.set_title(f"{config.name}: calibration (held-out)")
        display.figure_.savefig(out / "calibration.png", dpi=100, bbox_inches="tight")
        plt.close(display.figure_)
        result.files["calibration_plot"] = "calibration.png"
    log.info(
        "Model card analyses on %d held-out rows: %d slice column(s), fairness on %s",
        len(test),
        len(result.slices),
        list(result.fairness) or "nothing",
    )
    return result
