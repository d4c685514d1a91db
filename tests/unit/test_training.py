"""Training, evaluation and model I/O on real scikit-learn data and a real MLflow store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conveyor.config import PreprocessSpec, load_pipeline_config
from conveyor.data.splits import split_frame, split_part
from conveyor.errors import TrainingError
from conveyor.modeling.evaluation import compute_metrics, write_plots
from conveyor.modeling.training import build_pipeline, load_estimator_class, train_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bc():
    from sklearn.datasets import load_breast_cancer

    config = load_pipeline_config(REPO / "include" / "pipelines" / "breast_cancer.yaml")
    return config, load_breast_cancer(as_frame=True).frame


@pytest.fixture(scope="module")
def diabetes():
    from sklearn.datasets import load_diabetes

    config = load_pipeline_config(REPO / "tests" / "fixtures" / "pipelines" / "diabetes.yaml")
    return config, load_diabetes(as_frame=True, scaled=False).frame


def test_split_is_deterministic_and_stratified(bc):
    config, frame = bc
    train_a, test_a = split_frame(frame, config)
    _, test_b = split_frame(frame, config)
    assert list(test_a.index) == list(test_b.index)
    assert len(test_a) == math.ceil(len(frame) * config.split.test_size)
    assert abs(test_a.target.mean() - train_a.target.mean()) < 0.02


def test_grid_search_classifier_is_reproducible(bc):
    config, frame = bc
    train, test = split_frame(frame, config)
    first = train_model(train, config)
    second = train_model(train, config)
    assert first.best_params and set(first.best_params) == {"max_depth"}
    assert first.cv_score > 0.9
    metrics = compute_metrics(first.model, test, config)
    assert set(metrics) == {"accuracy", "f1", "roc_auc"}
    assert metrics["roc_auc"] > 0.95
    assert metrics == compute_metrics(second.model, test, config)


def test_regressor_metrics_and_plots(diabetes, tmp_path):
    config, frame = diabetes
    train, test = split_frame(frame, config)
    result = train_model(train, config)
    metrics = compute_metrics(result.model, test, config)
    assert set(metrics) == {"rmse", "mae", "r2"}
    assert 30 < metrics["rmse"] < 80
    plots = write_plots(result.model, test, config, tmp_path)
    assert {p.name for p in plots} == {"actual_vs_predicted.png", "residuals.png"}
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in plots)


def test_classifier_plots(bc, tmp_path):
    config, frame = bc
    train, test = split_frame(frame, config)
    plots = write_plots(train_model(train, config).model, test, config, tmp_path)
    assert {p.name for p in plots} == {"confusion_matrix.png", "roc_curve.png"}


def test_unknown_estimator_path_is_clear():
    with pytest.raises(TrainingError, match=r"cannot import module .sklearn\.ensembel."):
        load_estimator_class("sklearn.ensembel.RandomForestClassifier")
    with pytest.raises(TrainingError, match="has no estimator class 'RandomForrest'"):
        load_estimator_class("sklearn.ensemble.RandomForrest")


def test_unknown_estimator_param_is_named(bc):
    config, _ = bc
    bad = config.model_copy(
        update={"model": config.model.model_copy(update={"params": {"max_iters": 3}})}
    )
    with pytest.raises(TrainingError, match=r"\['max_iters'\] are not parameters"):
        build_pipeline(bad)


def test_seed_is_applied(bc):
    config, _ = bc
    estimator = build_pipeline(config).named_steps["estimator"]
    assert estimator.random_state == config.split.seed


def test_code_identity_of_a_dirty_checkout_depends_on_the_diff(tmp_path, monkeypatch):
    """Two different uncommitted states must not share a cache key (a stale model)."""
    import subprocess

    import conveyor.registry.lineage as lineage

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "code.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)

    def identity() -> str:
        lineage.project_git_rev.cache_clear()
        return lineage.project_git_rev(str(repo))

    clean = identity()
    assert len(clean) == 40 and "+" not in clean
    (repo / "code.py").write_text("x = 2\n")
    first = identity()
    (repo / "code.py").write_text("x = 3\n")
    second = identity()
    assert first.startswith(clean + "+dirty.") and second.startswith(clean + "+dirty.")
    assert first != second
    (repo / "code.py").write_text("x = 2\n")
    assert identity() == first
    lineage.project_git_rev.cache_clear()


def test_split_parts_are_the_rows_sklearn_would_split_off(bc):
    """split_part/split_frame pick rows by position: the same rows, in the same order, as
    train_test_split on the frame itself (what earlier versions called)."""
    from sklearn.model_selection import train_test_split

    config, frame = bc
    expected_train, expected_test = train_test_split(
        frame,
        test_size=config.split.test_size,
        random_state=config.split.seed,
        stratify=frame[config.target],
    )
    train, test = split_frame(frame, config)
    assert list(train.index) == list(expected_train.index)
    assert list(test.index) == list(expected_test.index)
    assert split_part(frame, config, "train").equals(expected_train)
    assert split_part(frame, config, "test").equals(expected_test)


def test_auto_preprocessing_follows_the_estimator(bc):
    """Tree models that accept NaN get the numeric features as they are; a linear model
    gets imputation and scaling; explicit settings win over auto."""
    config, frame = bc
    assert config.model.estimator.endswith("HistGradientBoostingClassifier")
    numeric = build_pipeline(config).named_steps["preprocess"].transformers[0][1]
    assert numeric == "passthrough"

    linear = config.model_copy(
        update={
            "model": config.model.model_copy(
                update={"estimator": "sklearn.linear_model.LogisticRegression", "params": {}}
            )
        }
    )
    steps = build_pipeline(linear).named_steps["preprocess"].transformers[0][1]
    assert [name for name, _ in steps.steps] == ["impute", "scale"]

    forced = config.model.model_copy(
        update={"preprocess": PreprocessSpec(impute=True, scale=False)}
    )
    steps = (
        build_pipeline(config.model_copy(update={"model": forced}))
        .named_steps["preprocess"]
        .transformers[0][1]
    )
    assert [name for name, _ in steps.steps] == ["impute"]

    # the skipped steps change nothing a tree model sees: same predictions either way
    train, test = split_frame(frame, config)
    scaled = config.model_copy(
        update={
            "model": config.model.model_copy(
                update={"preprocess": PreprocessSpec(impute=True, scale=True)}
            )
        }
    )
    lean_model = train_model(train, config).model
    full_model = train_model(train, scaled).model
    features = test[config.feature_columns]
    assert (lean_model.predict(features) == full_model.predict(features)).all()


def test_snapshot_read_column_by_column_matches_pandas(tmp_path):
    """read_parquet_columns gives what pandas.read_parquet gives: columns, order, dtypes,
    values, missing values, strings and booleans included."""
    import numpy as np
    import pandas as pd

    from conveyor.data.frames import read_parquet_columns

    frame = pd.DataFrame(
        {
            "x": np.linspace(0, 1, 50),
            "n": pd.array([1, None] * 25, dtype="Int64"),
            "s": ["a", "b", None, "d", "e"] * 10,
            "flag": [True, False] * 25,
            "gap": [1.5, np.nan] * 25,
        }
    )
    path = tmp_path / "snapshot.parquet"
    frame.to_parquet(path, index=False)
    expected = pd.read_parquet(path)
    got = read_parquet_columns(path)
    pd.testing.assert_frame_equal(got, expected)
    assert list(got.columns) == ["x", "n", "s", "flag", "gap"]
