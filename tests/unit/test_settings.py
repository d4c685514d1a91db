"""Locations and code identity come from configuration, never from where the package is."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import conveyor
from conveyor.registry import lineage
from conveyor.settings import Settings
from conveyor_runtime.cli import cli_settings, find_project


def test_defaults_follow_airflow_home_not_the_package(tmp_path):
    settings = Settings.from_env({"AIRFLOW_HOME": str(tmp_path)})
    assert settings.project_dir == tmp_path.resolve()
    assert settings.home == tmp_path.resolve() / ".conveyor"
    assert settings.pipelines_dir == tmp_path / "include" / "pipelines"
    assert settings.dags_dir == tmp_path.resolve() / "dags"
    assert settings.mlflow_tracking_uri == f"sqlite:///{settings.home / 'mlflow' / 'mlflow.db'}"
    package = Path(conveyor.__file__).resolve().parent
    for path in (settings.project_dir, settings.home, settings.pipelines_dir):
        assert not path.is_relative_to(package.parent), path


def test_without_airflow_home_the_project_is_airflows_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings.from_env({"HOME": str(tmp_path)}).project_dir == (tmp_path / "airflow")


def test_both_variable_spellings_and_which_wins(tmp_path):
    env = {
        "AIRFLOW_HOME": str(tmp_path / "af"),
        "AIRFLOW__CONVEYOR__PIPELINES_DIR": str(tmp_path / "from-airflow"),
        "AIRFLOW__CONVEYOR__ARTIFACT_ROOT": "s3://airflow-spelling",
        "CONVEYOR_ARTIFACT_ROOT": "s3://conveyor-spelling",
        "CONVEYOR_PROJECT_DIR": str(tmp_path / "proj"),
    }
    settings = Settings.from_env(env)
    assert settings.pipelines_dir == tmp_path / "from-airflow"
    assert settings.artifact_root == "s3://conveyor-spelling"
    assert settings.home == (tmp_path / "proj" / ".conveyor").resolve()


def test_provider_fills_in_the_conveyor_config_section(tmp_path, monkeypatch):
    """A value written in Airflow's [conveyor] section (not in the environment) reaches the
    core's settings through the provider."""
    from conveyor_airflow.config import airflow_conf, conveyor_settings

    conf = airflow_conf()
    monkeypatch.delenv("CONVEYOR_ARTIFACT_ROOT", raising=False)
    monkeypatch.delenv("AIRFLOW__CONVEYOR__ARTIFACT_ROOT", raising=False)
    assert conf.get("conveyor", "training_pool") == "conveyor_training"  # provider default
    conf.set("conveyor", "artifact_root", str(tmp_path / "from-cfg"))
    try:
        assert conveyor_settings().artifact_root == str(tmp_path / "from-cfg")
        assert Settings.from_env().artifact_root != str(tmp_path / "from-cfg")
    finally:
        conf.remove_option("conveyor", "artifact_root")


def _git_project(path: Path) -> str:
    git = ["git", "-C", str(path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "dag.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_code_identity_prefers_bundle_then_git_then_files(tmp_path, caplog):
    lineage.project_git_rev.cache_clear()
    project = tmp_path / "project"
    project.mkdir()
    sha = _git_project(project)
    libs = lineage.library_versions()
    assert libs.startswith(f"conveyor-{conveyor.__version__}+sklearn-")
    assert lineage.code_identity(project, bundle_version="v42") == f"{libs}+bundle.v42"
    assert lineage.code_identity(project) == f"{libs}+git.{sha}"

    plain = tmp_path / "plain"
    plain.mkdir()
    dag, yaml = plain / "dag.py", plain / "p.yaml"
    dag.write_text("a\n")
    yaml.write_text("b\n")
    with caplog.at_level(logging.WARNING, logger="conveyor.registry.lineage"):
        first = lineage.code_identity(plain, files=[dag, yaml])
    assert first.startswith(f"{libs}+files.")
    assert "neither a git checkout nor a versioned DAG bundle" in caplog.text
    yaml.write_text("changed\n")
    assert lineage.code_identity(plain, files=[dag, yaml]) != first


def test_cli_finds_the_project_from_the_working_directory(tmp_path):
    project = tmp_path / "team-project"
    (project / "include" / "pipelines").mkdir(parents=True)
    (project / "dags").mkdir()
    nested = project / "dags" / "sub"
    nested.mkdir()
    assert find_project(nested) == project
    assert find_project(tmp_path) is None
    settings = cli_settings({"AIRFLOW_HOME": str(tmp_path / "af")}, cwd=nested)
    assert settings.project_dir == project.resolve()
    explicit = cli_settings({"CONVEYOR_PROJECT_DIR": str(tmp_path / "x")}, cwd=nested)
    assert explicit.project_dir == (tmp_path / "x").resolve()


def test_short_code_identity_for_the_overview_page():
    full = "conveyor-0.2.0+sklearn-1.9.1+git.0123456789abcdef0123+dirty.abc"
    assert lineage.short_code_identity(full) == "conveyor-0.2.0 git.0123456789ab+dirty"
    assert lineage.short_code_identity("0123456789abcdef") == "0123456789ab"  # older versions
