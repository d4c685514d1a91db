"""MLflow connection: one place that points the client at the configured store.

With a SQLite tracking URI MLflow would put artifacts of new experiments under
``./mlruns`` relative to whatever directory the task runs in; experiments are therefore
created here with an explicit artifact location from the settings.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import RegistryError
from conveyor.settings import Settings, disable_telemetry

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow (tracking and registry) at ``settings`` and return a client."""
    disable_telemetry()
    import mlflow

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    """Id of experiment ``name``, created with an explicit artifact location if missing."""
    from mlflow.exceptions import MlflowException

    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = settings.mlflow_artifacts
        if "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
            location = Path(location).resolve().as_uri()
        return client.create_experiment(name, artifact_location=f"{location.rstrip('/')}/{name}")
    except MlflowException as exc:
        # Two tasks may race to create it; the loser reads the winner's.
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        raise RegistryError(
            f"Cannot create MLflow experiment {name!r} at {settings.mlflow_tracking_uri}: {exc}"
        ) from exc
