"""Turning checked rows into predictions, fast.

The fitted model is the scikit-learn ``Pipeline`` that :func:`conveyor.modeling.training.build_pipeline`
builds: a ``ColumnTransformer`` that selects columns *by name* (so it needs a DataFrame),
then the estimator. For one row, building the DataFrame and running the ColumnTransformer
costs ~3-4 ms, the estimator ~1 ms. So the predictor

* runs the preprocessing once and hands its output to both ``predict`` and
  ``predict_proba`` of the estimator (the fitted pipeline would run it twice);
* for all-numeric inputs whose preprocessing is only ``SimpleImputer``/``StandardScaler``
  or a passthrough (the numeric branches ``model.preprocess`` builds), replays those
  steps with NumPy on a float matrix —
  microseconds instead of milliseconds. The replay is *verified* against the fitted
  sklearn steps when the model is loaded and switched off (with a log line) on any
  mismatch; anything it does not recognise takes the general DataFrame path.

The label must be the one the estimator's own ``predict`` gives (the one evaluation
scored). Calling ``predict`` *and* ``predict_proba`` doubles the cost (~1-2 ms each for
one row of the demo model), so for the classifiers in :data:`ARGMAX_CLASSIFIERS`, whose
``predict`` is by construction the most probable class, the label is taken from the
probabilities; rows whose top two probabilities (nearly) tie — where rounding could
make the two disagree — still go through ``predict``. Any other classifier (an ``SVC``
with Platt-scaled probabilities, say) gets both calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.serving.schema import InputSchema

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

#: Rows used to check the NumPy replay against the fitted sklearn steps.
_VERIFY_ROWS = 32

#: Classifiers whose ``predict`` is the argmax of ``predict_proba`` (up to exact ties):
#: trees and forests literally compute it so; boosting and logistic regression threshold
#: a score that ``predict_proba`` maps monotonically. Reviewed in scikit-learn 1.9.
ARGMAX_CLASSIFIERS = frozenset(
    {
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._gb.GradientBoostingClassifier",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.linear_model._logistic.LogisticRegressionCV",
    }
)

#: Probability gap under which a row is treated as a tie and asked of ``predict``.
_TIE_GAP = 1e-9

#: Batches up to this many rows walk a HistGradientBoostingClassifier's trees with NumPy,
#: all trees at once; larger ones go through scikit-learn. Measured on the demo model
#: (100 trees, depth 17): 1 row 0.08 vs 0.82 ms, 100 rows 0.96 vs 1.9 ms, 300 rows
#: 2.8 vs 2.2 ms (scikit-learn's per-row Cython loop wins on large batches).
TREE_WALK_MAX_ROWS = 128


class Predictor:
    """Predictions of one loaded model for rows checked by its :class:`InputSchema`.

    Parameters
    ----------
    model : fitted estimator
        Usually a ``Pipeline(preprocess, estimator)``; any estimator with ``predict``
        that accepts a DataFrame of the schema's columns works.
    schema : InputSchema
        The columns, in the order of the rows given to :meth:`predict`.
    """

    def __init__(self, model: Any, schema: InputSchema) -> None:
        from sklearn.pipeline import Pipeline

        self.model = model
        self.schema = schema
        if isinstance(model, Pipeline) and len(model.steps) > 1:
            self._pre: Any = model[:-1]
            self._estimator: Any = model.steps[-1][1]
        else:
            self._pre, self._estimator = None, model
        import numpy as np

        classes = getattr(self._estimator, "classes_", None)
        # Single-output classifiers only; anything else is served as plain predict().
        self.is_classifier = (
            isinstance(classes, np.ndarray)
            and classes.ndim == 1
            and hasattr(self._estimator, "predict_proba")
        )
        self._classes = classes if self.is_classifier else None
        self.classes: list[Any] = list(classes.tolist()) if self.is_classifier else []
        self._class_keys = [str(c) for c in self.classes]
        cls = type(self._estimator)
        self.label_from_proba = (
            self.is_classifier and f"{cls.__module__}.{cls.__qualname__}" in ARGMAX_CLASSIFIERS
        )
        self._fast: Callable[[np.ndarray], np.ndarray] | None = None
        # An estimator fitted on a DataFrame (set_output="pandas") wants one back.
        fitted_on_frame = hasattr(self._estimator, "feature_names_in_")
        if self._pre is not None and schema.numeric_only and not fitted_on_frame:
            self._fast = _verified_numeric_replay(self._pre, schema)
        # Small batches of a boosted-trees classifier: every tree walked at once.
        self._walk: Callable[[np.ndarray], np.ndarray] | None = None
        if self._fast is not None and self.is_classifier:
            self._walk = _verified_tree_walk(self._estimator)

    @property
    def tree_walk(self) -> bool:
        """Whether small batches walk the boosted trees with NumPy."""
        return self._walk is not None

    def _proba(self, features: Any) -> np.ndarray:
        walk = self._walk
        if walk is not None and features.shape[0] <= TREE_WALK_MAX_ROWS:
            return walk(features)
        return self._estimator.predict_proba(features)

    @property
    def fast_path(self) -> bool:
        """Whether the NumPy replay of the preprocessing is in use."""
        return self._fast is not None

    def features(self, rows: np.ndarray | list[list[Any]]) -> Any:
        """The estimator's input for ``rows`` (preprocessed when the model is a pipeline).

        ``rows`` is what :meth:`InputSchema.check_batch` returns: a float matrix or lists.
        """
        import numpy as np

        if self._fast is not None:
            # The replay works on copies of column blocks: an ndarray can be used as is.
            return self._fast(np.asarray(rows, dtype=np.float64))
        frame = self._frame(rows)
        return frame if self._pre is None else self._pre.transform(frame)

    def predict(
        self, rows: np.ndarray | list[list[Any]]
    ) -> tuple[list[Any], list[dict[str, float]] | None]:
        """Labels (or values) and, for classifiers, class probabilities of ``rows``.

        Parameters
        ----------
        rows : ndarray or list of list of shape (n_rows, n_columns)
            Output of :meth:`InputSchema.check_batch` (or ``check_records``).

        Returns
        -------
        predictions : list of length n_rows
            JSON-safe labels (classifiers) or numbers (regressors).
        probabilities : list of dict or None
            ``{str(class): probability}`` per row for classifiers, else None.
        """
        features = self.features(rows)
        estimator = self._estimator
        if not self.is_classifier:
            return estimator.predict(features).tolist(), None
        proba = self._proba(features)
        if self.label_from_proba:
            labels = self._labels_from_proba(features, proba)
        else:
            labels = estimator.predict(features)
        keys = self._class_keys
        return labels.tolist(), [dict(zip(keys, p, strict=True)) for p in proba.tolist()]

    def predict_frame(self, frame: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (or values) and, for classifiers, probabilities of a checked DataFrame.

        The batch counterpart of :meth:`predict` (used by :mod:`conveyor.scoring`): the
        same preprocessing replay and label rule, without per-row Python objects.

        Parameters
        ----------
        frame : DataFrame of shape (n_rows, n_columns)
            The schema's columns (any order; selected by name), values already checked.

        Returns
        -------
        predictions : ndarray of shape (n_rows,)
        probabilities : ndarray of shape (n_rows, n_classes) or None
            In :attr:`classes` order; None for regressors.
        """
        import numpy as np

        frame = frame[list(self.schema.names)]
        if self._fast is not None:
            features = self._fast(frame.to_numpy(dtype=np.float64))
        else:
            features = frame if self._pre is None else self._pre.transform(frame)
        estimator = self._estimator
        if not self.is_classifier:
            return np.asarray(estimator.predict(features)), None
        proba = estimator.predict_proba(features)
        if self.label_from_proba:
            labels = self._labels_from_proba(features, proba)
        else:
            labels = estimator.predict(features)
        return np.asarray(labels), proba

    def _labels_from_proba(self, features: Any, proba: np.ndarray) -> np.ndarray:
        import numpy as np

        labels = self._classes[proba.argmax(axis=1)]
        if proba.shape[1] > 1:
            top_two = np.partition(proba, -2, axis=1)[:, -2:]
            ties = np.flatnonzero(top_two[:, 1] - top_two[:, 0] <= _TIE_GAP)
            if ties.size:
                subset = features.iloc[ties] if hasattr(features, "iloc") else features[ties]
                labels[ties] = self._estimator.predict(subset)
        return labels

    def _frame(self, rows: np.ndarray | list[list[Any]]) -> Any:
        import numpy as np
        import pandas as pd

        if isinstance(rows, np.ndarray):  # all-numeric, already checked
            return pd.DataFrame(rows, columns=list(self.schema.names), copy=False)
        columns: dict[str, Any] = {}
        for j, column in enumerate(self.schema.columns):
            values = [row[j] for row in rows]
            if column.kind in ("float", "int"):
                columns[column.name] = np.array(values, dtype=np.float64)
            elif column.kind == "bool" and None not in values:
                columns[column.name] = np.array(values, dtype=bool)
            else:  # strings (and nullable booleans): object, with NaN for missing
                columns[column.name] = np.array(
                    [np.nan if v is None else v for v in values], dtype=object
                )
        return pd.DataFrame(columns, copy=False)


