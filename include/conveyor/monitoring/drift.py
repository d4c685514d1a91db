"""Data drift: a reference profile of the training data, and PSI/KS against live inputs.

The reference profile is computed once, when the model is trained, from the exact rows it
was fitted on, and stored with the model (``conveyor/reference_profile.json`` in its MLflow
run). Monitoring then compares logged predictions with that profile and never needs to
pull the training data again.

Per feature:

* numeric — decile bin edges of the training values and the share of rows in each bin,
  plus a seeded random sample of the values (at most :data:`REFERENCE_SAMPLE`). Drift
  statistics: the Population Stability Index over the bins, and the two-sample
  Kolmogorov-Smirnov test of the live values against the sample (scipy).
* categorical (config type ``str`` or ``bool``) — the share of each value. PSI over the
  values (unseen live values count in one extra bucket) and a chi-square goodness-of-fit
  test of the live counts against the reference shares.

The rule reads: a feature drifts when the change is **large** and **not noise**.

* large — an effect size reaches its threshold: PSI ``>= psi_threshold`` (0.1 = watch,
  0.2 = act, the usual reading), or the distance between the distributions ``>=
  distance_threshold`` (numeric: the KS statistic, the largest gap between the two
  cumulative distributions; categorical: the total variation distance, half the sum of
  the share differences), or — categorical only — values the training data never had
  make up ``>= unseen_share`` of the window;
* not noise — the test's p-value is below ``ks_pvalue``. This only matters for small
  windows, where a few hundred rows can show a large PSI by chance.

The p-value is a guard, never a trigger on its own: with 200,000 predictions a shift of
0.03 standard deviations is "significant" (p < 1e-10) yet far too small to act on. The
dataset drifts when the share of drifted features reaches ``drift_share``. The
thresholds live in the pipeline YAML (``monitor:``).

Why our own statistics: Evidently (the usual library for this) does not import under
pandas 3 (see ../shared/AIRFLOW3-FACTS.md), and PSI + KS are a few lines on numpy/scipy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from conveyor.errors import DriftError

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.config import PipelineConfig

#: Version of the profile's JSON layout.
PROFILE_SCHEMA = 1
#: Numeric features: number of quantile bins.
NUMERIC_BINS = 10
#: Numeric features: values kept for the KS test.
REFERENCE_SAMPLE = 5000
#: Share given to an empty bin so PSI stays finite (the common 1e-4 floor).
_EPS = 1e-4
#: Bucket for categorical values the training data never had.
UNSEEN = "__unseen__"
#: Artifact path of the profile inside the model's MLflow run.
PROFILE_ARTIFACT = "conveyor/reference_profile.json"
#: Default thresholds (the pipeline YAML's ``monitor:`` keys of the same names).
PSI_THRESHOLD = 0.2
DISTANCE_THRESHOLD = 0.1
KS_PVALUE = 0.01
UNSEEN_SHARE = 0.01
DRIFT_SHARE = 0.3


def _categorical_features(config: PipelineConfig) -> set[str]:
    columns = config.validation.columns
    return {c for c in config.feature_columns if columns[c].type in ("str", "bool")}


def _key(value: Any) -> str:
    """Categorical values as strings: JSON keys, and a logged ``True`` equals ``"True"``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def build_profile(frame: pd.DataFrame, config: PipelineConfig, *, seed: int = 0) -> dict[str, Any]:
    """Reference statistics of ``frame``'s feature columns (JSON-serialisable).

    Parameters
    ----------
    frame : DataFrame
        The training rows (the split the model is fitted on).
    config : PipelineConfig
        Says which columns are features and which of them are categorical.
    seed : int
        Seed of the sample kept for the KS test, so the profile is reproducible.
    """
    import numpy as np

    categorical = _categorical_features(config)
    rng = np.random.default_rng(seed)
    features: dict[str, Any] = {}
    for name in config.feature_columns:
        if name not in frame.columns:
            raise DriftError(f"Cannot profile the training data: column {name!r} is missing")
        column = frame[name]
        nulls = float(column.isna().mean()) if len(column) else 0.0
        values = column.dropna()
        if name in categorical:
            shares = values.map(_key).value_counts(normalize=True)
            features[name] = {
                "kind": "categorical",
                "null_share": nulls,
                "frequencies": {str(k): float(v) for k, v in shares.items()},
            }
            continue
        numbers = values.to_numpy(dtype="float64")
        numbers = numbers[np.isfinite(numbers)]
        if numbers.size == 0:
            raise DriftError(f"Cannot profile column {name!r}: it has no finite values")
        inner = np.unique(np.quantile(numbers, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]))
        counts = np.bincount(
            np.searchsorted(inner, numbers, side="right"), minlength=inner.size + 1
        )
        sample = (
            numbers
            if numbers.size <= REFERENCE_SAMPLE
            else rng.choice(numbers, REFERENCE_SAMPLE, replace=False)
        )
        features[name] = {
            "kind": "numeric",
            "null_share": nulls,
            "edges": inner.tolist(),
            "proportions": (counts / counts.sum()).tolist(),
            "sample": np.sort(sample).tolist(),
            "mean": float(numbers.mean()),
            "std": float(numbers.std()),
            "min": float(numbers.min()),
            "max": float(numbers.max()),
        }
    return {
        "schema": PROFILE_SCHEMA,
        "rows": len(frame),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "features": features,
    }


