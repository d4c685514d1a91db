"""The /conveyor app of the plugin inside Airflow's own API app (``create_app``, in this
process): login required, raw data never served, paths confined to the artifact root.

The same checks against a real api-server process, and per-DAG refusals under the FAB
auth manager, are in ``tests/system/test_ui_auth.py``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from conveyor_airflow.ui_app import app as conveyor_app
from conveyor_airflow.ui_app import render_overview, servable

RUN = "train_ui_test/manual__2026-01-01T00_00_00_00_00"


@pytest.fixture(scope="module")
def api(airflow_db):
    """Airflow's core API app with its plugins mounted, and a JWT of the demo admin."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    client = TestClient(create_app("core"))
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


@pytest.fixture(scope="module")
def files(settings, tmp_path_factory):
    """Reports, raw data and a file outside the artifact root, all real files."""
    root = Path(settings.artifact_root)
    frame = pd.DataFrame({"mean radius": [14.1, 20.6], "target": [0, 1]})
    made = {
        "report": root / RUN / "validation/try-1/data_docs/index.html",
        "summary": root / RUN / "validation/try-1/summary.json",
        "plot": root / RUN / "evaluation/try-1/roc_curve.png",
        "csv": root / RUN / "data/try-1/ui_test.csv",
        "csv in a report folder": root / RUN / "validation/try-1/data_docs/rows.csv",
        "parquet": root / RUN / "validation/try-1/snapshot.parquet",
        "metrics": root / RUN / "evaluation/try-1/metrics.json",
        "manifest": root / RUN / "validation/manifest.json",
        "prediction log": root / "predictions/ui_test/date=2026-01-01/part-0.jsonl",
        "audit": root / "audit/ui_test/20260101T000000.000000Z-abc.json",
    }
    for path in made.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    made["report"].write_text("<html><body>Expectation report</body></html>")
    made["summary"].write_text('{"success": true}')
    made["plot"].write_bytes(b"\x89PNG\r\n")
    frame.to_csv(made["csv"], index=False)
    frame.to_csv(made["csv in a report folder"], index=False)
    frame.to_parquet(made["parquet"])
    for key in ("metrics", "manifest", "audit"):
        made[key].write_text('{"secret": 1}')
    made["prediction log"].write_text('{"inputs": [{"mean radius": 14.1}]}\n')
    # Outside the artifact root (its sibling), with names the allowlist would accept.
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.html").write_text("<p>outside the root</p>")
    (outside / "summary.json").write_text('{"outside": true}')
    # A symbolic link inside a report folder that leads out of the root.
    link = root / RUN / "validation/try-1/data_docs/leak.html"
    if not link.is_symlink():
        link.symlink_to(outside / "secret.html")
    return made


def test_every_route_needs_a_login(api):
    """Anonymous requests to every route of the app's own table: 401, or the login page
    for a browser. A route added later is checked without editing this test."""
    routes = [r for r in conveyor_app.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} >= {"/", "/api/pipelines", "/artifacts/{path:path}"}
    anonymous = TestClient(api.app)
    for route in routes:
        url = "/conveyor" + route.path.replace("{path:path}", f"{RUN}/validation/try-1/x.html")
        for method in route.methods - {"HEAD"}:
            answer = anonymous.request(method, url)
            assert answer.status_code == 401, (method, url, answer.text)
            assert answer.json() == {"detail": "Not authenticated"}
            page = anonymous.request(
                method, url, headers={"Accept": "text/html"}, follow_redirects=False
            )
            assert page.status_code == 303, (method, url)
            assert page.headers["location"].startswith("/api/v2/auth/login?next=%2Fconveyor")
    # nothing else is mounted there: no OpenAPI page answering anonymously
    for extra in ("/conveyor/docs", "/conveyor/openapi.json", "/conveyor/redoc"):
        assert anonymous.get(extra).status_code == 404


def test_logged_in_user_sees_every_pipeline(api):
    page = api.get("/conveyor/")
    assert page.status_code == 200
    for name in ("breast_cancer", "diabetes"):
        assert f"<h2>{name}</h2>" in page.text
    names = [e["name"] for e in api.get("/conveyor/api/pipelines").json()]
    assert {"breast_cancer", "diabetes"} <= set(names)