def _verified_numeric_replay(
    pre: Any, schema: InputSchema
) -> Callable[[np.ndarray], np.ndarray] | None:
    """A NumPy replay of ``pre`` for float matrices, or None if unsupported or not exact."""
    import numpy as np
    import pandas as pd

    try:
        replay = _numeric_replay(pre, schema)
    except _Unsupported as exc:
        log.info("Preprocessing runs through scikit-learn (no NumPy replay: %s)", exc)
        return None
    rng = np.random.default_rng(0)
    sample = rng.normal(0.0, 100.0, size=(_VERIFY_ROWS, len(schema.names)))
    sample[rng.random(sample.shape) < 0.2] = np.nan
    try:
        expected = np.asarray(pre.transform(pd.DataFrame(sample, columns=list(schema.names))))
        got = replay(sample)
        exact = expected.shape == got.shape and np.allclose(
            expected, got, rtol=1e-12, atol=1e-12, equal_nan=True
        )
    except Exception as exc:  # the reference path itself failed: stay on sklearn
        log.warning("Not using the NumPy replay of the preprocessing: %s", exc)
        return None
    if not exact:
        log.warning("NumPy replay of the preprocessing differs from scikit-learn; not using it")
        return None
    log.info("Preprocessing replayed with NumPy (verified on %d rows)", _VERIFY_ROWS)
    return replay


