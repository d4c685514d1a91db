"""Registration against a real MLflow store: lineage, idempotency, aliases, skops loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import load_pipeline_config
from conveyor.data.splits import split_frame
from conveyor.errors import TrainingError
from conveyor.modeling.model_io import check_serialisable, load_model
from conveyor.modeling.training import log_model, train_model
from conveyor.registry import tracking
from conveyor.registry.models import (
    CANDIDATE,
    COMPLETE_TAG,
    PRODUCTION,
    find_run_version,
    lineage_tags,
    promote,
    register_version,
    tag_value,
    version_by_alias,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def logged(settings):
    """One trained breast-cancer model logged to the session's MLflow store."""
    import mlflow
    from sklearn.datasets import load_breast_cancer

    config = load_pipeline_config(REPO / "include" / "pipelines" / "breast_cancer.yaml")
    config = config.model_copy(update={"name": "registry_test"})
    train, test = split_frame(load_breast_cancer(as_frame=True).frame, config)
    client = tracking.configure(settings)
    experiment = tracking.ensure_experiment(client, config.name, settings)
    with mlflow.start_run(experiment_id=experiment) as run:
        result = train_model(train, config)
        uri = log_model(
            result, config, input_example=train[config.feature_columns], config_yaml="name: x\n"
        )
    return client, config, run.info.run_id, uri, test


def test_logged_model_loads_with_reviewed_types(logged):
    _, config, _, uri, test = logged
    model = load_model(uri)
    assert model.predict(test[config.feature_columns]).shape == (len(test),)
    assert str(Path(uri.removeprefix("models:/"))).startswith("m-")


def test_register_is_idempotent_per_run(logged):
    client, config, run_id, uri, _ = logged
    kwargs = dict(
        name=config.name,
        model_uri=uri,
        mlflow_run_id=run_id,
        dag_id="train_x",
        run_id="manual__1",
        tags=lineage_tags(data_md5="abc", metrics={"f1": 0.9}),
        model_id=uri.removeprefix("models:/"),
    )
    version, created = register_version(client, **kwargs)
    again, created_again = register_version(client, **kwargs)
    assert (created, created_again) == (True, False)
    assert again == version
    versions = client.search_model_versions(f"name = '{config.name}'")
    assert len(versions) == 1
    mv = versions[0]
    assert mv.tags["conveyor.data_md5"] == "abc"
    assert mv.tags["conveyor.metrics"] == '{"f1": 0.9}'
    assert mv.tags["conveyor.run_id"] == "manual__1"
    assert mv.tags[COMPLETE_TAG] == "true"
    assert version_by_alias(client, config.name, CANDIDATE).version == int(version)
    assert find_run_version(client, config.name, "train_x", "manual__1") is not None
    assert find_run_version(client, config.name, "train_x", "other") is None


def test_promote_moves_alias_once(logged):
    client, config, run_id, uri, _ = logged
    version, _ = register_version(
        client,
        name=config.name,
        model_uri=uri,
        mlflow_run_id=run_id,
        dag_id="train_x",
        run_id="manual__2",
        tags={},
    )
    assert promote(client, config.name, version, reason="test", actor="pytest")
    assert not promote(client, config.name, version, reason="test", actor="pytest")
    prod = version_by_alias(client, config.name, PRODUCTION)
    assert str(prod.version) == version
    assert '"by": "pytest"' in prod.tags["conveyor.promoted"]
    assert load_model(f"models:/{config.name}@{PRODUCTION}") is not None


def test_incomplete_version_is_ignored(logged):
    client, config, run_id, uri, _ = logged
    mv = client.create_model_version(config.name, source=uri, run_id=run_id)
    client.set_registered_model_alias(config.name, "half_done", mv.version)
    assert version_by_alias(client, config.name, "half_done") is None
    assert version_by_alias(client, config.name, "no_such_alias") is None


def test_untrusted_types_are_refused_at_logging_time():
    import numpy as np
    from sklearn.gaussian_process import GaussianProcessClassifier

    model = GaussianProcessClassifier().fit(np.random.rand(20, 2), np.arange(20) % 2)
    with pytest.raises(TrainingError, match="SKOPS_TRUSTED_TYPES"):
        check_serialisable(model)


def test_long_tag_values_are_trimmed():
    assert tag_value("x" * 10_000).endswith("...[truncated]")
    assert len(tag_value("x" * 10_000)) < 5000


def test_retry_ends_the_mlflow_run_a_killed_attempt_left_running(settings):
    """A SIGKILLed attempt leaves its MLflow run RUNNING; the retry marks it KILLED, and
    leaves runs of other Airflow runs (and its own) alone."""
    client = tracking.configure(settings)
    experiment = tracking.ensure_experiment(client, "abandoned_runs_test", settings)

    def started(run_id: str, try_number: str) -> str:
        tags = lineage_tags(dag_id="train_x", run_id=run_id, try_number=try_number)
        return client.create_run(experiment, tags=tags).info.run_id

    killed = started("manual__1", "1")
    other_run = started("manual__2", "1")
    current = started("manual__1", "2")

    assert (
        tracking.end_abandoned_runs(
            client, experiment, dag_id="train_x", run_id="manual__1", try_number=1
        )
        == []
    )  # a first attempt has nothing before it
    ended = tracking.end_abandoned_runs(
        client, experiment, dag_id="train_x", run_id="manual__1", try_number=2
    )

    assert ended == [killed]
    assert client.get_run(killed).info.status == "KILLED"
    assert client.get_run(killed).data.tags["conveyor.abandoned_by_try"] == "2"
    assert client.get_run(other_run).info.status == "RUNNING"
    assert client.get_run(current).info.status == "RUNNING"
