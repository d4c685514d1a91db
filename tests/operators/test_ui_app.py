"""The /conveyor app of the plugin: overview rendering and confined artifact serving."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from conveyor_airflow.ui_app import app, render_overview


@pytest.fixture
def client():
    return TestClient(app)


def test_overview_page_lists_every_pipeline(client):
    page = client.get("/")
    assert page.status_code == 200
    for name in ("breast_cancer", "diabetes"):
        assert f"<h2>{name}</h2>" in page.text


def test_overview_escapes_html():
    page = render_overview([{"name": "<script>x</script>", "error": "bad <b>yaml</b>"}])
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize("path", ["..%2F..%2Fetc%2Fpasswd", "a/../../secret", "%2E%2E/x"])
def test_artifact_paths_cannot_escape_the_root(client, path):
    assert client.get(f"/artifacts/{path}").status_code in (400, 404)


def test_artifact_is_served_with_its_media_type(client, settings):
    from pathlib import Path

    target = Path(settings.artifact_root) / "ui_test" / "run" / "plot.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\x89PNG\r\n")
    response = client.get("/artifacts/ui_test/run/plot.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == b"\x89PNG\r\n"
