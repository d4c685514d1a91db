"""The fairness part of the gate and of the config: upper bounds on fairlearn gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import config_from_mapping, load_pipeline_config
from conveyor.errors import ConfigError
from conveyor.modeling.gate import decide

REPO = Path(__file__).resolve().parents[2]
GOOD = {"roc_auc": 0.99, "accuracy": 0.96, "f1": 0.97}


@pytest.fixture(scope="module")
def unfair():
    return load_pipeline_config(REPO / "tests" / "fixtures" / "pipelines" / "unfair_bc.yaml")


def test_a_gap_above_its_bound_rejects_naming_the_metric(unfair):
    decision = decide(GOOD, unfair, fairness={"demographic_parity_difference": 0.3})
    assert not decision.passed
    assert "demographic_parity_difference 0.3000 <= 0.05 (fairness): FAILED" in decision.reasons


def test_a_gap_within_its_bound_passes_and_a_missing_one_fails(unfair):
    assert decide(GOOD, unfair, fairness={"demographic_parity_difference": 0.01}).passed
    assert not decide(GOOD, unfair, fairness={}).passed


def test_override_with_reason_passes_a_fairness_rejection(unfair):
    decision = decide(
        GOOD,
        unfair,
        fairness={"demographic_parity_difference": 0.3},
        override=True,
        override_reason="reviewed by the fairness board",
    )
    assert decision.passed and decision.overridden


def test_config_rejects_unknown_fairness_metrics_and_bounds_without_groups(unfair):
    raw = unfair.model_dump(mode="json")
    raw["metrics"]["fairness"] = {"parity": 0.1}
    with pytest.raises(ConfigError, match="unknown metric"):
        config_from_mapping(raw, source="t.yaml")
    raw["metrics"]["fairness"] = {"demographic_parity_difference": 0.1}
    raw["evaluation"]["sensitive_features"] = []
    with pytest.raises(ConfigError, match=r"needs evaluation\.sensitive_features"):
        config_from_mapping(raw, source="t.yaml")
    raw["evaluation"]["sensitive_features"] = ["no such column"]
    with pytest.raises(ConfigError, match="not a feature column"):
        config_from_mapping(raw, source="t.yaml")
