"""ModelGateOperator: thresholds AND no regression vs production; skips downstream on reject."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor_airflow.compat import AirflowSkipException
from conveyor_airflow.operators.base import ConveyorOperator, as_bool

if TYPE_CHECKING:
    from airflow.sdk import Context

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
    """

    template_fields: Sequence[str] = (
        *ConveyorOperator.template_fields,
        "evaluation",
        "override",
        "override_reason",
    )
    ui_color = "#f0c419"

    def __init__(
        self, *, evaluation: Any, override: Any = False, override_reason: str = "", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.evaluation = evaluation
        self.override = override
        self.override_reason = override_reason

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.modeling.gate import decide

        production = self.evaluation.get("production") or {}
        override = as_bool(self.override)
        decision = decide(
            self.evaluation["candidate"],
            self.config,
            production=production.get("metrics"),
            production_version=production.get("version"),
            override=override,
            override_reason=str(self.override_reason or "") or None,
        )
        result = decision.to_dict()
        context["ti"].xcom_push(key=DECISION_KEY, value=result)
        for line in decision.summary().splitlines():
            self.log.info("%s", line)
        if not decision.passed:
            raise AirflowSkipException(
                f"{decision.summary()}\nNothing is registered. Improve the model or data, or "
                "trigger with gate_override=true and an override_reason."
            )
        return result
