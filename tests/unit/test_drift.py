"""PSI / KS / chi-square drift on synthetic data with known shifts, and the report files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conveyor.config import PipelineConfig
from conveyor.errors import DriftError
from conveyor.monitoring.drift import UNSEEN, build_profile, compute_drift, psi
from conveyor.monitoring.report import write_report


def make_config() -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "synthetic",
            "task": "classification",
            "data": {"path": "data/s.csv"},
            "target": "y",
            "validation": {
                "columns": {
                    "income": {"type": "float"},
                    "age": {"type": "int"},
                    "score": {"type": "float"},
                    "city": {"type": "str"},
                    "y": {"type": "int"},
                }
            },
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "metrics": {"primary": "accuracy"},
        }
    )


def population(
    n: int, seed: int, *, income_shift: float = 0.0, cities=("a", "b", "c")
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "income": rng.lognormal(10 + income_shift, 0.5, n),
            "age": rng.integers(18, 80, n),
            "score": rng.normal(0, 1, n),
            "city": rng.choice(list(cities), n, p=None),
            "y": rng.integers(0, 2, n),
        }
    )


@pytest.fixture(scope="module")
def profile():
    return build_profile(population(20_000, seed=1), make_config(), seed=0)


def test_psi_is_zero_for_identical_and_grows_with_shift():
    base = [0.25, 0.25, 0.25, 0.25]
    assert psi(base, base) == 0.0
    small = psi(base, [0.3, 0.25, 0.25, 0.2])
    large = psi(base, [0.7, 0.1, 0.1, 0.1])
    assert 0 < small < 0.1 < 0.2 < large
    # an empty bucket stays finite
    assert np.isfinite(psi(base, [1.0, 0.0, 0.0, 0.0]))


def test_profile_is_json_and_has_every_feature(profile):
    assert set(profile["features"]) == {"income", "age", "score", "city"}
    assert profile["features"]["city"]["kind"] == "categorical"
    assert profile["features"]["income"]["kind"] == "numeric"
    assert abs(sum(profile["features"]["income"]["proportions"]) - 1) < 1e-9
    assert len(profile["features"]["income"]["sample"]) == 5000
    json.dumps(profile)  # stored as an MLflow artifact: must serialise


def test_same_population_does_not_drift(profile):
    report = compute_drift(profile, population(2_000, seed=2))
    assert report.drifted == []
    assert not report.dataset_drift
    assert all(f.psi < 0.1 for f in report.features)
    assert "no dataset drift" in report.summary()


def test_shifted_numeric_feature_is_detected_and_named(profile):
    report = compute_drift(profile, population(2_000, seed=3, income_shift=0.6), drift_share=0.25)
    assert report.drifted == ["income"]
    income = next(f for f in report.features if f.name == "income")
    assert income.psi > 0.2 and income.p_value < 0.01
    assert income.current_mean > income.reference_mean
    assert report.dataset_drift  # 1 of 4 features >= 25 %
    assert "income" in report.summary()


def test_unseen_categories_are_counted_not_crashing(profile):
    live = population(1_000, seed=4, cities=("a", "b", "zzz"))
    report = compute_drift(profile, live)
    city = next(f for f in report.features if f.name == "city")
    assert city.drifted
    assert city.unseen_share == pytest.approx((live["city"] == "zzz").mean(), abs=1e-6)
    assert UNSEEN in city.buckets
    assert "never seen in training" in city.reason


def test_missing_feature_is_a_clear_error(profile):
    with pytest.raises(DriftError, match=r"lacks feature\(s\) \['score'\]"):
        compute_drift(profile, population(500, seed=5).drop(columns=["score"]))


def test_report_files_name_the_drifted_features(profile, tmp_path):
    report = compute_drift(profile, population(2_000, seed=6, income_shift=0.6))
    files = write_report(report, tmp_path, context={"production version": "3"})
    assert set(files) == {"drift.json", "index.html", "feature-income.png"}
    summary = json.loads((tmp_path / "drift.json").read_text())
    assert summary["drifted"] == ["income"]
    assert summary["context"]["production version"] == "3"
    page = (tmp_path / "index.html").read_text()
    assert "feature-income.png" in page and "DRIFT" in page
    assert (tmp_path / "feature-income.png").read_bytes()[:4] == b"\x89PNG"
