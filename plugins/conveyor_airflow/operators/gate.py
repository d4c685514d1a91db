"""ModelGateOperator: thresholds AND no regression vs production; skips downstream on reject."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from conveyor_airflow.compat import AirflowSkipException
from conveyor_airflow.operators.base import ConveyorOperator, as_bool

if TYPE_CHECKING:
    from airflow.sdk import Context

    from conveyor.config import PipelineConfig

#: XCom key under which the decision is pushed (also when the task is skipped).
DECISION_KEY = "gate_decision"


class ModelGateOperator(ConveyorOperator):
    """Decide whether the candidate may be registered.

    A rejection is an expected outcome, not an error: the decision is pushed to XCom
    (key ``gate_decision``) and logged line by line, then the task and everything after
    it are skipped, so nothing is registered and the run stays green.

    :param evaluation: XCom of :class:`EvaluateModelOperator`. (templated)
    :param override: Pass the gate regardless of metrics. (templated)
    :param override_reason: Mandatory with ``override``; recorded on the version. (templated)
    :param thresholds: Minimum (or, for error metrics, maximum) value per metric, e.g.
        ``{"roc_auc": 0.95}``; default the config's ``metrics.thresholds``.
    :param max_regression: How much worse than production any gated metric may be; default
        the config's ``metrics.max_regression``.
    """

    template_fields: Sequence[str] = (
        *ConveyorOperator.template_fields,
        "evaluation",
        "override",
        "override_reason",
    )
    ui_color = "#f0c419"

    def __init__(
        self,
        *,
        evaluation: Any,
        override: Any = False,
        override_reason: str = "",
        thresholds: dict[str, float] | None = None,
        max_regression: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.evaluation = evaluation
        self.override = override
        self.override_reason = override_reason
        self.thresholds = thresholds
        self.max_regression = max_regression

    @cached_property
    def config(self) -> PipelineConfig:
        config = ConveyorOperator.config.func(self)  # type: ignore[attr-defined]
        update: dict[str, Any] = {}
        if self.thresholds is not None:
            update["thresholds"] = dict(self.thresholds)
        if self.max_regression is not None:
            update["max_regression"] = float(self.max_regression)
        if not update:
            return config
        metrics = type(config.metrics).model_validate({**config.metrics.model_dump(), **update})
        return config.model_copy(update={"metrics": metrics})

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.modeling.gate import decide

        production = self.evaluation.get("production") or {}
        override = as_bool(self.override)
        decision = decide(
            self.evaluation["candidate"],
            self.config,
            production=production.get("metrics"),
            production_version=production.get("version"),
            fairness=self.evaluation.get("fairness"),
            override=override,
            override_reason=str(self.override_reason or "") or None,
        )
        result = decision.to_dict()
        context["ti"].xcom_push(key=DECISION_KEY, value=result)
        for line in decision.summary().splitlines():
            self.log.info("%s", line)
        if not decision.passed:
            self._audit_rejection(context, decision.summary(), result)
            raise AirflowSkipException(
                f"{decision.summary()}\nNothing is registered. Improve the model or data, or "
                "trigger with gate_override=true and an override_reason."
            )
        return result

    def _audit_rejection(self, context: Context, summary: str, decision: dict[str, Any]) -> None:
        """Every gate rejection is an audit record (nothing was registered: no version)."""
        from conveyor.registry import audit

        production = (self.evaluation.get("production") or {}).get("version")
        audit.record_event(
            self.settings.artifact_root,
            model=self.config.model_name,
            action="rejected",
            from_version=str(production) if production else None,
            to_version=None,
            reason=f"gate: {summary}",
            user=audit.airflow_actor(context["dag"].dag_id),
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            details={"gate": decision},
        )
