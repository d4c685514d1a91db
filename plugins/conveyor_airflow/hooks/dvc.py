"""A DVC data registry (a git repository whose data lives in a DVC remote), configured by a
``conveyor_dvc`` Connection.

Fields: ``host`` = the registry's git URL or path (or the extra ``repo``); ``login`` /
``password`` = the S3 remote's access key and secret, or the extra ``aws_conn_id`` naming
an existing ``aws`` connection that holds them; extras ``endpoint_url`` (MinIO), ``region``. They become the variables DVC's S3 client reads, so no key sits in a config file.
"""

from __future__ import annotations

from typing import Any

from conveyor_airflow.hooks.base import ConveyorHook


class DvcRegistryHook(ConveyorHook):
    """Data-registry location and remote credentials from a Connection."""

    conn_name_attr = "dvc_conn_id"
    default_conn_name = "conveyor_dvc_default"
    conn_type = "conveyor_dvc"
    hook_name = "Conveyor DVC data registry"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden-fields": ["schema", "port"],
            "relabeling": {
                "host": "Registry (git URL or path)",
                "login": "Remote access key",
                "password": "Remote secret key",
            },
            "placeholders": {
                "host": "https://git.example.com/data/registry.git",
                "extra": '{"endpoint_url": "http://minio:9000", "region": "us-east-1"}',
            },
        }

    def repo(self) -> str:
        repo = self.extras.get("repo") or self.connection.host
        if not repo:
            raise ValueError(
                f"Connection {self.conn_id!r} names no data registry: set its host to the "
                "registry's git URL or path."
            )
        return str(repo)

    def env(self) -> dict[str, str]:
        """Variables DVC's remote clients (boto3/s3fs) read. The keys come from this
        connection's login/password, or from an existing ``aws`` connection named by the
        extra ``aws_conn_id`` (its login/password, and its extras ``endpoint_url`` /
        ``region_name``)."""
        conn, extras = self.connection, self.extras
        env: dict[str, str] = {}
        if extras.get("aws_conn_id"):
            aws = self.get_connection(str(extras["aws_conn_id"]))
            aws_extra = dict(aws.extra_dejson or {})
            extras = {
                "endpoint_url": aws_extra.get("endpoint_url"),
                "region": aws_extra.get("region_name"),
                **{k: v for k, v in extras.items() if v},
            }
            conn = aws
        if conn.login:
            env["AWS_ACCESS_KEY_ID"] = conn.login
        if conn.password:
            env["AWS_SECRET_ACCESS_KEY"] = conn.password
        if extras.get("endpoint_url"):
            env["AWS_ENDPOINT_URL"] = str(extras["endpoint_url"])
        if extras.get("region"):
            env["AWS_DEFAULT_REGION"] = str(extras["region"])
        return env

    def check(self) -> str:
        from conveyor.data.source import resolve_rev

        sha = resolve_rev(self.repo(), "HEAD")
        return f"Data registry {self.repo()} is at {sha[:12]}"
