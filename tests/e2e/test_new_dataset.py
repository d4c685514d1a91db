"""Adding a dataset the documented way: `conveyor data add` then `conveyor new-pipeline
--from`, as a user runs them (subprocesses), with real DVC, git, GX and scikit-learn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.config import load_pipeline_config
from conveyor.data.registry import init_registry
from conveyor.data.source import fetch
from conveyor.errors import ValidationFailed
from conveyor.validation.expectations import read_dataset, validate_frame

pytestmark = pytest.mark.e2e

CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def conveyor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [CONVEYOR, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_data_add_then_new_pipeline_from_the_file(tmp_path):
    """Issue 16: adding a dataset meant `dvc add`/`git commit`/`dvc push` by hand, and
    `new-pipeline` copied breast_cancer's 31 columns, `target: target` and
    `search.scoring: roc_auc`, which breaks a multiclass grid search."""
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    csv = tmp_path / "wine.csv"
    wine.to_csv(csv, index=False)
    registry = init_registry(tmp_path / "registry", tmp_path / "remote")
    env = {
        "CONVEYOR_DATA_REGISTRY": str(registry),
        "CONVEYOR_PIPELINES_DIR": str(tmp_path / "pipelines"),
    }

    conveyor("data", "add", str(csv), "--name", "wine", env=env)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=registry, capture_output=True, text=True, check=True
    ).stdout.strip()
    # committed, and its content is in the remote: a clone-like fetch at that commit works
    snapshot = fetch(str(registry), "data/wine.csv", sha, str(tmp_path / "pulled"))
    assert Path(snapshot.local_path).read_bytes() == csv.read_bytes()
    assert list((tmp_path / "remote").rglob(snapshot.md5[2:])), "not pushed to the remote"

    dags = tmp_path / "dags"
    conveyor(
        "new-pipeline", "wine", "--from", str(csv), "--target", "cultivar",
        "--dags-dir", str(dags), env=env,
    )  # fmt: skip
    config = load_pipeline_config(tmp_path / "pipelines" / "wine.yaml")
    assert 'build_pipeline_dag("wine")' in (dags / "wine.py").read_text()
    # inferred from the file: its columns, a multiclass target, metrics valid for it
    assert list(config.validation.columns) == list(wine.columns)
    assert config.target == "cultivar" and config.task == "classification"
    assert config.validation.columns["cultivar"].allowed == [0, 1, 2]
    assert config.data.path == "data/wine.csv"
    assert config.metrics.primary == "f1"
    assert config.model.search is not None and config.model.search.scoring == "f1_macro"
    alcohol = config.validation.columns["alcohol"]
    assert alcohol.type == "float"
    assert alcohol.min < wine["alcohol"].min() and alcohol.max > wine["alcohol"].max()

    # the inferred expectations accept the file and catch a value far outside its range
    frame = read_dataset(csv)
    assert validate_frame(frame, config.validation, suite_name="wine")["success"]
    frame.loc[3, "alcohol"] = 99.0
    with pytest.raises(ValidationFailed, match="expect_column_values_to_be_between on 'alcohol'"):
        validate_frame(frame, config.validation, suite_name="wine")

    # and the search runs on three classes (scikit-learn's roc_auc scorer would not)
    from conveyor.modeling.training import train_model

    result = train_model(read_dataset(csv), config)
    assert set(result.model.classes_) == {0, 1, 2}
    assert result.cv_score is not None and 0.5 < result.cv_score <= 1.0
