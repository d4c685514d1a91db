"""Conveyor operators: one per pipeline step, thin over :mod:`conveyor`.

``from conveyor_airflow.operators import X`` imports only the module that defines ``X``
(PEP 562 ``__getattr__``): DAG files are parsed over and over, and a DAG that uses two
operators should not pay for importing the other twelve (the approval operator alone
pulls the standard provider's HITL operators and triggers).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: Operator name -> module (under this package) that defines it.
_MODULES = {
    "BatchScoreOperator": "score",
    "ConveyorApprovalOperator": "approval",
    "DataValidationOperator": "validate",
    "DeployModelOperator": "deploy",
    "DriftCheckOperator": "monitor",
    "DvcPullOperator": "pull",
    "EvaluateModelOperator": "evaluate",
    "HousekeepingOperator": "housekeeping",
    "ModelGateOperator": "gate",
    "RegisterModelOperator": "register",
    "RequestRetrainingOperator": "monitor",
    "ResolveInputsOperator": "pull",
    "RollbackModelOperator": "deploy",
    "TrainModelOperator": "train",
}

__all__ = [
    "BatchScoreOperator",
    "ConveyorApprovalOperator",
    "DataValidationOperator",
    "DeployModelOperator",
    "DriftCheckOperator",
    "DvcPullOperator",
    "EvaluateModelOperator",
    "HousekeepingOperator",
    "ModelGateOperator",
    "RegisterModelOperator",
    "RequestRetrainingOperator",
    "ResolveInputsOperator",
    "RollbackModelOperator",
    "TrainModelOperator",
]

if TYPE_CHECKING:
    from conveyor_airflow.operators.approval import ConveyorApprovalOperator
    from conveyor_airflow.operators.deploy import DeployModelOperator, RollbackModelOperator
    from conveyor_airflow.operators.evaluate import EvaluateModelOperator
    from conveyor_airflow.operators.gate import ModelGateOperator
    from conveyor_airflow.operators.housekeeping import HousekeepingOperator
    from conveyor_airflow.operators.monitor import DriftCheckOperator, RequestRetrainingOperator
    from conveyor_airflow.operators.pull import DvcPullOperator, ResolveInputsOperator
    from conveyor_airflow.operators.register import RegisterModelOperator
    from conveyor_airflow.operators.score import BatchScoreOperator
    from conveyor_airflow.operators.train import TrainModelOperator
    from conveyor_airflow.operators.validate import DataValidationOperator


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next look-up skips this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULES})
