"""Provider metadata read by Airflow's ProvidersManager (``apache_airflow_provider`` entry point).

With it ``airflow providers list`` shows Conveyor, the Connections UI offers its three
connection types, and ``airflow config list`` shows the ``[conveyor]`` section with its
defaults (readable through ``conf.get("conveyor", ...)``). Importing this module must stay
cheap: Airflow imports it in every process that looks at providers.
"""

from __future__ import annotations

from typing import Any

from conveyor import __version__

PACKAGE = "conveyor-mlops"
INTEGRATION = "Conveyor"


def _option(description: str, default: str | None, example: str | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "version_added": None,
        "type": "string",
        "example": example,
        "default": default,
    }


#: The ``[conveyor]`` config section. Empty defaults mean "derive it" (see conveyor.settings).
CONFIG_OPTIONS: dict[str, dict[str, Any]] = {
    "project_dir": _option(
        "Folder holding the project's dags/ and include/pipelines/. Empty: $AIRFLOW_HOME.",
        "",
        "/usr/local/airflow",
    ),
    "home": _option(
        "Folder for Conveyor's local state (caches, local artifacts, local MLflow store). "
        "Empty: <project_dir>/.conveyor.",
        "",
    ),
    "pipelines_dir": _option(
        "Folder of the pipeline YAMLs. Empty: <project_dir>/include/pipelines.", ""
    ),
    "artifact_root": _option(
        "Run-scoped artifacts (fsspec URL: a folder, s3://bucket/prefix). Empty: <home>/artifacts.",
        "",
        "s3://conveyor-artifacts",
    ),
    "data_registry": _option(
        "Default DVC data registry (git URL or path) for pipelines that name none. "
        "Empty: <home>/data-registry.",
        "",
    ),
    "mlflow_tracking_uri": _option(
        "MLflow tracking URI when no conveyor_mlflow connection is used. Empty: "
        "$MLFLOW_TRACKING_URI, else sqlite:///<home>/mlflow/mlflow.db.",
        "",
        "http://mlflow:5000",
    ),
    "mlflow_artifacts": _option(
        "Artifact location of new MLflow experiments. Empty: <home>/mlflow/artifacts.", ""
    ),
    "training_pool": _option(
        "Pool every training task runs in (create it with `airflow pools set`).",
        "conveyor_training",
    ),
    "mlflow_conn_id": _option("Default MLflow connection.", "conveyor_mlflow_default"),
    "dvc_conn_id": _option("Default DVC data-registry connection.", "conveyor_dvc_default"),
    "model_service_conn_id": _option(
        "Default model-service connection.", "conveyor_model_service_default"
    ),
}

HOOKS = {
    "conveyor_airflow.hooks.mlflow.MlflowHook": ("conveyor_mlflow", "Conveyor MLflow"),
    "conveyor_airflow.hooks.dvc.DvcRegistryHook": ("conveyor_dvc", "Conveyor DVC data registry"),
    "conveyor_airflow.hooks.model_service.ModelServiceHook": (
        "conveyor_model_service",
        "Conveyor model service",
    ),
}


def get_provider_info() -> dict[str, Any]:
    """Everything Conveyor adds to Airflow, in Airflow's provider-info schema."""
    modules = "conveyor_airflow.operators"
    return {
        "package-name": PACKAGE,
        "name": INTEGRATION,
        "description": "Train, gate, register, deploy and monitor tabular ML models: DVC data, "
        "Great Expectations, scikit-learn, MLflow.",
        "versions": [__version__],
        "integrations": [{"integration-name": INTEGRATION, "tags": ["software"]}],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    f"{modules}.{m}"
                    for m in (
                        "pull",
                        "validate",
                        "train",
                        "evaluate",
                        "gate",
                        "register",
                        "deploy",
                        "monitor",
                        "housekeeping",
                        "score",
                    )
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["conveyor_airflow.sensors.dvc_update"],
            }
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "conveyor_airflow.triggers.dvc_update",
                    "conveyor_airflow.triggers.config_change",
                ],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": sorted({cls.rpartition(".")[0] for cls in HOOKS}),
            }
        ],
        "connection-types": [
            {
                "hook-class-name": cls,
                "hook-name": name,
                "connection-type": conn_type,
            }
            for cls, (conn_type, name) in HOOKS.items()
        ],
        "extra-links": [
            f"conveyor_airflow.links.{name}"
            for name in (
                "MlflowRunLink",
                "ModelVersionLink",
                "DataDocsLink",
                "DriftReportLink",
                "ModelServiceLink",
                "ModelCardLink",
            )
        ],
        "notifications": ["conveyor_airflow.notifiers.ConveyorNotifier"],
        "plugins": [{"name": "conveyor", "plugin-class": "conveyor_airflow.plugin.ConveyorPlugin"}],
        "config": {
            "conveyor": {
                "description": "Where Conveyor keeps pipelines, artifacts and models, and the "
                "connections it uses by default. Every option can also be set as "
                "AIRFLOW__CONVEYOR__<OPTION> or CONVEYOR_<OPTION>.",
                "options": CONFIG_OPTIONS,
            }
        },
    }
