"""A first pipeline config inferred from a data file: column types, ranges, allowed values.

``conveyor new-pipeline NAME --from FILE --target COL`` writes the result as the new
pipeline's YAML. The inferred expectations describe the file as it is, widened a little
(ranges get a margin) so the next version of the same data still passes; they are a
starting point to edit, not a contract.

Rules
-----
* type: pandas ``bool`` -> ``bool``; integers -> ``int``; other numbers -> ``float``;
  anything else -> ``str``.
* nullable: whether the column has a missing value.
* numeric range: ``[min - m, max + m]`` with ``m`` = :data:`RANGE_MARGIN` of the observed
  span (of the value itself when the span is 0); never below 0 for a column without
  negative values; integers rounded outward.
* allowed values: listed for ``str``/``bool``/``int`` columns with at most
  :data:`MAX_CATEGORIES` distinct values (and for a classification target).
* task: a float target with fractions, or an integer target with more than
  :data:`MAX_CLASSES` values, is ``regression``; otherwise ``classification``, binary with
  two classes, multiclass with more.
* metrics and search scoring valid for the task (see :data:`TASK_DEFAULTS`): binary
  gates on ``roc_auc`` and searches with ``roc_auc``; multiclass on ``f1`` (macro
  average) and searches with ``f1_macro`` (scikit-learn's ``roc_auc`` scorer rejects
  more than two classes); regression on ``r2`` and searches with
  ``neg_root_mean_squared_error``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Widening of an observed numeric range, as a share of its span.
RANGE_MARGIN = 0.1
#: Columns with at most this many distinct values get an ``allowed`` list.
MAX_CATEGORIES = 10
#: An integer target with more distinct values than this is a regression target.
MAX_CLASSES = 20

#: Estimator, metrics and search per task kind. Metric names are those Conveyor computes
#: (:func:`conveyor.modeling.evaluation.score`); scoring names are scikit-learn scorers.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "binary": {
        "task": "classification",
        "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
        "primary": "roc_auc",
        "thresholds": {"roc_auc": 0.7, "f1": 0.5},
        "scoring": "roc_auc",
    },
    "multiclass": {
        "task": "classification",
        "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
        "primary": "f1",
        "thresholds": {"f1": 0.5, "accuracy": 0.5},
        "scoring": "f1_macro",
    },
    "regression": {
        "task": "regression",
        "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
        "primary": "r2",
        "thresholds": {"r2": 0.2},
        "scoring": "neg_root_mean_squared_error",
    },
}


def task_kind(target: pd.Series) -> str:
    """``"binary"``, ``"multiclass"`` or ``"regression"`` for a target column."""
    import pandas as pd

    values = target.dropna()
    distinct = values.nunique()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "binary" if distinct <= 2 else "multiclass"
    if pd.api.types.is_float_dtype(values) and not (values == values.round()).all():
        return "regression"
    if distinct > MAX_CLASSES:
        return "regression"
    return "binary" if distinct <= 2 else "multiclass"


def _type(series: pd.Series) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_numeric_dtype(series):
        return "float"
    return "str"


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str) else value


def infer_column(series: pd.Series, *, categorical: bool = False) -> dict[str, Any]:
    """The ``validation.columns`` entry describing ``series`` (see the module's rules)."""
    kind = _type(series)
    spec: dict[str, Any] = {"type": kind}
    if series.isna().any():
        spec["nullable"] = True
    values = series.dropna()
    distinct = values.unique()
    if kind in ("int", "float") and len(values):
        lo, hi = float(values.min()), float(values.max())
        margin = RANGE_MARGIN * ((hi - lo) or abs(hi) or 1.0)
        low, high = lo - margin, hi + margin
        if lo >= 0:
            low = max(low, 0.0)
        if kind == "int":
            spec["min"], spec["max"] = math.floor(low), math.ceil(high)
        else:
            spec["min"], spec["max"] = round(low, 6), round(high, 6)
    if (categorical or kind in ("str", "bool", "int")) and 0 < len(distinct) <= MAX_CATEGORIES:
        spec["allowed"] = sorted(_plain(v) for v in distinct)
        if kind == "int" or categorical:
            spec.pop("min", None)
            spec.pop("max", None)
    return spec


def infer_pipeline(
    frame: pd.DataFrame,
    *,
    name: str,
    target: str,
    data_path: str,
    data_format: str = "csv",
) -> dict[str, Any]:
    """A complete pipeline config (as the YAML mapping) for ``frame``.

    Raises
    ------
    ValueError
        If ``target`` is not a column of ``frame`` or the frame is empty.
    """
    if target not in frame.columns:
        raise ValueError(
            f"--target {target!r} is not a column of the file; columns: {list(frame.columns)}"
        )
    if frame.empty:
        raise ValueError("the file has no rows: nothing to infer expectations from")
    kind = task_kind(frame[target])
    defaults = TASK_DEFAULTS[kind]
    columns = {
        str(c): infer_column(frame[c], categorical=(c == target and kind != "regression"))
        for c in frame.columns
    }
    return {
        "schema_version": 1,
        "name": name,
        "description": f"TODO: describe {name} ({kind} on {target!r}, inferred from the data)",
        "task": defaults["task"],
        "data": {"path": data_path, "rev": "main", "format": data_format},
        "target": target,
        "validation": {
            "min_rows": max(1, len(frame) // 2),
            "exact_columns": True,
            "columns": columns,
        },
        "model": {
            "estimator": defaults["estimator"],
            "params": {"random_state": 0},
            "search": {
                "param_grid": {"max_depth": [3, None]},
                "cv": 3,
                "scoring": defaults["scoring"],
            },
        },
        "split": {"test_size": 0.25, "seed": 42},
        "metrics": {
            "primary": defaults["primary"],
            "thresholds": dict(defaults["thresholds"]),
            "max_regression": 0.01,
        },
    }
