"""A DVC remote that cannot be reached: a clear ``DataError``, nothing half-written.

The missing remote, a missing object, a wrong rev and an untracked file are covered in
``tests/unit/test_data.py``; here the registry's remote moves to an S3 endpoint on a
loopback port where nothing listens (a server that is down), through the real DVC S3
client.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from serving_helpers import free_port

from conveyor.data import fetch
from conveyor.data_registry import init_registry, publish_file
from conveyor.errors import DataError


def test_unreachable_remote_names_registry_commit_path_and_remote(tmp_path, monkeypatch):
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

    with pytest.raises(DataError) as exc:
        fetch(str(registry), "data/table.csv", "main", out)

    message = str(exc.value)
    for part in (str(registry), "data/table.csv", sha[:12], "s3://bucket/dvc", endpoint):
        assert part in message, f"{part!r} missing from: {message}"
    assert "Could not connect" in message
    assert not out.exists() or os.listdir(out) == []  # no partial download left behind
