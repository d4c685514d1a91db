"""Run *inside* a fresh virtualenv that has only the built wheel and an Airflow minor:
what a team does after ``pip install conveyor-mlops`` into the Airflow it already runs.

Prints one JSON object on its last line; the test (tests/compat/test_installed_provider.py)
asserts on it. Nothing from the repository is importable here (PYTHONPATH is unset and the
working directory is outside the checkout).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def build_registry(home: Path) -> None:
    """A DVC data registry with scikit-learn's breast-cancer data, through the library."""
    from sklearn.datasets import load_breast_cancer

    from conveyor.data.registry import init_registry, publish_file

    registry = Path(os.environ["CONVEYOR_DATA_REGISTRY"])
    init_registry(registry, str(home / "dvc-remote"))
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "breast_cancer.csv"
        load_breast_cancer(as_frame=True).frame.to_csv(csv, index=False)
        publish_file(registry, "data/breast_cancer.csv", csv, message="Add breast_cancer")


def ui_auth() -> dict:
    """The plugin's /conveyor app inside this Airflow's own API app (``create_app``): the
    statuses of every route of its route table, anonymous and logged in as the demo admin
    (Airflow's security dependencies are internal API: this is where an older minor shows
    whether their names and signatures still hold)."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.routing import APIRoute
    from fastapi.testclient import TestClient

    from conveyor_airflow.ui_app import URL_PREFIX
    from conveyor_airflow.ui_app import app as conveyor_app

    client = TestClient(create_app("core"))
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    sample = "train_x/run/validation/try-1/data_docs/index.html"
    statuses = {}
    for route in conveyor_app.routes:
        if not isinstance(route, APIRoute):
            continue
        url = URL_PREFIX + route.path.replace("{path:path}", sample)
        statuses[url] = {
            "anonymous": client.get(url).status_code,
            "browser": client.get(
                url, headers={"Accept": "text/html"}, follow_redirects=False
            ).status_code,
            "admin": client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code,
        }
    return statuses


def main() -> int:
    if "--ui-auth" in sys.argv:
        print(json.dumps({"ui_auth": ui_auth()}))
        return 0
    from airflow.models.dagbag import DagBag

    import conveyor
    import conveyor_airflow.example_dags as examples

    home = Path(os.environ["CONVEYOR_HOME"])
    result: dict = {"conveyor_file": conveyor.__file__, "version": conveyor.__version__}
    # As the example's docstring tells a user: copy it into the DAG folder.
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    example = dags / "example_conveyor_pipeline.py"
    shutil.copy(Path(examples.__file__).with_name(example.name), example)
    bag = DagBag(dag_folder=str(dags))
    result["import_errors"] = {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()}
    result["dag_ids"] = sorted(bag.dag_ids)
    if "--run" in sys.argv and not bag.import_errors:
        build_registry(home)
        spec = importlib.util.spec_from_file_location("example_conveyor_pipeline", example)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dag_run = module.dag.test()
        result["run_state"] = str(getattr(dag_run, "state", None))
        result["task_states"] = {
            ti.task_id: str(getattr(ti.state, "value", ti.state))
            for ti in dag_run.get_task_instances()
        }
        from mlflow import MlflowClient

        client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
        # search results carry no aliases: read each version on its own
        versions = client.search_model_versions("name = 'example_breast_cancer'")
        result["versions"] = [
            {"version": v.version, "aliases": list(mv.aliases), "tags": dict(mv.tags)}
            for v in versions
            for mv in [client.get_model_version(v.name, v.version)]
        ]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
