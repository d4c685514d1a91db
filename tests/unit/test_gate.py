"""The promotion gate: thresholds, regression vs production, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import load_pipeline_config
from conveyor.errors import ConfigError
from conveyor.modeling.gate import decide

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clf():
    return load_pipeline_config(REPO / "include" / "pipelines" / "breast_cancer.yaml")


@pytest.fixture(scope="module")
def reg():
    return load_pipeline_config(REPO / "tests" / "fixtures" / "pipelines" / "diabetes.yaml")


GOOD = {"roc_auc": 0.99, "accuracy": 0.96, "f1": 0.97}


def test_thresholds_only_without_production(clf):
    decision = decide(GOOD, clf)
    assert decision.passed
    assert any("no production model yet" in r for r in decision.reasons)
    assert all(c["kind"] == "threshold" for c in decision.checks)


def test_threshold_failure_is_named(clf):
    decision = decide({**GOOD, "accuracy": 0.5}, clf)
    assert not decision.passed
    assert "accuracy 0.5000 >= 0.9 (threshold): FAILED" in decision.summary()


def test_regression_beyond_tolerance_rejects(clf):
    production = {"roc_auc": 0.995, "accuracy": 0.99, "f1": 0.99}
    decision = decide(
        {**GOOD, "accuracy": 0.95}, clf, production=production, production_version="3"
    )
    assert not decision.passed
    assert "vs production v3" in decision.summary()
    assert "REGRESSION" in decision.summary()


def test_within_tolerance_passes(clf):
    production = {"roc_auc": 0.995, "accuracy": 0.97, "f1": 0.975}
    assert decide(GOOD, clf, production=production, production_version="3").passed


def test_lower_is_better_metrics(reg):
    assert decide({"rmse": 60.0, "mae": 40.0, "r2": 0.4}, reg).passed
    worse = decide(
        {"rmse": 66.0, "mae": 40.0, "r2": 0.4},
        reg,
        production={"rmse": 60.0, "r2": 0.4},
        production_version="1",
    )
    assert not worse.passed
    assert any(c["metric"] == "rmse" and not c["ok"] for c in worse.checks)


def test_override_needs_reason(clf):
    with pytest.raises(ConfigError, match="override_reason is empty"):
        decide({**GOOD, "accuracy": 0.1}, clf, override=True, override_reason="  ")


def test_override_is_recorded(clf):
    decision = decide(
        {**GOOD, "accuracy": 0.1}, clf, override=True, override_reason="hotfix for incident 42"
    )
    assert decision.passed and decision.overridden
    assert decision.to_dict()["override_reason"] == "hotfix for incident 42"
    assert "overridden: hotfix for incident 42" in decision.summary()
