"""Training: an estimator named in the config, wrapped in preprocessing, fitted reproducibly.

The estimator comes from a dotted import path so a team changes models by editing YAML.
Preprocessing is part of the fitted pipeline (imputation, scaling, one-hot encoding), so
the served model takes the raw columns the data registry holds and nothing can drift
between training-time and serving-time feature code.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.errors import TrainingError

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from conveyor.config import PipelineConfig

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """A fitted pipeline and what the search found."""

    model: Pipeline
    params: dict[str, Any]
    best_params: dict[str, Any] = field(default_factory=dict)
    cv_score: float | None = None
    train_rows: int = 0
    fit_seconds: float = 0.0


def load_estimator_class(dotted: str) -> type:
    """Import ``package.module.Class`` and check it is an estimator (has ``fit``).

    Raises
    ------
    TrainingError
        Naming the path and what to fix, if the module or class does not exist.
    """
    module_name, _, class_name = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainingError(
            f"model.estimator {dotted!r}: cannot import module {module_name!r} ({exc}). "
            "Use a full dotted path such as 'sklearn.ensemble.HistGradientBoostingClassifier'."
        ) from exc
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls) or not hasattr(cls, "fit"):
        raise TrainingError(
            f"model.estimator {dotted!r}: {module_name} has no estimator class {class_name!r}. "
            "Check the spelling and that the class implements fit()."
        )
    return cls


#: scikit-learn's tree ensembles (in ``sklearn.ensemble``) whose splits ignore scale.
TREE_ENSEMBLES = (
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
)


def _tree_model_classes() -> tuple[type, ...]:
    """scikit-learn's tree models: their splits are invariant to scaling a feature."""
    import sklearn.ensemble
    from sklearn.tree import BaseDecisionTree

    return (BaseDecisionTree, *(getattr(sklearn.ensemble, name) for name in TREE_ENSEMBLES))


def numeric_steps(estimator: Any, config: PipelineConfig) -> tuple[bool, bool]:
    """(impute, scale) for the numeric features: ``model.preprocess``, ``auto`` resolved.

    ``auto`` skips imputation when the estimator accepts NaN itself (its ``allow_nan``
    input tag) and scaling for tree models, whose splits do not depend on the scale.
    """
    spec = config.model.preprocess
    impute, scale = spec.impute, spec.scale
    if impute == "auto":
        try:
            impute = not estimator.__sklearn_tags__().input_tags.allow_nan
        except AttributeError:  # not a scikit-learn estimator: impute to be safe
            impute = True
    if scale == "auto":
        scale = not isinstance(estimator, _tree_model_classes())
    return bool(impute), bool(scale)


