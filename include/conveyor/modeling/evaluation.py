"""Evaluation: metrics and plots on the held-out split, for candidate and production alike.

Metric names follow scikit-learn's convention: ``*_score``-like metrics (accuracy, f1,
roc_auc, r2) are better when higher, errors (rmse, mae) when lower; see
:data:`conveyor.config.METRICS`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import TrainingError

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.config import PipelineConfig

log = logging.getLogger(__name__)


def score(
    y: Any,
    predicted: Any,
    task: str,
    *,
    proba: Any = None,
    classes: Any = None,
) -> dict[str, float]:
    """Every metric of ``task`` from true values, predictions and (optionally) probabilities.

    Shared by the held-out evaluation and the live-performance check, so a metric means
    the same in both places. ``proba`` is an (n, n_classes) array in ``classes`` order.
    """
    import numpy as np
    from sklearn import metrics as skm

    if task == "regression":
        return {
            "rmse": float(skm.root_mean_squared_error(y, predicted)),
            "mae": float(skm.mean_absolute_error(y, predicted)),
            "r2": float(skm.r2_score(y, predicted)),
        }
    binary = len(np.unique(y)) <= 2 and (classes is None or len(classes) <= 2)
    result = {
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "f1": float(skm.f1_score(y, predicted, average="binary" if binary else "macro")),
    }
    if proba is not None and len(np.unique(y)) > 1:
        if binary:
            result["roc_auc"] = float(skm.roc_auc_score(y, np.asarray(proba)[:, 1]))
        else:
            result["roc_auc"] = float(
                skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
            )
    return result


def compute_metrics(model: Any, test: pd.DataFrame, config: PipelineConfig) -> dict[str, float]:
    """Every metric defined for the config's task, computed on ``test``.

    Raises
    ------
    TrainingError
        If the model cannot score the frame (e.g. a production model trained on other columns).
    """
    from conveyor.data.splits import features_and_target

    X, y = features_and_target(test, config)
    try:
        predicted = model.predict(X)
        proba = classes = None
        if config.task == "classification" and hasattr(model, "predict_proba"):
            proba, classes = model.predict_proba(X), model.classes_
        return score(y, predicted, config.task, proba=proba, classes=classes)
    except (ValueError, KeyError, AttributeError) as exc:
        raise TrainingError(f"Cannot score the held-out split: {exc}") from exc


def write_plots(
    model: Any, test: pd.DataFrame, config: PipelineConfig, out_dir: Path
) -> list[Path]:
    """Diagnostic PNGs: confusion matrix and ROC curve, or predicted-vs-actual residuals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import (
        ConfusionMatrixDisplay,
        PredictionErrorDisplay,
        RocCurveDisplay,
    )

    from conveyor.data.splits import features_and_target

    out_dir.mkdir(parents=True, exist_ok=True)
    X, y = features_and_target(test, config)
    predicted = model.predict(X)
    written: list[Path] = []

    def save(fig, name: str) -> None:
        path = out_dir / name
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    if config.task == "classification":
        display = ConfusionMatrixDisplay.from_predictions(y, predicted)
        display.ax_.set_title(f"{config.name}: confusion matrix (held-out)")
        save(display.figure_, "confusion_matrix.png")
        if hasattr(model, "predict_proba") and y.nunique() == 2:
            display = RocCurveDisplay.from_predictions(
                y, model.predict_proba(X)[:, 1], pos_label=model.classes_[1]
            )
            display.ax_.set_title(f"{config.name}: ROC curve (held-out)")
            save(display.figure_, "roc_curve.png")
    else:
        display = PredictionErrorDisplay.from_predictions(
            y, predicted, kind="actual_vs_predicted", subsample=2000, random_state=0
        )
        display.ax_.set_title(f"{config.name}: actual vs predicted (held-out)")
        save(display.figure_, "actual_vs_predicted.png")
        display = PredictionErrorDisplay.from_predictions(
            y, predicted, kind="residual_vs_predicted", subsample=2000, random_state=0
        )
        save(display.figure_, "residuals.png")
    return written
