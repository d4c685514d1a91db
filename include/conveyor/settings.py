"""Where things live: read once from environment variables with documented defaults.

Locations are configuration, not code (see DESIGN, Conventions). Every default sits
under ``CONVEYOR_HOME`` (``<repo>/.conveyor``), which git ignores, so a clean clone
never carries runtime state.

=========================== ==================================================
variable                    default
=========================== ==================================================
``CONVEYOR_HOME``           ``<repo>/.conveyor``
``CONVEYOR_PIPELINES_DIR``  ``<repo>/include/pipelines``
``CONVEYOR_ARTIFACT_ROOT``  ``$CONVEYOR_HOME/artifacts`` (any fsspec URL)
``CONVEYOR_DATA_REGISTRY``  ``$CONVEYOR_HOME/data-registry`` (git URL or path)
``MLFLOW_TRACKING_URI``     ``sqlite:///$CONVEYOR_HOME/mlflow/mlflow.db``
``CONVEYOR_MLFLOW_ARTIFACTS`` ``$CONVEYOR_HOME/mlflow/artifacts``
=========================== ==================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Repository root when the package runs from a checkout (editable install).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Phone-home switches: there is no internet on our machines and a blocked call can
#: stall a task, so every entry point sets these before importing the libraries.
TELEMETRY_OFF = {
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}


def disable_telemetry() -> None:
    """Switch off GX, DVC and MLflow usage reporting for this process and its children."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one process."""

    home: Path
    pipelines_dir: Path
    artifact_root: str
    data_registry: str
    mlflow_tracking_uri: str
    mlflow_artifacts: str

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``)."""
        env = dict(os.environ if env is None else env)
        home = Path(env.get("CONVEYOR_HOME") or REPO_ROOT / ".conveyor").resolve()
        return cls(
            home=home,
            pipelines_dir=Path(
                env.get("CONVEYOR_PIPELINES_DIR") or REPO_ROOT / "include" / "pipelines"
            ),
            artifact_root=env.get("CONVEYOR_ARTIFACT_ROOT") or str(home / "artifacts"),
            data_registry=env.get("CONVEYOR_DATA_REGISTRY") or str(home / "data-registry"),
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            mlflow_artifacts=env.get("CONVEYOR_MLFLOW_ARTIFACTS")
            or str(home / "mlflow" / "artifacts"),
        )
