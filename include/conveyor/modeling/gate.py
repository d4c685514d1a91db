"""The promotion gate: absolute thresholds AND no regression against production.

A pure function of metrics, so it is cheap to test and its verdict can be explained line
by line in the task log and stored with the model version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError

if TYPE_CHECKING:
    from conveyor.config import PipelineConfig


@dataclass
class GateDecision:
    """The verdict with one line per check, JSON-safe through :meth:`to_dict`."""

    passed: bool
    reasons: list[str]
    checks: list[dict[str, Any]] = field(default_factory=list)
    production_version: str | None = None
    overridden: bool = False
    override_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """Multi-line human explanation for task logs and exception messages."""
        verdict = "PASSED" if self.passed else "REJECTED"
        if self.overridden:
            verdict += f" (overridden: {self.override_reason})"
        return "\n".join([f"Gate {verdict}", *(f"  - {r}" for r in self.reasons)])


def decide(
    candidate: dict[str, float],
    config: PipelineConfig,
    *,
    production: dict[str, float] | None = None,
    production_version: str | None = None,
    fairness: dict[str, float] | None = None,
    override: bool = False,
    override_reason: str | None = None,
) -> GateDecision:
    """Decide whether the candidate may be registered and promoted.

    Parameters
    ----------
    candidate : dict of str to float
        The candidate's metrics on the held-out split.
    config : PipelineConfig
        ``metrics.thresholds``, ``metrics.primary`` and ``metrics.max_regression``.
    production : dict of str to float, optional
        The production model's metrics on the *same* split; None when there is no
        production version (thresholds only, and the decision says so).
    fairness : dict of str to float, optional
        The candidate's largest gap per fairness metric over the sensitive features
        (:meth:`conveyor.cards.analysis.CardAnalysis.worst_fairness`), checked against
        the upper bounds in ``metrics.fairness``.
    override, override_reason : bool, str
        Force a pass. The reason is mandatory and recorded with the version.

    Raises
    ------
    ConfigError
        If ``override`` is set without a reason.
    """
    if override and not (override_reason or "").strip():
        raise ConfigError(
            "gate_override is set but override_reason is empty: say why the gate is "
            "overridden (it is recorded on the model version)"
        )
    checks: list[dict[str, Any]] = []
    reasons: list[str] = []
    for metric, threshold in config.metrics.thresholds.items():
        value = candidate.get(metric)
        higher = config.higher_is_better(metric)
        ok = value is not None and (value >= threshold if higher else value <= threshold)
        op = ">=" if higher else "<="
        checks.append(
            {"kind": "threshold", "metric": metric, "value": value, "limit": threshold, "ok": ok}
        )
        shown = "missing" if value is None else f"{value:.4f}"
        reasons.append(f"{metric} {shown} {op} {threshold} (threshold): {'ok' if ok else 'FAILED'}")

    _fairness_checks(config.metrics.fairness, fairness or {}, checks, reasons)
    if production is None:
        reasons.append("no production model yet: thresholds only, no regression check")
    else:
        tolerance = config.metrics.max_regression
        gated = dict.fromkeys([config.metrics.primary, *config.metrics.thresholds])
        for metric in gated:
            value, baseline = candidate.get(metric), production.get(metric)
            if value is None or baseline is None:
                reasons.append(f"{metric}: not comparable with production (missing value)")
                continue
            higher = config.higher_is_better(metric)
            limit = baseline - tolerance if higher else baseline + tolerance
            ok = value >= limit if higher else value <= limit
            checks.append(
                {
                    "kind": "regression",
                    "metric": metric,
                    "value": value,
                    "limit": limit,
                    "production": baseline,
                    "ok": ok,
                }
            )
            reasons.append(
                f"{metric} {value:.4f} vs production v{production_version} {baseline:.4f} "
                f"(tolerance {tolerance}): {'ok' if ok else 'REGRESSION'}"
            )
    passed = all(c["ok"] for c in checks)
    if override and not passed:
        reasons.append(f"override requested: {override_reason}")
    return GateDecision(
        passed=passed or override,
        reasons=reasons,
        checks=checks,
        production_version=production_version,
        overridden=override and not passed,
        override_reason=override_reason if override else None,
    )


def _fairness_checks(
    bounds: dict[str, float],
    values: dict[str, float],
    checks: list[dict[str, Any]],
    reasons: list[str],
) -> None:
    """Upper bounds on fairness gaps (lower is better); a gap not computed fails."""
    for metric, bound in bounds.items():
        value = values.get(metric)
        ok = value is not None and value <= bound
        checks.append(
            {"kind": "fairness", "metric": metric, "value": value, "limit": bound, "ok": ok}
        )
        shown = "not computed" if value is None else f"{value:.4f}"
        reasons.append(f"{metric} {shown} <= {bound} (fairness): {'ok' if ok else 'FAILED'}")
