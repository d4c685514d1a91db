"""Where things live: read once from the environment, with documented defaults.

Locations are configuration, not code (see DESIGN, Conventions): nothing here looks at where
the package sits on disk, so an installed wheel behaves like a checkout. Each setting is read
from ``CONVEYOR_<KEY>`` or, the name Airflow uses for the provider's ``[conveyor]`` config
section, ``AIRFLOW__CONVEYOR__<KEY>`` (the first one set wins). The provider also fills in
values written in ``airflow.cfg``'s ``[conveyor]`` section
(:func:`conveyor_airflow.config.conveyor_settings`); the core itself cannot read Airflow's
``conf`` because it never imports Airflow.

============================= ===================================================
setting (``CONVEYOR_`` + key)  default
============================= ===================================================
``PROJECT_DIR``               ``$AIRFLOW_HOME`` (else ``~/airflow``): the folder
                              with ``dags/`` and ``include/pipelines/`` (an Astro
                              project's layout)
``HOME``                      ``$CONVEYOR_PROJECT_DIR/.conveyor`` (runtime state)
``PIPELINES_DIR``             ``$CONVEYOR_PROJECT_DIR/include/pipelines``
``ARTIFACT_ROOT``             ``$CONVEYOR_HOME/artifacts`` (any fsspec URL)
``DATA_REGISTRY``             ``$CONVEYOR_HOME/data-registry`` (git URL or path)
``MLFLOW_ARTIFACTS``          ``$CONVEYOR_HOME/mlflow/artifacts``
``MLFLOW_TRACKING_URI``       ``sqlite:///$CONVEYOR_HOME/mlflow/mlflow.db`` (MLflow's
                              own ``MLFLOW_TRACKING_URI`` is read too)
============================= ===================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Phone-home switches: there is no internet on our machines and a blocked call can
#: stall a task, so every entry point sets these before importing the libraries.
TELEMETRY_OFF = {
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}

#: Keys of the provider's ``[conveyor]`` config section that name locations.
LOCATION_KEYS = (
    "project_dir",
    "home",
    "pipelines_dir",
    "artifact_root",
    "data_registry",
    "mlflow_tracking_uri",
    "mlflow_artifacts",
)


def disable_telemetry() -> None:
    """Switch off GX, DVC and MLflow usage reporting for this process and its children."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


def setting(env: Mapping[str, str], key: str) -> str | None:
    """``CONVEYOR_<KEY>`` or ``AIRFLOW__CONVEYOR__<KEY>`` from ``env``; ``None`` if unset/empty."""
    upper = key.upper()
    for name in (f"CONVEYOR_{upper}", f"AIRFLOW__CONVEYOR__{upper}"):
        value = env.get(name)
        if value:
            return value
    return None


def default_project_dir(env: Mapping[str, str]) -> Path:
    """Airflow's own home (``$AIRFLOW_HOME``, default ``~/airflow``): where a team's
    ``dags/`` usually sit next to ``include/``."""
    return Path(env.get("AIRFLOW_HOME") or Path("~/airflow")).expanduser()


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one process."""

    project_dir: Path
    home: Path
    pipelines_dir: Path
    artifact_root: str
    data_registry: str
    mlflow_tracking_uri: str
    mlflow_artifacts: str

    @property
    def dags_dir(self) -> Path:
        """The project's DAG folder (where ``conveyor new-pipeline`` writes a DAG file)."""
        return self.project_dir / "dags"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``)."""
        env = dict(os.environ if env is None else env)
        project = Path(setting(env, "project_dir") or default_project_dir(env)).expanduser()
        home = Path(setting(env, "home") or project / ".conveyor").expanduser().resolve()
        return cls(
            project_dir=project.resolve(),
            home=home,
            pipelines_dir=Path(
                setting(env, "pipelines_dir") or project / "include" / "pipelines"
            ).expanduser(),
            artifact_root=setting(env, "artifact_root") or str(home / "artifacts"),
            data_registry=setting(env, "data_registry") or str(home / "data-registry"),
            mlflow_tracking_uri=setting(env, "mlflow_tracking_uri")
            or env.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            mlflow_artifacts=setting(env, "mlflow_artifacts") or str(home / "mlflow" / "artifacts"),
        )
