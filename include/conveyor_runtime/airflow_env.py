"""Environment for the Airflow processes Conveyor starts (demo, tests, `conveyor demo run`).

Plain environment variables, no Airflow import: the core stays Airflow-free, and the same
variables document how a team points its own Airflow at Conveyor.
"""

from __future__ import annotations

import os
from pathlib import Path

from conveyor.settings import TELEMETRY_OFF, Settings
from conveyor_runtime.preload import requested_modules

# Holds Conveyor's airflow_local_settings.py (the scheduler preload hook).
PRELOAD_SETTINGS_DIR = Path(__file__).with_name("airflow_config")


def airflow_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Variables for an embedded Airflow (SQLite + LocalExecutor) under ``settings.home``.

    Values already present in ``base`` (default ``os.environ``) win, so a user can point
    the demo at another database or executor without editing code.
    """
    home = settings.home / "airflow"
    env = dict(os.environ if base is None else base)
    defaults = {
        **TELEMETRY_OFF,
        "CONVEYOR_HOME": str(settings.home),
        "AIRFLOW_HOME": str(home),
        "CONVEYOR_PROJECT_DIR": str(settings.project_dir),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.project_dir / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # A 2-core laptop: a few worker processes, not Airflow's default of 32.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        # An idle scheduler loop sleeps this long (Airflow's default: 1 s) before it looks
        # again, so a finished task waited half of it on average before the next one was
        # scheduled: ~0.5 s per task, 4 s per training run. At 0.25 s the idle components'
        # CPU stayed within noise of the default (bench/orchestration.py "idle components").
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        # MLflow draws a tqdm bar on stderr while it downloads artifacts; Airflow logs a
        # task's stderr at ERROR, so a successful deploy_model/rollback_model showed errors.
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "CONVEYOR_ARTIFACT_ROOT": settings.artifact_root,
        "CONVEYOR_DATA_REGISTRY": settings.data_registry,
        "CONVEYOR_PIPELINES_DIR": str(settings.pipelines_dir),
        "CONVEYOR_MLFLOW_ARTIFACTS": settings.mlflow_artifacts,
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    if requested_modules(env):
        # Opt-in (CONVEYOR_PRELOAD_MODULES): the scheduler imports the heavy task modules
        # once and its forked LocalExecutor workers/tasks inherit them (conveyor.airflow_preload).
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(PRELOAD_SETTINGS_DIR) not in paths:
            env["PYTHONPATH"] = os.pathsep.join([str(PRELOAD_SETTINGS_DIR), *paths])
    return env
