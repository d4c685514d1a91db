"""What parsing a DAG file may import and repeat (issue 19): each builder imports only the
operator modules its DAG uses, the sensor DAG needs no ``@task`` machinery, and a pipeline
YAML read twice in one process is parsed once. Speed itself is measured in bench/."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
#: Modules no shipped DAG file needs at parse time (none of the demo pipelines asks for
#: approval): the standard provider's HITL operators and the ``@task`` decorator's
#: Python operators (which bring ``packaging``).
NOT_AT_PARSE_TIME = (
    "airflow.providers.standard.operators.hitl",
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.decorators.python",
)
#: Operator modules a DAG file may import, by file (the others stay unimported).
OPERATOR_MODULES = {
    "breast_cancer.py": {"pull", "validate", "train", "evaluate", "gate", "register", "deploy"},
    "conveyor_monitor.py": {"monitor"},
    "conveyor_watch.py": set(),
    "conveyor_rollback.py": {"deploy"},
    "conveyor_housekeeping.py": {"housekeeping"},
    "conveyor_score.py": {"score"},
}


def _imported_after(dag_file: Path) -> set[str]:
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(dag_file)!r})\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    assert out.returncode == 0, out.stderr[-2000:]
    [line] = [x for x in out.stdout.splitlines() if x.startswith("MODULES ")]
    return set(line.split()[1:])


def test_every_dag_file_is_listed():
    assert set(OPERATOR_MODULES) == {p.name for p in DAGS.glob("*.py")}


@pytest.mark.parametrize("dag_file", sorted(OPERATOR_MODULES))
def test_dag_file_imports_only_what_its_dags_use(dag_file):
    modules = _imported_after(DAGS / dag_file)
    assert not [m for m in NOT_AT_PARSE_TIME if m in modules]
    prefix = "conveyor_airflow.operators."
    used = {m[len(prefix) :] for m in modules if m.startswith(prefix)}
    # base (the shared base class) comes with any operator module
    assert used - {"base"} <= OPERATOR_MODULES[dag_file]


def test_operators_package_imports_each_operator_on_first_use():
    code = (
        "import sys\n"
        "from conveyor_airflow.operators import DriftCheckOperator\n"
        "print(DriftCheckOperator.__module__)\n"
        "print('hitl' in ' '.join(sys.modules), 'conveyor_airflow.operators.train' in sys.modules)\n"
        "from conveyor_airflow.operators import ConveyorApprovalOperator\n"
        "from conveyor_airflow.operators.deploy import ConveyorApprovalOperator as Moved\n"
        "from conveyor_airflow.operators.deploy import approval_params\n"
        "print(ConveyorApprovalOperator is Moved, list(approval_params()))\n"
        "import conveyor_airflow.operators as ops\n"
        "print(sorted(ops.__all__) == sorted(n for n in dir(ops) if n.endswith('Operator')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-4:] == [
        "conveyor_airflow.operators.monitor",
        "False False",
        "True ['comment']",
        "True",
    ]
    with pytest.raises(AttributeError, match="NoSuchOperator"):
        import conveyor_airflow.operators as ops

        _ = ops.NoSuchOperator


def test_a_yaml_read_twice_is_parsed_once_and_an_edit_is_seen(tmp_path):
    from conveyor.config import load_pipeline_config

    raw = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    path = tmp_path / "cached_bc.yaml"
    path.write_text(yaml.safe_dump({**raw, "name": "cached_bc"}))
    first = load_pipeline_config(path)
    assert load_pipeline_config(path) is first
    # same size, same second: only the content tells the edit apart
    path.write_text(yaml.safe_dump({**raw, "name": "cached_bc", "description": "x" * 9}))
    edited = load_pipeline_config(path)
    assert edited is not first and edited.description == "x" * 9
    path.write_text(yaml.safe_dump({**raw, "name": "cached_bc", "model": {"estimater": "x"}}))
    from conveyor.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown key 'model\.estimater'"):
        load_pipeline_config(path)
    path.unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline_config(path)


def test_announce_records_the_payload_on_the_data_asset():
    from airflow.sdk import DAG, Asset

    from conveyor_airflow.sensors.dvc_update import AnnounceDataOperator

    asset = Asset(name="conveyor_data_x")
    with DAG("announce_test", schedule=None):
        task = AnnounceDataOperator(task_id="announce", payload={"rev": "abc"}, outlets=[asset])

    class Event:
        extra: dict | None = None

    events = {asset: Event()}
    task.execute({"outlet_events": events})
    assert events[asset].extra == {"payload": {"rev": "abc"}}
    with pytest.raises(ValueError, match="has no outlets"):
        AnnounceDataOperator(task_id="no_outlet", payload={})


def test_one_dag_per_pipeline_skips_a_broken_yaml_and_unscored_pipelines(tmp_path, monkeypatch):
    from conveyor_airflow.factory import build_monitor_dag, build_per_pipeline, build_watch_dag
    from conveyor_airflow.scoring_dag import build_score_dags

    raw = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    scoring = {"input": {"path": "data/to_score.csv"}}
    for name, extra in (("plain_one", {}), ("scored_one", {"scoring": scoring})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**raw, "name": name, **extra}))
    (tmp_path / "broken_one.yaml").write_text(yaml.safe_dump({**raw, "name": "broken_one", "x": 1}))
    monkeypatch.setenv("CONVEYOR_PIPELINES_DIR", str(tmp_path))
    warned: list[str] = []
    monkeypatch.setattr(
        logging.getLogger("conveyor_airflow.factory"),
        "warning",
        lambda msg, *args: warned.append(msg % args),
    )

    monitors = build_per_pipeline(build_monitor_dag, kind="monitor")
    assert sorted(monitors) == ["conveyor_monitor_plain_one", "conveyor_monitor_scored_one"]
    [warning] = warned
    assert warning.startswith("No monitor for broken_one") and "unknown key 'x'" in warning
    watchers = build_per_pipeline(build_watch_dag, kind="watcher", pipelines_dir=tmp_path)
    assert sorted(watchers) == ["conveyor_watch_plain_one", "conveyor_watch_scored_one"]
    assert list(build_score_dags()) == ["score_scored_one"]


def test_task_processes_load_the_plugin_without_its_web_app():
    """Every task process loads the plugins (for their macros) before ``execute()``; only
    the api-server reads ``fastapi_apps``, so the app and Airflow's API modules behind it
    are imported there, on first read, and not in each task."""
    code = (
        "import sys\n"
        "from airflow.sdk.plugins_manager import integrate_macros_plugins\n"
        "integrate_macros_plugins()\n"
        "from airflow.sdk.plugins_manager import _get_plugins\n"
        "names = [p.name for p in _get_plugins()[0]]\n"
        "print('PLUGINS', 'conveyor' in names, 'conveyor_airflow.ui_app' in sys.modules)\n"
        "from airflow.plugins_manager import get_fastapi_plugins\n"
        "apps, _ = get_fastapi_plugins()\n"
        "print('APPS', [a['url_prefix'] for a in apps], type(apps[0]['app']).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "PLUGINS True False" in out.stdout, out.stdout
    assert "APPS ['/conveyor'] FastAPI" in out.stdout, out.stdout