def build_pipeline(config: PipelineConfig, *, n_jobs: int = 1) -> Pipeline:
    """The unfitted preprocessing + estimator pipeline for ``config``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cls = load_estimator_class(config.model.estimator)
    params = dict(config.model.params)
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TrainingError(
            f"model.params {unknown} are not parameters of {config.model.estimator}; "
            f"valid ones: {sorted(accepted)}"
        )
    # Reproducible by default: a fixed seed and bounded parallelism unless the YAML says otherwise.
    if "random_state" in accepted:
        params.setdefault("random_state", config.split.seed)
    if "n_jobs" in accepted:
        params.setdefault("n_jobs", n_jobs)
    try:
        estimator = cls(**params)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"Cannot build {config.model.estimator}({params}): {exc}") from exc

    columns = config.validation.columns
    numeric = [c for c in config.feature_columns if columns[c].type in ("float", "int")]
    categorical = [c for c in config.feature_columns if c not in numeric]
    transformers = []
    if numeric:
        impute, scale = numeric_steps(estimator, config)
        steps = [("impute", SimpleImputer(strategy="median"))] if impute else []
        steps += [("scale", StandardScaler())] if scale else []
        transformers.append(("num", Pipeline(steps) if steps else "passthrough", numeric))
    if categorical:
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            )
        )
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", preprocess), ("estimator", estimator)])


def train_model(train: pd.DataFrame, config: PipelineConfig, *, n_jobs: int = 1) -> TrainResult:
    """Fit the configured pipeline on ``train`` (optionally with a small CV grid search).

    Parameters
    ----------
    train : DataFrame of shape (n_samples, n_columns)
        Training rows, target column included.
    config : PipelineConfig
        Estimator, parameters, search grid, target and seed.
    n_jobs : int, default=1
        Parallel jobs for the search and the estimator; the Airflow adapter binds it to
        the task's pool slots so two tasks never oversubscribe a small machine.
    """
    from threadpoolctl import threadpool_limits

    from conveyor.data.splits import features_and_target

    pipeline = build_pipeline(config, n_jobs=n_jobs)
    X, y = features_and_target(train, config)
    started = time.perf_counter()
    result = TrainResult(
        model=pipeline,
        params=dict(pipeline.named_steps["estimator"].get_params()),
        train_rows=len(train),
    )
    with threadpool_limits(limits=n_jobs):
        try:
            if config.model.search is None:
                log.info("Fitting %s on %d rows", config.model.estimator, len(train))
                pipeline.fit(X, y)
                result.model = pipeline
            else:
                from sklearn.model_selection import GridSearchCV

                grid = {f"estimator__{k}": v for k, v in config.model.search.param_grid.items()}
                search = GridSearchCV(
                    pipeline,
                    grid,
                    cv=config.model.search.cv,
                    scoring=config.model.search.scoring,
                    n_jobs=n_jobs,
                    refit=True,
                    error_score="raise",
                )
                log.info(
                    "Grid search over %d candidates x %d folds on %d rows",
                    len(list(_grid_points(grid))),
                    config.model.search.cv,
                    len(train),
                )
                search.fit(X, y)
                result.model = search.best_estimator_
                result.best_params = {
                    k.removeprefix("estimator__"): v for k, v in search.best_params_.items()
                }
                result.cv_score = float(search.best_score_)
                log.info("Best parameters %s (CV score %.4f)", result.best_params, result.cv_score)
        except (ValueError, TypeError) as exc:
            raise TrainingError(f"Training {config.model.estimator} failed: {exc}") from exc
    result.params = {
        k: v
        for k, v in result.model.named_steps["estimator"].get_params().items()
        if isinstance(v, str | int | float | bool) or v is None
    }
    result.fit_seconds = time.perf_counter() - started
    log.info("Training finished in %.2f s", result.fit_seconds)
    return result


def _grid_points(grid: dict[str, list[Any]]):
    from sklearn.model_selection import ParameterGrid

    return ParameterGrid(grid)


def log_model(
    result: TrainResult,
    config: PipelineConfig,
    *,
    input_example: pd.DataFrame,
    config_yaml: str,
) -> str:
    """Log params, the model (skops format, signature, input example) and the config to the
    active MLflow run; returns the logged model's URI (``models:/m-...``)."""
    import mlflow
    from mlflow.models import infer_signature

    from conveyor.modeling.model_io import SKOPS_TRUSTED_TYPES, check_serialisable

    check_serialisable(result.model)
    run = mlflow.active_run()
    if run is None:  # pragma: no cover - programming error
        raise RuntimeError("log_model needs an active MLflow run")
    mlflow.log_params({f"estimator.{k}": v for k, v in result.params.items()})
    if result.cv_score is not None:
        mlflow.log_metric("cv_score", result.cv_score)
    import sklearn
    import skops

    example = input_example.head(5)
    signature = infer_signature(example, result.model.predict(example))
    info = mlflow.sklearn.log_model(
        result.model,
        name="model",
        serialization_format="skops",
        skops_trusted_types=list(SKOPS_TRUSTED_TYPES),
        signature=signature,
        input_example=example,
        # Pinned explicitly: inferring requirements loads the model in a subprocess (slow).
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}"],
        metadata={"conveyor.pipeline": config.name},
    )
    mlflow.log_text(config_yaml, "conveyor/pipeline.yaml")
    return info.model_uri
