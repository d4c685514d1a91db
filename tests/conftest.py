"""Test-session environment: a private CONVEYOR_HOME and AIRFLOW_HOME per session.

Set at import time, before anything imports Airflow (Airflow reads its configuration on
import), so a demo left running on this machine never collides with the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SESSION_HOME = Path(tempfile.mkdtemp(prefix="conveyor-test-"))
PIPELINES = SESSION_HOME / "pipelines"
PIPELINES.mkdir()
for source in [
    *(REPO / "include" / "pipelines").glob("*.yaml"),
    *(REPO / "tests" / "fixtures" / "pipelines").glob("*.yaml"),
]:
    shutil.copy(source, PIPELINES / source.name)

os.environ.update(
    {
        "CONVEYOR_PROJECT_DIR": str(REPO),
        "CONVEYOR_HOME": str(SESSION_HOME),
        "CONVEYOR_PIPELINES_DIR": str(PIPELINES),
        "CONVEYOR_DATA_REGISTRY": str(SESSION_HOME / "data-registry"),
        "CONVEYOR_ARTIFACT_ROOT": str(SESSION_HOME / "artifacts"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{SESSION_HOME / 'mlflow' / 'mlflow.db'}",
        "CONVEYOR_MLFLOW_ARTIFACTS": str(SESSION_HOME / "mlflow" / "artifacts"),
        # the data watcher polls the registry quickly in tests (default 10 s)
        "CONVEYOR_WATCH_POLL_SECONDS": "3",
        # No global CONVEYOR_DEPLOY_VERIFY override: pipelines name no model service by
        # default (deployments then move production unverified and say so), and the tests
        # that deploy to a service start their own and point a connection or URL at it
        # (the session's Airflow DB is private, so no demo's connection is ever used).
        # tests/system/test_worker_kill.py: a killed worker is noticed after 45 s, not
        # 300 s, and retried 5 s later, not 30 s
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "45",
        "CONVEYOR_RETRY_DELAY_SECONDS": "5",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    }
)
# dag.test() re-reads its DAG from the dags folder: one with the repo's DAG files plus a
# scaffolded two-line file for each test-only pipeline (as `conveyor new-pipeline` writes).
DAGS = SESSION_HOME / "dags"
DAGS.mkdir()
for source in (REPO / "dags").glob("*.py"):
    shutil.copy(source, DAGS / source.name)
for source in (REPO / "tests" / "fixtures" / "pipelines").glob("*.yaml"):
    (DAGS / f"{source.stem}.py").write_text(
        f'from conveyor_airflow.factory import build_pipeline_dag\n\ndag = build_pipeline_dag("{source.stem}")\n'
    )
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
sys.path.insert(0, str(REPO / "tests"))

from conveyor.settings import Settings  # noqa: E402
from conveyor_runtime.airflow_env import airflow_env  # noqa: E402

os.environ.update(airflow_env(Settings.from_env()))
# The demo login (admin / admin), written before anything in this session can start
# Airflow's SimpleAuthManager (tests/operators/test_ui_app.py builds Airflow's API app in
# process): without the file it invents a random password, which `airflow_init` then keeps,
# and the browser test's admin/admin login is refused.
_passwords = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
_passwords.parent.mkdir(parents=True, exist_ok=True)
_passwords.write_text('{"admin": "admin"}')


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def airflow_db(settings: Settings) -> Path:
    """A migrated Airflow metadata DB (SQLite) for dag.test() runs; once per session."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run(
        [airflow, "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return home / "airflow.db"


@pytest.fixture(scope="session")
def demo_registry(settings: Settings) -> dict[str, str]:
    """The session's DVC data registry with the demo datasets published once."""
    from conveyor_runtime.demo import init_demo

    return init_demo(settings)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_HOME, ignore_errors=True)
