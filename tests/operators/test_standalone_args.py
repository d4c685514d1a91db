"""Operator arguments that stand in for a pipeline YAML, and wiring mistakes caught when the
DAG is parsed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conveyor.errors import ConfigError
from conveyor.modeling.gate import decide
from conveyor_airflow.operators import (
    DvcPullOperator,
    ModelGateOperator,
    RequestRetrainingOperator,
    ResolveInputsOperator,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spec() -> dict:
    raw = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    return {**raw, "name": "inline_bc"}


def test_pipeline_config_replaces_the_yaml(spec):
    op = ResolveInputsOperator(task_id="resolve", pipeline_config=spec)
    assert op.config.name == "inline_bc" and op.config.target == "target"
    broken = ResolveInputsOperator(task_id="resolve", pipeline_config={**spec, "modle": {}})
    with pytest.raises(ConfigError, match=r"(?s)<pipeline_config of resolve>.*unknown key 'modle'"):
        broken.config  # noqa: B018


def test_exactly_one_source_of_config(spec):
    with pytest.raises(ValueError, match=r"exactly one of pipeline= .* and pipeline_config="):
        ResolveInputsOperator(task_id="neither")
    with pytest.raises(ValueError, match="exactly one of"):
        ResolveInputsOperator(task_id="both", pipeline="breast_cancer", pipeline_config=spec)


def test_data_source_arguments_override_the_config(spec):
    op = DvcPullOperator(
        task_id="pull",
        pipeline_config=spec,
        repo="https://git.example.com/registry.git",
        path="data/other.csv",
        branch="release",
    )
    data = op.config.data
    assert (data.repo, data.path, data.rev) == (
        "https://git.example.com/registry.git",
        "data/other.csv",
        "release",
    )
    assert op.data_repo() == "https://git.example.com/registry.git"


def test_gate_thresholds_argument_decides(spec):
    evaluation = {"roc_auc": 0.97, "accuracy": 0.95, "f1": 0.95}
    lenient = ModelGateOperator(task_id="gate", pipeline_config=spec, evaluation={})
    assert decide(evaluation, lenient.config).passed
    strict = ModelGateOperator(
        task_id="gate", pipeline_config=spec, evaluation={}, thresholds={"roc_auc": 0.99}
    )
    decision = decide(evaluation, strict.config)
    assert not decision.passed and "roc_auc" in decision.summary()
    assert strict.config.metrics.max_regression == lenient.config.metrics.max_regression


def test_retraining_request_without_outlets_is_a_parse_error(spec):
    with pytest.raises(ValueError, match="has no outlets"):
        RequestRetrainingOperator(task_id="retrain", pipeline_config=spec, outcome={})
