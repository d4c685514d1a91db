"""Inferring a pipeline config from a data file (`conveyor new-pipeline --from`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from conveyor.config import PipelineConfig
from conveyor.validation.inference import infer_column, infer_pipeline, task_kind


@pytest.mark.parametrize(
    ("frame", "target", "kind", "primary", "scoring"),
    [
        (load_breast_cancer(as_frame=True).frame, "target", "classification", "roc_auc", "roc_auc"),
        (
            load_diabetes(as_frame=True, scaled=False).frame,
            "target",
            "regression",
            "r2",
            "neg_root_mean_squared_error",
        ),
    ],
)
def test_metrics_and_scoring_fit_the_task(frame, target, kind, primary, scoring):
    raw = infer_pipeline(frame, name="x", target=target, data_path="data/x.csv")
    config = PipelineConfig.model_validate(raw)  # loads: metric names exist for the task
    assert config.task == kind
    assert config.metrics.primary == primary
    assert config.model.search.scoring == scoring
    assert list(config.validation.columns) == list(frame.columns)


def test_task_kinds():
    assert task_kind(pd.Series([0, 1, 1, 0])) == "binary"
    assert task_kind(pd.Series(["a", "b", "c", "a"])) == "multiclass"
    assert task_kind(pd.Series([1.5, 2.25, 3.0])) == "regression"
    assert task_kind(pd.Series(np.arange(100))) == "regression"  # too many classes
    assert task_kind(pd.Series([1.0, 2.0, 3.0, 1.0])) == "multiclass"  # integral floats


def test_columns_types_ranges_allowed_and_nulls():
    plan = infer_column(pd.Series(["basic", "pro", None, "pro"]))
    assert plan == {"type": "str", "nullable": True, "allowed": ["basic", "pro"]}
    tenure = infer_column(pd.Series(np.arange(0, 61)))  # 61 distinct ints: a range
    assert tenure == {"type": "int", "min": 0, "max": 66}  # +10 % of the span, never < 0
    temperature = infer_column(pd.Series([-5.0, 15.0, np.nan]))
    assert temperature == {"type": "float", "nullable": True, "min": -7.0, "max": 17.0}
    assert infer_column(pd.Series([True, False]))["allowed"] == [False, True]
