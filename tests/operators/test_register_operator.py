"""RegisterModelOperator retried or cleared for one run leaves one version and one alias move."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conveyor.registry import tracking
from conveyor.registry.models import PRODUCTION, version_by_alias
from conveyor_airflow.operators import RegisterModelOperator


@pytest.fixture(scope="module")
def trained(settings):
    """Real upstream results: a model trained and logged to MLflow, as the train task would."""
    import mlflow
    from sklearn.datasets import load_diabetes

    from conveyor.config import load_pipeline_config, pipeline_path
    from conveyor.data.splits import split_frame
    from conveyor.modeling.evaluation import compute_metrics
    from conveyor.modeling.training import log_model, train_model

    config = load_pipeline_config(pipeline_path("diabetes", settings.pipelines_dir))
    config = config.model_copy(update={"name": "register_op_test"})
    train, test = split_frame(load_diabetes(as_frame=True, scaled=False).frame, config)
    client = tracking.configure(settings)
    experiment = tracking.ensure_experiment(client, config.name, settings)
    with mlflow.start_run(experiment_id=experiment) as run:
        result = train_model(train, config)
        uri = log_model(
            result, config, input_example=train[config.feature_columns], config_yaml="x: 1"
        )
    metrics = compute_metrics(result.model, test, config)
    return client, {
        "training": {
            "mlflow_run_id": run.info.run_id,
            "model_uri": uri,
            "model_id": uri.removeprefix("models:/"),
            "best_params": {},
        },
        "evaluation": {"candidate": metrics, "production": None},
    }


def make_operator(trained) -> RegisterModelOperator:
    _, upstream = trained
    op = RegisterModelOperator(
        task_id="register_model",
        pipeline="diabetes",
        data={
            "repo": "/r",
            "path": "data/diabetes.csv",
            "rev": "main",
            "git_sha": "a" * 40,
            "md5": "0" * 32,
            "rev_source": "branch",
            "code_rev": "conveyor-test+git.abc",
        },
        validation={"success": True, "rows": 442, "evaluated": 30, "failed": 0, "docs_uri": None},
        training=upstream["training"],
        evaluation=upstream["evaluation"],
        gate={"passed": True, "overridden": False, "override_reason": None, "reasons": ["ok"]},
    )
    # the registered name comes from the config; point it at this test's model name
    op.config = op.config.model_copy(update={"name": "register_op_test"})
    return op


def test_register_task_run_twice_leaves_one_version(trained):
    client, _ = trained
    context = {"dag": SimpleNamespace(dag_id="train_diabetes"), "run_id": "manual__retry"}
    first = make_operator(trained).execute(context)
    second = make_operator(trained).execute(context)  # a retry / cleared task
    assert first["created"] is True and second["created"] is False
    assert first["version"] == second["version"]
    assert first["promoted"] is True and second["promoted"] is False
    assert len(client.search_model_versions("name = 'register_op_test'")) == 1
    assert str(version_by_alias(client, "register_op_test", PRODUCTION).version) == first["version"]


def test_a_different_run_registers_a_new_version(trained):
    client, _ = trained
    result = make_operator(trained).execute(
        {"dag": SimpleNamespace(dag_id="train_diabetes"), "run_id": "manual__other"}
    )
    assert result["created"] is True
    assert len(client.search_model_versions("name = 'register_op_test'")) == 2