class _Unsupported(Exception):
    pass


def _numeric_replay(pre: Any, schema: InputSchema) -> Callable[[np.ndarray], np.ndarray]:
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    steps = list(pre.steps) if isinstance(pre, Pipeline) else [("pre", pre)]
    if len(steps) != 1 or not isinstance(steps[0][1], ColumnTransformer):
        raise _Unsupported("preprocessing is not a single ColumnTransformer")
    ct = steps[0][1]
    if getattr(ct, "sparse_output_", False):
        raise _Unsupported("sparse output")
    position = {name: i for i, name in enumerate(schema.names)}
    blocks: list[tuple[np.ndarray, list[Callable[[np.ndarray], np.ndarray]]]] = []
    for name, transformer, selected in ct.transformers_:
        if isinstance(transformer, str):
            if transformer == "drop":
                continue
            raise _Unsupported(f"transformer {name!r} is {transformer!r}")
        cols = list(selected) if not isinstance(selected, str) else [selected]
        if not cols:
            continue
        if not all(isinstance(c, str) and c in position for c in cols):
            raise _Unsupported(f"transformer {name!r} selects columns outside the schema")
        inner = (
            [s for _, s in transformer.steps]
            if isinstance(transformer, Pipeline)
            else [transformer]
        )
        blocks.append(
            (np.array([position[c] for c in cols], dtype=np.intp), [_replay(s) for s in inner])
        )
    if not blocks:
        raise _Unsupported("no transformer to replay")

    def replay(matrix: np.ndarray) -> np.ndarray:
        parts = []
        for index, functions in blocks:
            part = matrix[:, index]  # fancy indexing copies: safe to modify in place
            for function in functions:
                part = function(part)
            parts.append(part)
        return parts[0] if len(parts) == 1 else np.hstack(parts)

    return replay