def test_reports_are_served_with_their_media_type(api, files, settings):
    for key, media in [
        ("report", "text/html"),
        ("summary", "application/json"),
        ("plot", "image/png"),
    ]:
        rel = files[key].relative_to(settings.artifact_root).as_posix()
        answer = api.get(f"/conveyor/artifacts/{rel}")
        assert answer.status_code == 200, (key, answer.text)
        assert answer.headers["content-type"].startswith(media)
        assert answer.content == files[key].read_bytes()
        assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "key",
    [
        "csv",
        "csv in a report folder",
        "parquet",
        "metrics",
        "manifest",
        "prediction log",
        "audit",
    ],
)
def test_raw_data_is_never_served(api, files, settings, key):
    assert files[key].stat().st_size > 0
    rel = files[key].relative_to(settings.artifact_root).as_posix()
    answer = api.get(f"/conveyor/artifacts/{rel}")
    assert answer.status_code == 404, answer.text
    assert files[key].read_bytes() not in answer.content


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("..%2Foutside%2Fsecret.html", 400),
        ("%2E%2E/outside/summary.json", 400),
        (f"{RUN}/validation/try-1/..%2F..%2F..%2F..%2F..%2Foutside%2Fsecret.html", 400),
        (f"{RUN}/validation/try-1/%2E%2E/%2E%2E/%2E%2E/%2E%2E/%2E%2E/outside/summary.json", 400),
        (f"{RUN}/validation/try-1/data_docs/leak.html", 404),  # a symlink out of the root
    ],
)
def test_paths_cannot_leave_the_artifact_root(api, files, settings, path, status):
    """The targets exist (and have served names): only the guards refuse them. A ``..``
    segment is refused before any file system is asked (also on object stores); a local
    path must resolve inside the root."""
    outside = Path(settings.artifact_root).parent / "outside"
    assert (outside / "secret.html").is_file() and (outside / "summary.json").is_file()
    answer = api.get(f"/conveyor/artifacts/{path}")
    assert answer.status_code == status, answer.text
    assert "outside the root" not in answer.text and '"outside": true' not in answer.text


@pytest.mark.parametrize(
    ("path", "served"),
    [
        ("train_x/run/validation/try-1/data_docs/index.html", True),
        ("train_x/run/validation/try-12/data_docs/static/styles/a.css", True),
        ("train_x/run/validation/try-1/data_docs/static/a.JS", True),
        ("train_x/run/validation/try-1/summary.json", True),
        ("conveyor_monitor_x/run/drift/try-1/report/index.html", True),
        ("conveyor_monitor_x/run/drift/try-1/report/feature.png", True),
        ("conveyor_monitor_x/run/drift/try-1/report/drift.json", False),
        ("train_x/run/evaluation/try-1/metrics.json", False),
        ("train_x/run/data/try-1/x.html", False),  # the data step: never, whatever the name
        ("train_x/run/data/try-1/x.csv", False),
        ("train_x/run/validation/try-1/snapshot.parquet", False),
        ("train_x/run/validation/manifest.json", False),
        ("train_x/run/validation/trial/index.html", False),
        ("predictions/x/date=2026-01-01/index.html", False),
        ("audit/x/summary.json", False),
        ("train_x/run/validation/try-1/data_docs/static/vendor/webfonts/fa-solid-900.woff2", True),
        ("train_x/run/validation/try-1/data_docs/static/fonts/a.otf", False),
        ("train_x/run/validation/try-1/data_docs/static/images/logo.svg", False),
    ],
)
def test_only_report_files_are_servable(path, served):
    assert servable(path.split("/")) is served


def test_overview_escapes_html():
    page = render_overview([{"name": "<script>x</script>", "error": "bad <b>yaml</b>"}])
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_monitoring_files_need_the_training_dag():
    from conveyor_airflow.ui_auth import access_dag_id

    assert access_dag_id("conveyor_monitor_churn") == "train_churn"
    assert access_dag_id("train_churn") == "train_churn"
    assert access_dag_id("my_own_dag") == "my_own_dag"
