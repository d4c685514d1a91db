"""Conveyor operators: one per pipeline step, thin over :mod:`conveyor`."""

from conveyor_airflow.operators.deploy import (
    ConveyorApprovalOperator,
    DeployModelOperator,
    RollbackModelOperator,
)
from conveyor_airflow.operators.evaluate import EvaluateModelOperator
from conveyor_airflow.operators.gate import ModelGateOperator
from conveyor_airflow.operators.housekeeping import HousekeepingOperator
from conveyor_airflow.operators.monitor import DriftCheckOperator, RequestRetrainingOperator
from conveyor_airflow.operators.pull import DvcPullOperator, ResolveInputsOperator
from conveyor_airflow.operators.register import RegisterModelOperator
from conveyor_airflow.operators.score import BatchScoreOperator
from conveyor_airflow.operators.train import TrainModelOperator
from conveyor_airflow.operators.validate import DataValidationOperator

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