def psi(expected: list[float], actual: list[float]) -> float:
    """Population Stability Index of two distributions over the same buckets.

    ``sum((a - e) * ln(a / e))`` with empty buckets floored at 1e-4, so a bucket that one
    side never fills adds a large but finite amount instead of infinity.
    """
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, _EPS), max(a, _EPS)
        total += (a - e) * math.log(a / e)
    return total


@dataclass
class FeatureDrift:
    """Drift of one feature between the reference profile and the live window."""

    name: str
    kind: str
    #: Population Stability Index (``inf`` when the window has no finite value; ``null``
    #: in JSON).
    psi: float
    test: str
    statistic: float
    p_value: float
    drifted: bool
    reason: str
    #: Effect size in [0, 1]: the KS statistic (numeric) or the total variation distance
    #: (categorical).
    distance: float = 0.0
    reference_mean: float | None = None
    current_mean: float | None = None
    unseen_share: float | None = None
    #: Reference and live shares per bucket, for the report's plot.
    buckets: list[str] = field(default_factory=list)
    reference_shares: list[float] = field(default_factory=list)
    current_shares: list[float] = field(default_factory=list)


@dataclass
class DriftReport:
    """Per-feature drift and the dataset verdict."""

    rows: int
    features: list[FeatureDrift]
    psi_threshold: float
    ks_pvalue: float
    drift_share: float
    distance_threshold: float = DISTANCE_THRESHOLD
    unseen_share: float = UNSEEN_SHARE

    @property
    def drifted(self) -> list[str]:
        """Names of the drifted features, most drifted (largest PSI) first."""
        hits = [f for f in self.features if f.drifted]
        return [f.name for f in sorted(hits, key=lambda f: -f.psi)]

    @property
    def share(self) -> float:
        """Share of features that drifted."""
        return len(self.drifted) / len(self.features) if self.features else 0.0

    @property
    def dataset_drift(self) -> bool:
        """Whether enough features drifted to call the whole dataset drifted."""
        return bool(self.features) and self.share >= self.drift_share

    def summary(self) -> str:
        """One line for logs, notifications and asset-event reasons."""
        if not self.dataset_drift:
            return (
                f"no dataset drift: {len(self.drifted)}/{len(self.features)} features drifted "
                f"(threshold share {self.drift_share:.0%}) over {self.rows} predictions"
            )
        top = ", ".join(
            f"{f.name} (PSI {_num(f.psi, '.2f')})"
            for f in sorted((f for f in self.features if f.drifted), key=lambda f: -f.psi)[:5]
        )
        return (
            f"dataset drift: {len(self.drifted)}/{len(self.features)} features drifted "
            f"({self.share:.0%} >= {self.drift_share:.0%}) over {self.rows} predictions; "
            f"most drifted: {top}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (without the per-bucket plot data).

        Strict JSON: an infinite PSI or an undefined p-value is ``null``, never
        ``Infinity``/``NaN`` (which ``json.loads`` of other languages rejects).
        """
        return json_safe(
            {
                "rows": self.rows,
                "dataset_drift": self.dataset_drift,
                "share": round(self.share, 4),
                "drifted": self.drifted,
                "summary": self.summary(),
                "rule": RULE,
                "thresholds": {
                    "psi_threshold": self.psi_threshold,
                    "distance_threshold": self.distance_threshold,
                    "unseen_share": self.unseen_share,
                    "ks_pvalue": self.ks_pvalue,
                    "drift_share": self.drift_share,
                },
                "features": [
                    {
                        k: v
                        for k, v in asdict(f).items()
                        if k not in ("buckets", "reference_shares", "current_shares")
                    }
                    for f in self.features
                ],
            }
        )


#: How a feature's verdict is reached, in words (stored in drift.json and shown in the report).
RULE = (
    "a feature drifts when (PSI >= psi_threshold or distance >= distance_threshold or, "
    "categorical only, unseen values >= unseen_share of the window) and the test's "
    "p-value < ks_pvalue; the dataset drifts when >= drift_share of the features drift"
)


def _num(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else str(value)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class _Thresholds:
    psi: float
    distance: float
    p_value: float
    unseen: float


def _verdict(
    limits: _Thresholds,
    *,
    score: float,
    distance: float,
    test: str,
    p_value: float,
    unseen: float | None = None,
) -> tuple[bool, str]:
    """Whether a feature drifted, and why in words (see the module docstring's rule)."""
    effects = []
    if score >= limits.psi:
        effects.append(f"PSI {_num(score, '.3f')} >= {limits.psi}")
    if distance >= limits.distance:
        label = "KS statistic" if test == "KS" else "distance"
        effects.append(f"{label} {distance:.3f} >= {limits.distance}")
    if unseen is not None and unseen > 0 and unseen >= limits.unseen:
        effects.append(f"unseen values {unseen:.1%} >= {limits.unseen:.1%} of the window")
    significant = not math.isnan(p_value) and p_value < limits.p_value
    if effects and significant:
        return True, "; ".join(effects) + f" ({test} p={p_value:.2g})"
    if effects:
        return False, (
            f"stable: {'; '.join(effects)} but {test} p={p_value:.2g} >= {limits.p_value} "
            "(too few rows to tell from noise)"
        )
    if significant:
        return False, (
            f"stable: {test} p={p_value:.2g} but the change is small "
            f"(PSI {_num(score, '.3f')}, distance {distance:.3f})"
        )
    return False, "stable"


def _numeric_drift(
    name: str, ref: dict[str, Any], values: pd.Series, limits: _Thresholds
) -> FeatureDrift:
    import numpy as np
    from scipy.stats import ks_2samp

    numbers = values.to_numpy(dtype="float64")
    numbers = numbers[np.isfinite(numbers)]
    if numbers.size == 0:
        return FeatureDrift(
            name=name,
            kind="numeric",
            psi=float("inf"),
            test="ks",
            statistic=1.0,
            p_value=0.0,
            drifted=True,
            reason="no finite values in the window",
            distance=1.0,
            reference_mean=ref.get("mean"),
        )
    edges = np.asarray(ref["edges"], dtype="float64")
    counts = np.bincount(np.searchsorted(edges, numbers, side="right"), minlength=edges.size + 1)
    current = (counts / max(counts.sum(), 1)).tolist()
    score = psi(ref["proportions"], current)
    test = ks_2samp(np.asarray(ref["sample"], dtype="float64"), numbers)
    statistic, p_value = float(test.statistic), float(test.pvalue)
    drifted, reason = _verdict(limits, score=score, distance=statistic, test="KS", p_value=p_value)
    labels = [f"< {edges[0]:.3g}"] if edges.size else ["all"]
    labels += [f"{lo:.3g} to {hi:.3g}" for lo, hi in pairwise(edges)]
    if edges.size:
        labels.append(f">= {edges[-1]:.3g}")
    return FeatureDrift(
        name=name,
        kind="numeric",
        psi=round(score, 6),
        test="ks",
        statistic=round(statistic, 6),
        p_value=p_value,
        drifted=drifted,
        reason=reason,
        distance=round(statistic, 6),
        reference_mean=ref.get("mean"),
        current_mean=float(numbers.mean()) if numbers.size else None,
        buckets=labels,
        reference_shares=list(ref["proportions"]),
        current_shares=current,
    )


def _categorical_drift(
    name: str, ref: dict[str, Any], values: pd.Series, limits: _Thresholds
) -> FeatureDrift:
    import numpy as np
    from scipy.stats import chisquare

    frequencies: dict[str, float] = ref["frequencies"]
    observed = values.map(_key).value_counts()
    n = int(observed.sum())
    known = list(frequencies)
    counts = [int(observed.get(value, 0)) for value in known]
    unseen = n - sum(counts)
    expected = [*frequencies.values(), 0.0]
    current_counts = [*counts, unseen]
    current = [c / n for c in current_counts] if n else [0.0] * len(current_counts)
    score = psi(expected, current)
    # chi-square needs positive expected counts that sum like the observed ones
    floored = np.maximum(np.asarray(expected), _EPS)
    test = chisquare(current_counts, f_exp=floored / floored.sum() * n)
    statistic, p_value = float(test.statistic), float(test.pvalue)
    distance = 0.5 * sum(abs(c - e) for c, e in zip(current, expected, strict=True)) if n else 0.0
    unseen_share = unseen / n if n else 0.0
    drifted, reason = _verdict(
        limits,
        score=score,
        distance=distance,
        test="chi-square",
        p_value=p_value,
        unseen=unseen_share,
    )
    if unseen:
        reason += f"; {unseen} value(s) never seen in training"
    return FeatureDrift(
        name=name,
        kind="categorical",
        psi=round(score, 6),
        test="chi2",
        statistic=round(statistic, 6),
        p_value=p_value,
        drifted=drifted,
        reason=reason,
        distance=round(distance, 6),
        unseen_share=round(unseen_share, 6),
        buckets=[*known, UNSEEN],
        reference_shares=expected,
        current_shares=current,
    )


def compute_drift(
    profile: dict[str, Any],
    current: pd.DataFrame,
    *,
    psi_threshold: float = PSI_THRESHOLD,
    ks_pvalue: float = KS_PVALUE,
    drift_share: float = DRIFT_SHARE,
    distance_threshold: float = DISTANCE_THRESHOLD,
    unseen_share: float = UNSEEN_SHARE,
) -> DriftReport:
    """Compare live inputs with the reference profile, feature by feature.

    Parameters
    ----------
    profile : dict
        From :func:`build_profile`.
    current : DataFrame
        The live window (one row per prediction).
    psi_threshold, distance_threshold, unseen_share : float
        Effect sizes at which a feature's change is large enough to act on.
    ks_pvalue : float
        The change must also be significant (test p-value below this): guards small
        windows against noise, never flags a feature alone.
    drift_share : float
        Share of drifted features that means dataset drift.

    Raises
    ------
    DriftError
        If a profiled feature is missing from ``current`` (the service validates inputs
        against the model's schema, so this means the log and the model do not match).
    """
    if profile.get("schema") != PROFILE_SCHEMA:
        raise DriftError(
            f"Reference profile schema {profile.get('schema')!r} is not {PROFILE_SCHEMA}: "
            "retrain the model with this Conveyor release to refresh its profile"
        )
    missing = [name for name in profile["features"] if name not in current.columns]
    if missing:
        raise DriftError(
            f"The prediction window lacks feature(s) {missing} that the model was trained on: "
            "the log belongs to another model, or its schema changed"
        )
    limits = _Thresholds(
        psi=psi_threshold, distance=distance_threshold, p_value=ks_pvalue, unseen=unseen_share
    )
    results = []
    for name, ref in profile["features"].items():
        values = current[name].dropna()
        check = _categorical_drift if ref["kind"] == "categorical" else _numeric_drift
        results.append(check(name, ref, values, limits))
    return DriftReport(
        rows=len(current),
        features=results,
        psi_threshold=psi_threshold,
        ks_pvalue=ks_pvalue,
        drift_share=drift_share,
        distance_threshold=distance_threshold,
        unseen_share=unseen_share,
    )
