"""Live performance from delivered labels, joined on the ids the service returned."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conveyor.config import PipelineConfig
from conveyor.errors import DriftError
from conveyor.monitoring.checks import live_performance, read_labels


def config(**monitor) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "live",
            "task": "classification",
            "data": {"path": "d.csv"},
            "target": "y",
            "validation": {"columns": {"x": {"type": "float"}, "y": {"type": "int"}}},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "metrics": {"primary": "roc_auc"},
            "monitor": {"min_labels": 10, "max_metric_drop": 0.05, **monitor},
        }
    )


def window(n: int) -> pd.DataFrame:
    """A logged window: the model predicts class 1 for even ids, with a probability."""
    rows = []
    for i in range(n):
        p1 = 0.9 if i % 2 == 0 else 0.2
        rows.append(
            {
                "x": float(i),
                "_id": f"id{i}",
                "_version": "1",
                "_prediction": 1 if i % 2 == 0 else 0,
                "_probabilities": {"0": 1 - p1, "1": p1},
            }
        )
    return pd.DataFrame(rows)


def test_labels_from_csv_and_jsonl_later_files_win(tmp_path):
    (tmp_path / "a.csv").write_text("id,label\nid0,1\nid1,0\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"id": "id1", "label": 1}) + "\n")
    labels = read_labels(str(tmp_path))
    assert dict(zip(labels["id"], labels["label"], strict=True)) == {"id0": 1, "id1": 1}
    assert read_labels(str(tmp_path / "missing")).empty


def test_label_file_without_id_column_is_a_clear_error(tmp_path):
    (tmp_path / "bad.csv").write_text("prediction_id,label\nx,1\n")
    with pytest.raises(DriftError, match=r"lacks column\(s\) \['id'\]"):
        read_labels(str(tmp_path))


def test_correct_labels_keep_the_registered_metric():
    frame = window(40)
    labels = pd.DataFrame({"id": frame["_id"], "label": frame["_prediction"]})
    result = live_performance(frame, labels, config(), {"roc_auc": 0.99, "accuracy": 0.97})
    assert result["status"] == "measured" and result["metric"] == "roc_auc"
    assert result["live"] == 1.0 and not result["degraded"]
    assert result["all_live_metrics"]["accuracy"] == 1.0


def test_wrong_labels_are_a_performance_drop():
    frame = window(40)
    # a quarter of the labels disagree with the model
    labels = pd.DataFrame(
        {
            "id": frame["_id"],
            "label": [p if i % 4 else 1 - p for i, p in enumerate(frame["_prediction"])],
        }
    )
    result = live_performance(frame, labels, config(), {"roc_auc": 0.99})
    assert result["degraded"]
    assert result["drop"] == pytest.approx(0.99 - result["live"], abs=1e-6)
    assert result["live"] < 0.94


def test_too_few_labels_is_no_verdict():
    frame = window(40)
    labels = pd.DataFrame({"id": frame["_id"][:5], "label": [0] * 5})
    result = live_performance(frame, labels, config(), {"roc_auc": 0.99})
    assert result == {
        "labelled": 5,
        "min_labels": 10,
        "status": "not_enough_labels",
        "degraded": False,
    }
