"""Errors raised by the Conveyor core.

Every error says what is wrong *and* how to fix it. The Airflow adapter, the model
service and the CLI each translate these once at their boundary (task failure or skip,
HTTP 4xx, exit code), so nothing deep inside a library surfaces as a bare traceback.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class of every expected Conveyor failure."""


class ConfigError(ConveyorError):
    """A pipeline YAML or a setting is missing, malformed or inconsistent."""


class DataError(ConveyorError):
    """The data registry, revision or tracked file cannot be read."""


class ValidationFailed(ConveyorError):
    """The dataset broke one or more expectations.

    ``summary`` holds the machine-readable validation summary (see
    :func:`conveyor.validation.expectations.validate_frame`), so callers can store it as lineage.
    """

    def __init__(self, message: str, summary: dict | None = None) -> None:
        super().__init__(message)
        self.summary = summary or {}


class TrainingError(ConveyorError):
    """The estimator cannot be built or fitted."""


class GateRejected(ConveyorError):
    """The candidate model did not pass the promotion gate."""

    def __init__(self, message: str, decision: dict | None = None) -> None:
        super().__init__(message)
        self.decision = decision or {}


class RegistryError(ConveyorError):
    """The MLflow tracking server or model registry refused an operation."""


class DeployError(ConveyorError):
    """A deployment could not be completed (and was rolled back where needed)."""


class DriftError(ConveyorError):
    """A drift check cannot run: no reference profile, or the window lacks features."""
