"""Pipeline YAML loading: valid files load, every mistake names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conveyor.config import list_pipelines, load_pipeline_config
from conveyor.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "include" / "pipelines" / "breast_cancer.yaml"


def write(tmp_path: Path, raw: dict, name: str = "breast_cancer") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(DEMO.read_text())


def test_demo_config_loads():
    config = load_pipeline_config(DEMO)
    assert config.task == "classification"
    assert config.target == "target"
    assert len(config.feature_columns) == 30
    assert config.target not in config.feature_columns
    assert config.higher_is_better("roc_auc")


def test_every_shipped_pipeline_is_valid():
    names = list_pipelines(REPO / "include" / "pipelines")
    assert "breast_cancer" in names
    for name in names:
        assert load_pipeline_config(REPO / "include" / "pipelines" / f"{name}.yaml").name == name


def test_unknown_key_names_file_and_key(tmp_path, raw):
    raw["model"]["estimater_params"] = {}
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError) as exc:
        load_pipeline_config(path)
    message = str(exc.value)
    assert str(path) in message
    assert "unknown key 'model.estimater_params'" in message


def test_wrong_type_names_key_and_value(tmp_path, raw):
    raw["split"]["test_size"] = "a quarter"
    with pytest.raises(ConfigError, match=r"'split.test_size'.*a quarter"):
        load_pipeline_config(write(tmp_path, raw))


def test_metric_not_defined_for_task(tmp_path, raw):
    raw["metrics"]["thresholds"]["rmse"] = 3.0
    with pytest.raises(ConfigError, match="metric 'rmse' is not defined for task 'classification'"):
        load_pipeline_config(write(tmp_path, raw))


def test_missing_required_key(tmp_path, raw):
    del raw["target"]
    with pytest.raises(ConfigError, match="missing required key 'target'"):
        load_pipeline_config(write(tmp_path, raw))


def test_missing_file_suggests_scaffolding(tmp_path):
    with pytest.raises(ConfigError, match="conveyor new-pipeline nope"):
        load_pipeline_config(tmp_path / "nope.yaml")


def test_not_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline_config(path)


def test_name_must_match_file(tmp_path, raw):
    with pytest.raises(ConfigError, match="must match"):
        load_pipeline_config(write(tmp_path, raw, name="other"))


def test_config_hash_is_stable_and_sensitive(tmp_path, raw):
    first = load_pipeline_config(write(tmp_path, raw)).config_hash()
    assert load_pipeline_config(write(tmp_path, raw)).config_hash() == first
    raw["model"]["params"]["max_iter"] = 7
    assert load_pipeline_config(write(tmp_path, raw)).config_hash() != first


def test_newer_schema_version_rejected(tmp_path, raw):
    raw["schema_version"] = 99
    with pytest.raises(ConfigError, match="upgrade conveyor-mlops"):
        load_pipeline_config(write(tmp_path, raw))
