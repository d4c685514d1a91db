"""DAG files: import cleanly, one per pipeline, isolated failures, light at parse time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
HEAVY = ("pandas", "sklearn", "great_expectations", "dvc", "mlflow", "numpy", "scipy", "matplotlib")


def dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder), bundle_path=folder)


def test_all_dag_files_import_without_errors():
    bag = dagbag(DAGS)
    assert bag.import_errors == {}
    assert "train_breast_cancer" in bag.dag_ids


def test_every_shipped_pipeline_has_its_dag_file():
    from conveyor.config import list_pipelines

    for name in list_pipelines(REPO / "include" / "pipelines"):
        source = (DAGS / f"{name}.py").read_text()
        assert f'build_pipeline_dag("{name}")' in source, f"dags/{name}.py missing"


def test_training_dag_shape():
    dag = dagbag(DAGS).dags["train_breast_cancer"]
    assert [t.task_id for t in dag.topological_sort()] == [
        "resolve_inputs",
        "pull_data",
        "validate_data",
        "train_model",
        "evaluate_model",
        "gate",
        "register_model",
        "deploy_model",
    ]
    assert dag.max_active_runs == 1
    assert set(dag.params.keys()) == {"data_rev", "force", "gate_override", "override_reason"}
    for task in dag.tasks:
        assert task.execution_timeout is not None, task.task_id
    assert dag.get_task("train_model").pool == "conveyor_training"
    # scheduled by new data: the data asset carries the DVC watcher
    [asset] = dag.timetable.asset_condition.objects
    assert asset.name == "conveyor_data_breast_cancer"
    [watcher] = asset.watchers
    assert type(watcher.trigger).__name__ == "DvcUpdateTrigger"


def test_cron_schedule_combines_with_data_events(tmp_path, monkeypatch):
    from conveyor_airflow.factory import build_pipeline_dag

    raw = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    (tmp_path / "breast_cancer.yaml").write_text(yaml.safe_dump({**raw, "schedule": "@daily"}))
    dag = build_pipeline_dag("breast_cancer", pipelines_dir=tmp_path)
    assert type(dag.timetable).__name__ == "AssetOrTimeSchedule"


def test_sensor_watch_dag_is_paused_and_updates_the_same_asset():
    bag = dagbag(DAGS)
    watch = bag.dags["conveyor_watch_breast_cancer"]
    assert watch.is_paused_upon_creation is True
    announce = watch.get_task("announce_new_data")
    assert [o.name for o in announce.outlets] == ["conveyor_data_breast_cancer"]


def test_broken_yaml_breaks_only_its_own_dag(tmp_path, monkeypatch):
    pipelines = tmp_path / "pipelines"
    dags = tmp_path / "dags"
    pipelines.mkdir()
    dags.mkdir()
    raw = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    for name in ("good_one", "bad_one"):
        cfg = {**raw, "name": name}
        if name == "bad_one":
            cfg["model"] = {**cfg["model"], "estimater": "typo"}
        (pipelines / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        (dags / f"{name}.py").write_text(
            f'from conveyor_airflow.factory import build_pipeline_dag\ndag = build_pipeline_dag("{name}")\n'
        )
    monkeypatch.setenv("CONVEYOR_PIPELINES_DIR", str(pipelines))
    bag = dagbag(dags)
    assert bag.dag_ids == ["train_good_one"]
    assert [Path(k).name for k in bag.import_errors] == ["bad_one.py"]
    error = next(iter(bag.import_errors.values()))
    assert "unknown key 'model.estimater'" in error
    assert "bad_one.yaml" in error


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_no_heavy_import_at_parse_time(dag_file):
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(DAGS / dag_file)!r})\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"heavy imports: {out.stdout}"


def test_ruff_airflow_rules_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    out = subprocess.run(
        [ruff, "check", "--select", "AIR", "--preview", "dags", "plugins", "include"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_plugin_loaded_once_and_nothing_shadowed():
    code = (
        "import sys\n"
        "from airflow import plugins_manager as pm\n"
        "plugins, errors = pm._get_plugins()\n"
        "names = [p.name for p in plugins]\n"
        "print(names.count('conveyor'), type(next(p for p in plugins if p.name == 'conveyor').source).__name__)\n"
        "print(sorted(errors))\n"
        "import dvc, mlflow\n"
        "print(dvc.__file__.endswith('dvc/__init__.py'), mlflow.__file__.endswith('mlflow/__init__.py'))\n"
        "bare = ['factory', 'plugin', 'pull', 'validate', 'train', 'evaluate', 'gate', 'register', 'base', 'local_run']\n"
        "print([m for m in bare if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-4] == "1 EntryPointSource"
    assert lines[-3] == "[]"
    assert lines[-2] == "True True"
    assert lines[-1] == "[]"


@pytest.mark.parametrize("value", ["abc", "-1", "inf"])
def test_a_bad_number_in_the_environment_names_the_variable(monkeypatch, value):
    """CONVEYOR_WATCH_POLL_SECONDS, _RETRY_DELAY_SECONDS, _APPROVAL_TIMEOUT_DAYS are read
    when a DAG file is parsed: a bad value is an import error that says which and why."""
    from conveyor.errors import ConfigError
    from conveyor_airflow.factory import env_number

    monkeypatch.setenv("CONVEYOR_RETRY_DELAY_SECONDS", value)
    with pytest.raises(ConfigError, match=r"CONVEYOR_RETRY_DELAY_SECONDS must be a number >= 0"):
        env_number("CONVEYOR_RETRY_DELAY_SECONDS", 30)
    monkeypatch.setenv("CONVEYOR_RETRY_DELAY_SECONDS", "  ")
    assert env_number("CONVEYOR_RETRY_DELAY_SECONDS", 30) == 30
    monkeypatch.setenv("CONVEYOR_RETRY_DELAY_SECONDS", "2.5")
    assert env_number("CONVEYOR_RETRY_DELAY_SECONDS", 30) == 2.5
