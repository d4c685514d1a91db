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
