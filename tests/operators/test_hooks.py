"""Conveyor's hooks read Airflow connections (here from AIRFLOW_CONN_* variables, the
environment secrets backend) and turn them into client settings; their Test button talks
to the real thing."""

from __future__ import annotations

import json

import pytest

from conveyor_airflow.hooks import DvcRegistryHook, MlflowHook, ModelServiceHook
from conveyor_airflow.hooks.model_service import connection_or_none, resolve_model_service


def conn(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_mlflow_hook_server_credentials_and_store_uri(monkeypatch, settings):
    conn(
        monkeypatch,
        "ml_server",
        conn_type="conveyor_mlflow",
        host="mlflow.internal",
        port=5000,
        schema="https",
        login="ml",
        password="s3cret",
        extra={"token": "tok"},
    )
    env = MlflowHook("ml_server").env()
    assert env == {
        "MLFLOW_TRACKING_URI": "https://mlflow.internal:5000",
        "MLFLOW_TRACKING_USERNAME": "ml",
        "MLFLOW_TRACKING_PASSWORD": "s3cret",
        "MLFLOW_TRACKING_TOKEN": "tok",
    }
    conn(
        monkeypatch,
        "ml_store",
        conn_type="conveyor_mlflow",
        extra={"tracking_uri": settings.mlflow_tracking_uri},
    )
    ok, message = MlflowHook("ml_store").test_connection()
    assert ok, message
    conn(monkeypatch, "ml_empty", conn_type="conveyor_mlflow")
    ok, message = MlflowHook("ml_empty").test_connection()
    assert not ok and "names no MLflow server" in message


def test_dvc_hook_registry_and_remote_credentials(monkeypatch, demo_registry, settings):
    conn(
        monkeypatch,
        "reg",
        conn_type="conveyor_dvc",
        host=settings.data_registry,
        login="AKIA-TEST",
        password="secret-key",
        extra={"endpoint_url": "http://minio:9000"},
    )
    hook = DvcRegistryHook("reg")
    assert hook.repo() == settings.data_registry
    assert hook.env() == {
        "AWS_ACCESS_KEY_ID": "AKIA-TEST",
        "AWS_SECRET_ACCESS_KEY": "secret-key",
        "AWS_ENDPOINT_URL": "http://minio:9000",
    }
    ok, message = hook.test_connection()
    assert ok and "is at" in message, message
    # the keys of an existing aws connection instead of its own
    conn(
        monkeypatch,
        "team_aws",
        conn_type="aws",
        login="AKIA-AWS",
        password="aws-secret",
        extra={"endpoint_url": "http://s3.internal:9000", "region_name": "eu-west-1"},
    )
    conn(
        monkeypatch,
        "reg_aws",
        conn_type="conveyor_dvc",
        host=settings.data_registry,
        extra={"aws_conn_id": "team_aws"},
    )
    assert DvcRegistryHook("reg_aws").env() == {
        "AWS_ACCESS_KEY_ID": "AKIA-AWS",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "AWS_ENDPOINT_URL": "http://s3.internal:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }


def test_model_service_resolution_order(monkeypatch):
    conn(
        monkeypatch,
        "svc",
        conn_type="conveyor_model_service",
        host="10.0.0.5",
        port=8300,
        password="admin-tok",
    )
    assert resolve_model_service(
        service_url="http://given:1/", conn_id="svc", conn_id_explicit=True, config_url="http://y"
    )[:2] == ("http://given:1", None)
    assert resolve_model_service(
        service_url=None, conn_id="svc", conn_id_explicit=True, config_url="http://yaml:2"
    )[:2] == ("http://10.0.0.5:8300", "admin-tok")
    assert resolve_model_service(
        service_url=None, conn_id="svc", conn_id_explicit=False, config_url="http://yaml:2"
    )[:2] == ("http://yaml:2", None)
    assert resolve_model_service(
        service_url=None, conn_id="svc", conn_id_explicit=False, config_url=None
    )[:2] == ("http://10.0.0.5:8300", "admin-tok")
    assert resolve_model_service(
        service_url=None, conn_id="absent", conn_id_explicit=False, config_url=None
    ) == (None, None, "none configured")
    assert connection_or_none(ModelServiceHook, "absent") is None
    from conveyor_airflow.compat import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException):  # named explicitly: it must exist
        resolve_model_service(
            service_url=None, conn_id="absent", conn_id_explicit=True, config_url=None
        )
