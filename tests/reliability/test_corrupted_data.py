"""Corrupted data files are stopped at validation, with the broken expectations listed.

Covers the corruptions not already in ``tests/e2e/test_training_pipeline.py`` (NaN target,
missing column, string in a numeric column, empty file — each run through the whole DAG)
and ``tests/unit/test_validation.py``: a truncated file, the wrong delimiter, ``inf``,
a duplicated header, a changed type, a renamed column, and a million-row file with one
bad row. Each file goes through the exact calls the validate task makes
(``read_dataset`` then ``validate_frame`` with the demo pipeline's spec). That a
``ValidationFailed`` there stops the run before training, leaves the registry and the
``production`` alias untouched and stores the summary is shown through the real DAG by
``test_corrupted_data_stops_at_validation`` in the end-to-end suite (not repeated here:
a ``dag.test()`` run costs about a minute on two cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor.config import PipelineConfig, load_pipeline_config
from conveyor.errors import ValidationFailed
from conveyor.validation.expectations import read_dataset, validate_frame
from conveyor_runtime.datasets import dataset_frame

REPO = Path(__file__).resolve().parents[2]
CONFIG = load_pipeline_config(REPO / "include" / "pipelines" / "breast_cancer.yaml")


@pytest.fixture(scope="module")
def good_csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("good") / "breast_cancer.csv"
    dataset_frame("breast_cancer").to_csv(path, index=False)
    return path.read_text()


def _truncated(text: str) -> str:
    # A transfer cut in the middle of a row: the last row has only a few fields.
    cut = text.rfind("\n", 0, len(text) - 1) + 40
    return text[:cut]


def _semicolons(text: str) -> str:
    return text.replace(",", ";")


def _inf(text: str) -> str:
    lines = text.splitlines()
    fields = lines[7].split(",")
    fields[1] = "inf"  # mean texture
    lines[7] = ",".join(fields)
    return "\n".join(lines) + "\n"


def _duplicated_header(text: str) -> str:
    # Two exports concatenated: the header shows up again as a data row.
    lines = text.splitlines()
    return "\n".join([*lines[:200], lines[0], *lines[200:]]) + "\n"


def _type_changed(text: str) -> str:
    # The target exported as labels instead of 0/1.
    lines = text.splitlines()
    rows = [line.rsplit(",", 1) for line in lines[1:]]
    labels = [f"{r[0]},{'malignant' if r[1] == '0' else 'benign'}" for r in rows]
    return "\n".join([lines[0], *labels]) + "\n"


def _renamed(text: str) -> str:
    header, rest = text.split("\n", 1)
    return header.replace("mean radius", "mean_radius") + "\n" + rest


CORRUPTIONS = {
    # label: (change, words one listed failure must contain)
    "truncated": (_truncated, "expect_column_values_to_not_be_null"),
    "wrong_delimiter": (_semicolons, "mean radius"),
    "inf": (_inf, "mean texture"),
    "duplicated_header": (_duplicated_header, "mean radius"),
    "type_changed": (_type_changed, "target"),
    "renamed_column": (_renamed, "mean_radius"),
}


def _validate(path: Path, config: PipelineConfig = CONFIG) -> dict:
    """What the validate task does; returns the summary of the (expected) failure."""
    frame = read_dataset(path, config.data.format)
    with pytest.raises(ValidationFailed) as exc:
        validate_frame(frame, config.validation, suite_name=config.name)
    summary = exc.value.summary
    assert summary["success"] is False and summary["failed"] == len(summary["failures"]) > 0
    # The message lists every broken expectation, one per line.
    for failure in summary["failures"]:
        assert failure["expectation"] in str(exc.value)
    return summary


@pytest.mark.parametrize("label", list(CORRUPTIONS))
def test_corrupted_file_is_stopped_at_validation(good_csv, tmp_path, label):
    change, words = CORRUPTIONS[label]
    path = tmp_path / f"{label}.csv"
    path.write_text(change(good_csv))
    summary = _validate(path)
    assert any(words in json.dumps(f) for f in summary["failures"]), summary["failures"]


def test_one_bad_row_in_a_million_is_found_and_shown(tmp_path):
    config = PipelineConfig.model_validate(
        {
            "name": "million",
            "task": "classification",
            "data": {"path": "million.csv"},
            "target": "y",
            "validation": {
                "min_rows": 1000,
                "columns": {
                    "age": {"type": "int", "min": 0, "max": 120},
                    "income": {"type": "float", "min": 0},
                    "y": {"type": "int", "allowed": [0, 1]},
                },
            },
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "metrics": {"primary": "accuracy"},
        }
    )
    rng = np.random.default_rng(7)
    n = 1_000_000
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.gamma(2.0, 20_000.0, n).round(2),
            "y": rng.integers(0, 2, n),
        }
    )
    frame.loc[654_321, "age"] = 999
    path = tmp_path / "million.csv"
    frame.to_csv(path, index=False)

    summary = _validate(path, config)

    assert summary["rows"] == n
    [failure] = summary["failures"]
    assert failure["column"] == "age"
    assert failure["unexpected_count"] == 1
    assert 999 in failure["examples"]
