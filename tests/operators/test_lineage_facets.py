"""OpenLineage facets of single operators, for outcomes the e2e run does not cover: a failed
validation (every broken expectation in the assertions facet, no snapshot output), a rollback
(alias move), and no credentials in dataset namespaces."""

from __future__ import annotations

from pathlib import Path

import yaml

from conveyor_airflow.lineage import registry_namespace, safe_uri
from conveyor_airflow.operators import DataValidationOperator, RollbackModelOperator

REPO = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())


def test_failed_validation_reports_each_broken_expectation():
    task = DataValidationOperator(
        task_id="validate_data", data={"data_uri": "/art/run/data/x.csv"}, pipeline_config=SPEC
    )
    task.validation_summary = {
        "expectations": [
            {
                "expectation": "expect_table_row_count_to_be_between",
                "column": None,
                "success": True,
            },
            {
                "expectation": "expect_column_values_to_be_between",
                "column": "mean radius",
                "success": False,
            },
        ]
    }
    lineage = task.get_openlineage_facets_on_failure(None)
    [data] = lineage.inputs
    assert (data.namespace, data.name) == ("file", "/art/run/data/x.csv")
    assertions = data.inputFacets["dataQualityAssertions"].assertions
    assert [(a.assertion, a.column, a.success) for a in assertions] == [
        ("expect_table_row_count_to_be_between", None, True),
        ("expect_column_values_to_be_between", "mean radius", False),
    ]
    assert data.facets["schema"].fields[0].name == "mean radius"
    assert lineage.outputs == []  # no snapshot is written for bad data


def test_rollback_reports_the_alias_move():
    task = RollbackModelOperator(
        task_id="rollback_model", version="2", reason="bad release", pipeline_config=SPEC
    )
    task.conveyor_result = {
        "model": "breast_cancer",
        "version": "2",
        "previous_version": "3",
        "moved": True,
        "verified": False,
        "verification": "no model service configured",
    }
    lineage = task.get_openlineage_facets_on_complete(None)
    move = lineage.run_facets["conveyor_alias_move"]
    assert (move.action, move.fromVersion, move.toVersion, move.reason) == (
        "rollback",
        "3",
        "2",
        "bad release",
    )
    [model] = lineage.inputs
    assert model.name == "models:/breast_cancer/2"


def test_namespaces_carry_no_credentials():
    assert safe_uri("https://user:secret@mlflow.example:5000") == "https://mlflow.example:5000"
    assert (
        registry_namespace("https://tok@git.example/org/data.git")
        == "https://git.example/org/data.git"
    )
    assert registry_namespace("git@git.example:org/data.git") == "git@git.example:org/data.git"
    assert registry_namespace("relative/reg").startswith("file:///")


def test_batch_scoring_reports_input_model_and_output():
    from conveyor_airflow.operators import BatchScoreOperator

    task = BatchScoreOperator(task_id="score", pipeline_config=SPEC)
    task.conveyor_result = {
        "model_name": "breast_cancer",
        "model_version": "4",
        "input": {
            "repo": "/srv/registry",
            "path": "data/customers.csv",
            "git_sha": "a" * 40,
            "md5": "1" * 32,
        },
        "output": {
            "repo": "/srv/registry",
            "path": "scores/breast_cancer.parquet",
            "git_sha": "b" * 40,
            "md5": "2" * 32,
        },
    }
    lineage = task.get_openlineage_facets_on_complete(None)
    data, model = lineage.inputs
    assert (data.name, data.facets["conveyor_dvc"].md5) == ("data/customers.csv", "1" * 32)
    assert model.name == "models:/breast_cancer/4"
    [scores] = lineage.outputs
    assert scores.name == "scores/breast_cancer.parquet"
    assert scores.facets["version"].datasetVersion == "2" * 32
