"""`conveyor demo init` as a user runs it, twice, in a private CONVEYOR_HOME; and the plain
`airflow` CLI pointed at the demo's AIRFLOW_HOME. Real DVC, git, MLflow and Airflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATA = "data/breast_cancer.csv"


def run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
    )
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def git(registry: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=registry, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """A demo home of its own: nothing from the test session's environment leaks in."""
    home = tmp_path_factory.mktemp("demo-home")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "AIRFLOW", "MLFLOW_"))
    }
    env.update(CONVEYOR_PROJECT_DIR=str(REPO), CONVEYOR_HOME=str(home))
    return {"home": home, "env": env, "registry": home / "data-registry"}


def test_demo_init_twice_keeps_new_data_registry_and_production(demo):
    """Issue 16: `make demo` again committed the original dataset on top of a `make
    new-data` commit; the watcher then retrained on the old 569 rows and promoted it."""
    from mlflow import MlflowClient

    conveyor, env, registry = str(BIN / "conveyor"), demo["env"], demo["registry"]
    run([conveyor, "demo", "init"], env)
    first = git(registry, "rev-parse", "HEAD")

    # a production model in the demo's MLflow store (what a trained demo has)
    # registry_uri too: without it MLflow uses the session's registry for the model calls
    store = f"sqlite:///{demo['home'] / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    client.create_registered_model("breast_cancer")
    version = client.create_model_version("breast_cancer", source=str(demo["home"] / "model"))
    client.set_registered_model_alias("breast_cancer", "production", version.version)

    run([conveyor, "demo", "new-data"], env)
    newest = git(registry, "rev-parse", "HEAD")
    newest_dvc = git(registry, "show", f"HEAD:{DATA}.dvc")
    assert newest != first
    commits = git(registry, "rev-list", "--count", "HEAD")

    run([conveyor, "demo", "init"], env)
    assert git(registry, "rev-parse", "HEAD") == newest, git(registry, "log", "--oneline")
    assert git(registry, "rev-list", "--count", "HEAD") == commits
    assert git(registry, "show", f"HEAD:{DATA}.dvc") == newest_dvc
    assert git(registry, "status", "--porcelain") == ""
    # the working copy holds the newest rows, not the original 569
    assert sum(1 for _ in (registry / DATA).open()) - 1 > 569
    production = client.get_model_version_by_alias("breast_cancer", "production")
    assert production.version == version.version
    assert len(client.search_model_versions("name = 'breast_cancer'")) == 1


def test_airflow_cli_with_only_airflow_home_sees_the_demo(demo):
    """Issue 16: with the demo's AIRFLOW_HOME, airflow.cfg pointed dags_folder at a folder
    that does not exist: `airflow tasks list train_breast_cancer` -> "could not be found"."""
    if not (demo["home"] / "airflow" / "airflow.db").exists():
        run([str(BIN / "conveyor"), "demo", "init"], demo["env"])
    only_home = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "AIRFLOW_HOME": str(demo["home"] / "airflow"),
    }
    airflow = str(BIN / "airflow")
    tasks = run([airflow, "tasks", "list", "train_breast_cancer"], only_home).stdout.split()
    for task in ("resolve_inputs", "pull_data", "validate_data", "train_model", "gate"):
        assert task in tasks, tasks
    assert "conveyor_training" in run([airflow, "pools", "list"], only_home).stdout
    # the provider's [conveyor] section names the demo's locations
    got = run([airflow, "config", "get-value", "conveyor", "data_registry"], only_home).stdout
    assert got.strip() == str(demo["registry"])
