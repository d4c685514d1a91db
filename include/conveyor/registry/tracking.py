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


def end_abandoned_runs(
    client: MlflowClient, experiment_id: str, *, dag_id: str, run_id: str, try_number: int
) -> list[str]:
    """Mark MLflow runs of earlier attempts of this Airflow task that never ended as KILLED.

    A worker killed mid-training (SIGKILL, OOM, a lost node) cannot end its MLflow run,
    which would otherwise show as RUNNING forever next to the retry's finished run. The
    retry is the first code that knows the attempt is dead, so it closes it. Only runs of
    the same Airflow run and an *earlier* try are touched: a concurrent run is never ended.

    Returns the MLflow run ids it ended.
    """
    from conveyor.registry.lineage import TAG_PREFIX, airflow_run_filter

    if try_number <= 1:
        return []
    stale = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and {airflow_run_filter(dag_id, run_id)}",
    )
    ended = []
    for run in stale:
        tried = run.data.tags.get(f"{TAG_PREFIX}try_number", "")
        if tried.isdigit() and int(tried) < try_number:
            client.set_tag(run.info.run_id, f"{TAG_PREFIX}abandoned_by_try", str(try_number))
            client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
            log.warning(
                "MLflow run %s of attempt %s never ended (worker lost); marked KILLED",
                run.info.run_id,
                tried,
            )
    return ended
