"""The environment the runtime gives Airflow's processes (and through them every task)."""

from __future__ import annotations

import os
import subprocess
import sys

from conveyor.settings import Settings
from conveyor_runtime.airflow_env import airflow_env

# A task's view: load a model's artifacts back, as deploy_model and rollback_model do
# (mlflow.artifacts.download_artifacts, here from a local artifact location).
DOWNLOAD = """
import sys
import mlflow.artifacts
mlflow.artifacts.download_artifacts(artifact_uri=sys.argv[1], dst_path=sys.argv[2])
"""


def _download(env: dict[str, str], tmp_path, name: str) -> str:
    source = tmp_path / "model"
    source.mkdir(exist_ok=True)
    for i in range(3):
        (source / f"part{i}.bin").write_bytes(b"x" * 1000)
    done = subprocess.run(
        [sys.executable, "-c", DOWNLOAD, source.as_uri(), str(tmp_path / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stderr


def test_tasks_get_no_mlflow_download_progress_bar(tmp_path):
    """Issue 16: MLflow's download progress bar landed at ERROR in successful deploy_model /
    rollback_model logs (Airflow logs a task's stderr as errors)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_ENABLE_ARTIFACTS")}
    env = airflow_env(Settings.from_env({"CONVEYOR_HOME": str(tmp_path / "home")}), base=base)
    assert "Downloading artifacts" not in _download(env, tmp_path, "ours")
    # the same download without the setting draws the bar: the check above can see one
    assert "Downloading artifacts" in _download(base, tmp_path, "plain")
