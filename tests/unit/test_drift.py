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


# ----------------------------------------------------------------- the rule at real volumes


@pytest.fixture(scope="module")
def breast_cancer():
    """The demo's features (30 real, skewed, lumpy columns) and a profile of 10,000 rows."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    features = [c for c in frame.columns if c != "target"]
    config = PipelineConfig.model_validate(
        {
            "name": "bc",
            "task": "classification",
            "data": {"path": "data/bc.csv"},
            "target": "target",
            "validation": {
                "columns": {**{c: {"type": "float"} for c in features}, "target": {"type": "int"}}
            },
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "metrics": {"primary": "accuracy"},
        }
    )

    def sample(n: int, seed: int) -> pd.DataFrame:
        """n rows drawn from the data with 2 % measurement noise (as `make new-data` does)."""
        rng = np.random.default_rng(seed)
        rows = frame.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)
        rows[features] = rows[features] * rng.normal(1.0, 0.02, size=(n, len(features)))
        return rows

    reference = sample(10_000, seed=1)
    return {
        "features": features,
        "profile": build_profile(reference, config, seed=0),
        "std": reference[features].std(),
        "sample": sample,
    }


@pytest.mark.parametrize("rows", [2_000, 200_000])
def test_negligible_shift_is_no_drift_and_a_real_one_is(breast_cancer, rows):
    """Issue 16: 200,000 predictions shifted by 0.03 sd flagged half the features because
    the KS p-value alone decided. An effect size decides now; the p-value only guards."""
    features, std = breast_cancer["features"], breast_cancer["std"]

    same = breast_cancer["sample"](rows, seed=rows + 2)
    assert compute_drift(breast_cancer["profile"], same).drifted == []

    tiny = breast_cancer["sample"](rows, seed=rows + 3)
    tiny[features] = tiny[features] + 0.03 * std[features]
    report = compute_drift(breast_cancer["profile"], tiny)
    assert not report.dataset_drift, report.summary()
    assert report.drifted == []
    # the shift is statistically visible at this size; it is just too small to act on
    if rows == 200_000:
        assert any(f.p_value < 0.01 for f in report.features)
        assert any("the change is small" in f.reason for f in report.features)

    real = breast_cancer["sample"](rows, seed=rows + 4)
    third = features[: len(features) // 3]
    real[third] = real[third] + 0.5 * std[third]
    report = compute_drift(breast_cancer["profile"], real)
    assert report.dataset_drift, report.summary()
    assert sorted(report.drifted) == sorted(third)
    assert report.to_dict()["dataset_drift"] is True


def test_small_window_noise_is_guarded_by_the_p_value(profile):
    """40 rows of the training population: PSI over 10 bins is noisy at this size (it can
    pass 0.2 by chance) but the test says it is not significant, so nothing drifts."""
    for seed in range(10, 20):
        report = compute_drift(profile, population(40, seed=seed))
        assert report.drifted == [], [f.reason for f in report.features if f.drifted]
    noisy = [
        f
        for seed in range(10, 20)
        for f in compute_drift(profile, population(40, seed=seed)).features
        if f.psi >= 0.2
    ]
    assert noisy, "expected some window of 40 rows with PSI >= 0.2 by chance"
    assert all("too few rows" in f.reason for f in noisy)


def test_unseen_categorical_values_count_towards_drift(profile):
    live = population(200_000, seed=7)
    rng = np.random.default_rng(0)
    # 2 % of the window: above unseen_share (1 %) -> drifted, PSI alone would not say so
    live.loc[rng.random(len(live)) < 0.02, "city"] = "zzz"
    city = next(f for f in compute_drift(profile, live).features if f.name == "city")
    assert city.drifted and "unseen values" in city.reason
    assert city.psi < 0.2 and city.distance < 0.1
    # 0.3 %: a significant but negligible novelty stays below the threshold
    live["city"] = population(200_000, seed=8)["city"]
    live.loc[rng.random(len(live)) < 0.003, "city"] = "zzz"
    city = next(f for f in compute_drift(profile, live).features if f.name == "city")
    assert not city.drifted and city.p_value < 0.01
    assert compute_drift(profile, live, unseen_share=0.001).drifted == ["city"]


def test_drift_json_is_strict_json_with_an_infinite_psi(profile, tmp_path):
    live = population(2_000, seed=9)
    live["score"] = np.inf  # no finite value: PSI is infinite
    report = compute_drift(profile, live)
    assert "score" in report.drifted
    write_report(report, tmp_path)

    def reject(constant):
        raise AssertionError(f"drift.json holds {constant}, which is not JSON")

    summary = json.loads((tmp_path / "drift.json").read_text(), parse_constant=reject)
    score = next(f for f in summary["features"] if f["name"] == "score")
    assert score["psi"] is None and score["drifted"] is True
    assert "p-value" in summary["rule"]


def test_existing_monitor_keys_keep_loading():
    """A schema_version 1 file with only the old keys loads; the new keys are optional."""
    config = make_config().model_dump(mode="json")
    config["schema_version"] = 1
    config["monitor"] = {"psi_threshold": 0.25, "ks_pvalue": 0.05, "drift_share": 0.5}
    monitor = PipelineConfig.model_validate(config).monitor
    assert (monitor.psi_threshold, monitor.ks_pvalue, monitor.drift_share) == (0.25, 0.05, 0.5)
    assert (monitor.distance_threshold, monitor.unseen_share) == (0.1, 0.01)
