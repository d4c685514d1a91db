"""MLflow tracking server / registry, configured by a ``conveyor_mlflow`` Connection.

Fields: ``schema`` (http/https) + ``host`` + ``port`` name a tracking server; for a
database or file store put the whole URI in the extra ``tracking_uri``
(``sqlite:////data/mlflow.db``). ``login``/``password`` become MLflow's basic-auth
variables; an extra ``token`` becomes ``MLFLOW_TRACKING_TOKEN``.

    airflow connections add conveyor_mlflow_default \\
        --conn-uri 'conveyor-mlflow://user:secret@mlflow:5000?__extra__={"scheme":"http"}'
"""

from __future__ import annotations

from typing import Any

from conveyor_airflow.hooks.base import ConveyorHook


class MlflowHook(ConveyorHook):
    """MLflow client settings from a Connection (tracking URI and credentials)."""

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "conveyor_mlflow_default"
    conn_type = "conveyor_mlflow"
    hook_name = "Conveyor MLflow"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden-fields": [],
            "relabeling": {"schema": "Scheme (http/https)", "login": "Username"},
            "placeholders": {
                "host": "mlflow.example.com",
                "port": "5000",
                "schema": "https",
                "extra": '{"tracking_uri": "sqlite:////data/mlflow.db", "token": "..."}',
            },
        }

    def tracking_uri(self) -> str:
        extras = self.extras
        if extras.get("tracking_uri"):
            return str(extras["tracking_uri"])
        conn = self.connection
        if not conn.host:
            raise ValueError(
                f"Connection {self.conn_id!r} names no MLflow server: set its host (and port), "
                "or the extra 'tracking_uri'."
            )
        scheme = extras.get("scheme") or conn.schema or "http"
        port = f":{conn.port}" if conn.port else ""
        return f"{scheme}://{conn.host}{port}"

    def env(self) -> dict[str, str]:
        """Variables MLflow's client reads: tracking URI and credentials."""
        conn, extras = self.connection, self.extras
        env = {"MLFLOW_TRACKING_URI": self.tracking_uri()}
        if conn.login:
            env["MLFLOW_TRACKING_USERNAME"] = conn.login
        if conn.password:
            env["MLFLOW_TRACKING_PASSWORD"] = conn.password
        if extras.get("token"):
            env["MLFLOW_TRACKING_TOKEN"] = str(extras["token"])
        return env

    def get_conn(self) -> Any:
        """An ``MlflowClient`` for this connection's tracking URI."""
        import os

        from mlflow import MlflowClient

        os.environ.update({k: v for k, v in self.env().items() if k != "MLFLOW_TRACKING_URI"})
        uri = self.tracking_uri()
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def check(self) -> str:
        client = self.get_conn()
        client.search_experiments(max_results=1)
        return f"MLflow answers at {self.tracking_uri()}"