def _replay(step: Any) -> Callable[[np.ndarray], np.ndarray]:
    import numpy as np
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    if type(step) is SimpleImputer:
        stats = np.asarray(step.statistics_, dtype=np.float64)
        missing = step.missing_values
        if step.add_indicator or not (isinstance(missing, float) and np.isnan(missing)):
            raise _Unsupported("SimpleImputer with an indicator or non-NaN missing_values")
        if np.isnan(stats).any():
            raise _Unsupported("SimpleImputer dropped an all-missing column")

        def impute(x: np.ndarray) -> np.ndarray:
            mask = np.isnan(x)
            if mask.any():
                x[mask] = np.broadcast_to(stats, x.shape)[mask]
            return x

        return impute
    if type(step) is StandardScaler:
        mean = None if step.mean_ is None or not step.with_mean else step.mean_
        scale = None if step.scale_ is None or not step.with_std else step.scale_

        def standardise(x: np.ndarray) -> np.ndarray:
            if mean is not None:
                x -= mean
            if scale is not None:
                x /= scale
            return x

        return standardise
    if _is_identity(step):
        return lambda x: x
    raise _Unsupported(f"{type(step).__name__} has no NumPy replay")


def _is_identity(step: Any) -> bool:
    """A fitted ``"passthrough"``: ColumnTransformer stores it as a FunctionTransformer
    without functions (``model.preprocess`` skips both numeric steps for tree models)."""
    from sklearn.preprocessing import FunctionTransformer

    return (
        type(step) is FunctionTransformer
        and step.func is None
        and step.inverse_func is None
        and not step.validate
    )


#: Estimators whose fitted trees :func:`_tree_walk` can read.
_WALKABLE = frozenset(
    {"sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier"}
)


