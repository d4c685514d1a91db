"""Conveyor's model service, configured by a ``conveyor_model_service`` Connection.

Fields: ``schema`` (http/https), ``host``, ``port``; ``password`` = the service's admin token
(``CONVEYOR_SERVE_ADMIN_TOKEN`` of the service), used by deployments to ask for a reload.
"""

from __future__ import annotations

from typing import Any

from conveyor_airflow.hooks.base import ConveyorHook


class ModelServiceHook(ConveyorHook):
    """Base URL and admin token of a model service from a Connection."""

    conn_name_attr = "model_service_conn_id"
    default_conn_name = "conveyor_model_service_default"
    conn_type = "conveyor_model_service"
    hook_name = "Conveyor model service"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden-fields": ["login", "extra"],
            "relabeling": {"schema": "Scheme (http/https)", "password": "Admin token"},
            "placeholders": {"host": "127.0.0.1", "port": "8000", "schema": "http"},
        }

    def base_url(self) -> str:
        conn = self.connection
        if not conn.host:
            raise ValueError(f"Connection {self.conn_id!r} names no model service host.")
        port = f":{conn.port}" if conn.port else ""
        return f"{conn.schema or 'http'}://{conn.host}{port}"

    def admin_token(self) -> str | None:
        return self.connection.password or None

    def check(self) -> str:
        import httpx

        resp = httpx.get(f"{self.base_url()}/health", timeout=5)
        resp.raise_for_status()
        return f"Model service at {self.base_url()}: {resp.json()}"


def connection_or_none(hook_class: type[ConveyorHook], conn_id: str | None) -> Any:
    """``hook_class(conn_id)`` when that connection exists, else ``None`` (no connection is a
    configuration choice, not an error: callers fall back to their documented default)."""
    from conveyor_airflow.compat import AirflowNotFoundException

    if not conn_id:
        return None
    hook = hook_class(conn_id)
    try:
        hook.connection  # noqa: B018 (looks it up)
    except AirflowNotFoundException:
        return None
    return hook


def resolve_model_service(
    *,
    service_url: str | None,
    conn_id: str | None,
    conn_id_explicit: bool,
    config_url: str | None,
) -> tuple[str | None, str | None, str]:
    """(base URL, admin token, where it came from) of the model service a deploy verifies.

    In order: the operator's ``service_url``; an explicitly named connection (it must exist);
    the pipeline YAML's ``deploy.service_url``; the default connection when it exists;
    else none (production moves without a live check, and says so).
    """
    if service_url:
        return service_url.rstrip("/"), None, "the operator's service_url"
    if conn_id and conn_id_explicit:
        hook = ModelServiceHook(conn_id)
        return hook.base_url(), hook.admin_token(), f"connection {conn_id!r}"
    if config_url:
        return config_url.rstrip("/"), None, "deploy.service_url"
    hook = connection_or_none(ModelServiceHook, conn_id)
    if hook is not None:
        return hook.base_url(), hook.admin_token(), f"connection {conn_id!r}"
    return None, None, "none configured"


def server_side_service_url(conn_id: str | None) -> str | None:
    """Base URL of the model-service connection ``conn_id`` read where no task runs (the
    api-server rendering Conveyor's pages): the Task SDK's lookup answers only inside
    tasks, so this asks Airflow's secrets backends (environment, metadata DB) directly."""
    if not conn_id or conn_id.lower() == "none":
        return None
    try:
        from airflow.models.connection import Connection

        conn = Connection.get_connection_from_secrets(conn_id)
    except Exception:  # not defined (or no DB here): no service to link to
        return None
    if not conn.host:
        return None
    port = f":{conn.port}" if conn.port else ""
    return f"{conn.schema or 'http'}://{conn.host}{port}"
