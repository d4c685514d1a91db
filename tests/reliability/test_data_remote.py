"""A DVC remote that cannot be reached: a clear ``DataError``, nothing half-written.

The missing remote, a missing object, a wrong rev and an untracked file are covered in
``tests/unit/test_data.py``; here the registry's remote moves to an S3 endpoint on a
loopback port where nothing listens (a server that is down), through the real DVC S3
client.
"""

from __future__ import annotations

import logging
import os
import subprocess

import pytest
from serving_helpers import free_port

from conveyor.data import source as data
from conveyor.data.registry import init_registry, publish_file
from conveyor.data.source import fetch
from conveyor.errors import DataError


def test_unreachable_remote_names_registry_commit_path_and_remote(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(data, "FETCH_BACKOFF", 0.05)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries: not under test
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    registry = init_registry(tmp_path / "registry", tmp_path / "remote")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    publish_file(registry, "data/table.csv", tmp_path / "table.csv", message="table")
    endpoint = f"http://127.0.0.1:{free_port()}"
    config = registry / ".dvc" / "config"
    config.write_text(
        config.read_text().replace(
            f"url = {tmp_path / 'remote'}", f"url = s3://bucket/dvc\n    endpointurl = {endpoint}"
        )
    )
    assert endpoint in config.read_text()
    subprocess.run(["git", "-C", str(registry), "commit", "-qam", "remote moved"], check=True)
    sha = subprocess.run(
        ["git", "-C", str(registry), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    out = tmp_path / "out"

    with (
        caplog.at_level(logging.WARNING, logger="conveyor.data.source"),
        pytest.raises(DataError) as exc,
    ):
        fetch(str(registry), "data/table.csv", "main", out)

    message = str(exc.value)
    for part in (str(registry), "data/table.csv", sha[:12], "s3://bucket/dvc", endpoint):
        assert part in message, f"{part!r} missing from: {message}"
    assert "Could not connect" in message
    # a server that is down may come back: retried with backoff, then a clear error
    assert f"after {data.FETCH_ATTEMPTS} attempts" in message
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == data.FETCH_ATTEMPTS - 1
    assert "pip install" not in message  # the client is installed: no misleading hint
    assert not out.exists() or os.listdir(out) == []  # no partial download left behind


def test_network_errors_are_retried_configuration_errors_are_not():
    """The classification behind the retries, on the S3 client's real exception classes."""
    from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

    down = EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    slow = ConnectTimeoutError(endpoint_url="http://127.0.0.1:9")
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")
    assert data._is_transient(down) and data._is_transient(slow)
    assert data._is_transient(ConnectionResetError()) and data._is_transient(TimeoutError())
    assert not data._is_transient(denied)
    assert not data._is_transient(FileNotFoundError("gone"))
    assert not data._is_transient(PermissionError("no"))

    hint = data._remote_hint("s3://bucket/dvc", denied)
    assert "credentials" in hint and "pip install" not in hint
    missing = data._remote_hint(
        "gs://bucket/dvc",
        Exception("URL 'gs://bucket/dvc' is supported but requires these missing dependencies"),
    )
    assert "dvc[gs]" in missing