def _verified_tree_walk(estimator: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """``predict_proba`` of a fitted HistGradientBoostingClassifier as one NumPy walk of all
    its trees, or None if unsupported or not bit-identical to scikit-learn's.

    scikit-learn's ``predict_proba`` calls each tree from Python (100 trees: ~0.3 ms for
    one row, plus ~0.2 ms of input validation); the walk moves every tree one level per
    step, then adds the leaf values in scikit-learn's order (baseline, then tree by tree)
    and maps them with the estimator's own link. It reads fitted attributes that are not
    public API, so it is checked on load: rows at the split thresholds, around them and
    missing, must give exactly (``array_equal``) scikit-learn's probabilities.
    """
    import numpy as np

    cls = type(estimator)
    if f"{cls.__module__}.{cls.__qualname__}" not in _WALKABLE:
        return None
    try:
        walk, thresholds = _tree_walk(estimator)
    except (_Unsupported, AttributeError, KeyError, TypeError, ValueError) as exc:
        log.info("Boosted trees run through scikit-learn (no NumPy walk: %s)", exc)
        return None
    n_features = int(estimator.n_features_in_)
    rng = np.random.default_rng(1)
    sample = rng.normal(0.0, 3.0, size=(4 * _VERIFY_ROWS, n_features))
    for j, values in thresholds.items():  # exactly at, and next to, real split points
        picks = rng.choice(values, size=sample.shape[0])
        nudge = rng.choice([-1.0, 0.0, 1.0], size=sample.shape[0])
        sample[:, j] = np.where(rng.random(sample.shape[0]) < 0.6, picks, sample[:, j])
        sample[:, j] = np.nextafter(sample[:, j], sample[:, j] + nudge)
    sample[rng.random(sample.shape) < 0.1] = np.nan
    try:
        exact = all(
            np.array_equal(estimator.predict_proba(part), walk(part))
            for part in (sample, sample[:1], sample[1 : TREE_WALK_MAX_ROWS + 1])
        )
    except Exception as exc:  # the reference or the walk failed: stay on sklearn
        log.warning("Not walking the boosted trees with NumPy: %s", exc)
        return None
    if not exact:
        log.warning("NumPy walk of the boosted trees differs from scikit-learn; not using it")
        return None
    log.info("Small batches walk the boosted trees with NumPy (verified bit-identical)")
    return walk


def _tree_walk(estimator: Any) -> tuple[Callable[[np.ndarray], np.ndarray], dict[int, Any]]:
    import numpy as np

    per_iteration = estimator._predictors
    n_classes_out = int(estimator.n_trees_per_iteration_)
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1)
    loss = estimator._loss
    trees = [p.nodes for iteration in per_iteration for p in iteration]
    if not trees or len(trees) != len(per_iteration) * n_classes_out:
        raise _Unsupported("unexpected tree layout")
    if any(int(t["is_categorical"].any()) for t in trees):
        raise _Unsupported("categorical splits")
    sizes = np.array([len(t) for t in trees])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nodes = np.concatenate(trees)
    tree_of_node = np.repeat(offsets, sizes)
    index = np.arange(len(nodes))
    is_leaf = nodes["is_leaf"].astype(bool)
    feature = nodes["feature_idx"].astype(np.intp)
    threshold = nodes["num_threshold"].astype(np.float64)
    missing_left = nodes["missing_go_to_left"].astype(bool)
    # Children of node i at 2i (left) and 2i+1 (right); a leaf is its own child, so every
    # row takes exactly max-depth steps and no step asks which rows are done.
    children = np.empty(2 * len(nodes), dtype=np.intp)
    children[0::2] = np.where(is_leaf, index, nodes["left"].astype(np.intp) + tree_of_node)
    children[1::2] = np.where(is_leaf, index, nodes["right"].astype(np.intp) + tree_of_node)
    value = nodes["value"].astype(np.float64)
    roots = offsets.astype(np.intp)
    steps = int(nodes["depth"].max())
    n_trees = len(trees)
    splits = ~is_leaf
    thresholds = {
        int(j): np.unique(threshold[splits & (feature == j)]) for j in np.unique(feature[splits])
    }

    def walk(x: np.ndarray) -> np.ndarray:
        n, width = x.shape
        flat = np.ascontiguousarray(x).ravel()
        row_start = (np.arange(n) * width)[:, None]
        current = np.broadcast_to(roots, (n, n_trees)).copy()
        any_missing = bool(np.isnan(flat).any())
        for _ in range(steps):
            values = flat[row_start + feature[current]]
            go_right = ~(values <= threshold[current])  # NaN compares False: right...
            if any_missing:  # ...unless the split sends missing values left
                go_right &= ~(np.isnan(values) & missing_left[current])
            current = children[2 * current + go_right]
        leaves = value[current]  # (n, n_trees), iteration-major then class
        raw = np.empty((n, n_classes_out), dtype=np.float64, order="F")
        for k in range(n_classes_out):
            chain = np.empty((n, n_trees // n_classes_out + 1), dtype=np.float64)
            chain[:, 0] = baseline[k]
            chain[:, 1:] = leaves[:, k::n_classes_out]
            raw[:, k] = np.add.accumulate(chain, axis=1)[:, -1]  # sequential, like sklearn
        return loss.predict_proba(raw)

    return walk, thresholds
