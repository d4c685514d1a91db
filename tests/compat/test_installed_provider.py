"""The provider installed from its wheel into a fresh Airflow, as a team would.

Builds the wheel, installs it with its base dependencies beside ``apache-airflow==<minor>``
(default 3.1.x from 3.1.8, the floor we declare; ``make test-compat`` also runs 3.2.x) in a new
virtualenv, and checks from outside the checkout, with ``PYTHONPATH`` unset and a fresh
``AIRFLOW_HOME``: Airflow lists the provider and its connection types, ``conveyor`` is
imported from that venv, and the example DAG shipped in the package parses and trains to a
complete version holding ``production``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import conveyor
from conveyor_airflow.get_provider_info import get_provider_info

REPO = Path(__file__).resolve().parents[2]
#: Requirements installed beside the wheel (whitespace-separated). 3.1.0-3.1.7 break on
#: structlog 26 (Airflow's own bug), so the floor we test and declare is 3.1.8.
AIRFLOW_SPEC = os.environ.get("CONVEYOR_COMPAT_AIRFLOW", "apache-airflow>=3.1.8,<3.2").split()
#: Variables of the test session that must not leak into the "user's" environment.
LEAKY = ("PYTHONPATH", "VIRTUAL_ENV", "CONVEYOR_", "AIRFLOW", "MLFLOW_", "UV_")

pytestmark = pytest.mark.compat


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def _run(cmd: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 900):
    done = subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(
            f"`{' '.join(cmd)}` exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A venv with the wheel and Airflow, and an environment that knows nothing of the repo."""
    root = tmp_path_factory.mktemp("compat")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY)}
    _run(
        [*_uv(), "build", "--wheel", "--out-dir", str(root / "dist"), str(REPO)],
        env=base_env,
        cwd=root,
    )
    wheel = next((root / "dist").glob("conveyor_mlops-*.whl"))
    venv = root / "venv"
    _run([*_uv(), "venv", "--python", sys.executable, str(venv)], env=base_env, cwd=root)
    _run(
        [
            *_uv(),
            "pip",
            "install",
            "--python",
            str(venv / "bin" / "python"),
            str(wheel),
            *AIRFLOW_SPEC,
        ],
        env=base_env,
        cwd=root,
    )
    home = root / "home"
    env = {
        **base_env,
        "PATH": f"{venv / 'bin'}{os.pathsep}{base_env.get('PATH', '')}",
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "CONVEYOR_HOME": str(home / "conveyor"),
        "CONVEYOR_DATA_REGISTRY": str(home / "conveyor" / "data-registry"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "CONVEYOR_MLFLOW_ARTIFACTS": str(home / "mlflow-artifacts"),
        "GX_ANALYTICS_ENABLED": "false",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    (home / "dags").mkdir(parents=True)
    _run(["airflow", "db", "migrate"], env=env, cwd=root)
    _run(
        ["airflow", "pools", "set", "conveyor_training", "1", "Conveyor training"],
        env=env,
        cwd=root,
    )
    script = root / "installed_check.py"
    shutil.copy(REPO / "tests" / "compat" / "installed_check.py", script)
    return {"root": root, "venv": venv, "env": env, "wheel": wheel, "script": script}


def _json(done) -> object:
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_airflow_lists_the_provider_and_its_connection_types(installed):
    env, root = installed["env"], installed["root"]
    providers = _json(_run(["airflow", "providers", "list", "-o", "json"], env=env, cwd=root))
    ours = [p for p in providers if p["package_name"] == "conveyor-mlops"]
    assert ours and ours[0]["version"] == conveyor.__version__, providers
    hooks = _json(_run(["airflow", "providers", "hooks", "-o", "json"], env=env, cwd=root))
    listed = {h["connection_type"]: h for h in hooks}
    declared = {c["connection-type"] for c in get_provider_info()["connection-types"]}
    assert declared and declared <= set(listed), f"missing: {declared - set(listed)}"
    assert all(listed[c]["package_name"] == "conveyor-mlops" for c in declared)
    value = _run(["airflow", "config", "get-value", "conveyor", "training_pool"], env=env, cwd=root)
    assert value.stdout.strip() == "conveyor_training"


def test_installed_example_dag_trains_to_production(installed):
    """The example DAG inside the wheel parses and runs with dag.test() to a complete
    version that holds ``production``."""
    venv, env, root = installed["venv"], installed["env"], installed["root"]
    done = _run(
        [str(venv / "bin" / "python"), str(installed["script"]), "--run"],
        env=env,
        cwd=root,
        timeout=1200,
    )
    result = _json(done)
    assert Path(result["conveyor_file"]).is_relative_to(venv), result["conveyor_file"]
    assert result["import_errors"] == {}, result["import_errors"]
    assert "train_example_breast_cancer" in result["dag_ids"]
    assert result["run_state"].endswith("success"), done.stdout[-4000:]
    assert set(result["task_states"].values()) == {"success"}, result["task_states"]
    complete = [v for v in result["versions"] if v["tags"].get("conveyor.complete") == "true"]
    assert complete, result["versions"]
    assert any("production" in v["aliases"] for v in complete), result["versions"]


def test_installed_plugin_pages_need_the_login(installed):
    """Airflow's security dependencies the /conveyor app uses (internal API) work on this
    minor: anonymous 401 (a browser is sent to the login page), the admin gets the pages; a
    missing report is 404 only behind the login."""
    venv, env, root = installed["venv"], installed["env"], installed["root"]
    done = _run(
        [str(venv / "bin" / "python"), str(installed["script"]), "--ui-auth"], env=env, cwd=root
    )
    statuses = _json(done)["ui_auth"]
    assert set(statuses) == {
        "/conveyor/",
        "/conveyor/api/pipelines",
        "/conveyor/artifacts/train_x/run/validation/try-1/data_docs/index.html",
    }, statuses
    for url, seen in statuses.items():
        admin = 404 if "/artifacts/" in url else 200
        assert seen == {"anonymous": 401, "browser": 303, "admin": admin}, (url, seen)
