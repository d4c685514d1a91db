"""Conveyor's pages and reports on a real api-server: Airflow's login, per-DAG read access,
no raw data, and the audit trail's "by" taken from the login.

Two api-servers: the session's (SimpleAuthManager, as in the demo) and, for this module
only, one with the FAB auth manager (``apache-airflow-providers-fab``, a dev dependency),
whose roles can grant read on one DAG and not another, which SimpleAuthManager cannot.
It shares the session's artifact root, pipelines and MLflow store, has its own metadata DB
and runs only the api-server (nothing here needs a scheduler).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi.routing import APIRoute

from conveyor.registry import audit
from conveyor.registry.models import COMPLETE_TAG, PRODUCTION
from conveyor.settings import Settings
from conveyor_airflow.ui_app import URL_PREFIX
from conveyor_airflow.ui_app import app as conveyor_app
from conveyor_runtime.airflow_api import AirflowClient
from conveyor_runtime.processes import free_port
from conveyor_runtime.supervisor import AirflowSupervisor

pytestmark = pytest.mark.system

RUN = "manual__2026-02-03T00_00_00_00_00"
READABLE, HIDDEN = "breast_cancer", "diabetes"
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
#: FAB users: a role that may read train_breast_cancer only, and FAB's own Admin role.
FAB_SETUP = """
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
with get_application_builder() as ab:
    sm = ab.sm
    role = sm.add_role("conveyor_bc_reader")
    sm.add_permission_to_role(role, sm.create_permission("can_read", "DAG:train_breast_cancer"))
    sm.add_user("reader", "Rea", "Der", "reader@example.com", role, password="reader-pw")
    sm.add_user("boss", "Bo", "Ss", "boss@example.com", sm.find_role("Admin"), password="boss-pw")
"""


def report_paths(pipeline: str) -> dict[str, str]:
    """Artifact paths (relative to the root) of one report per kind, and of raw data."""
    train, monitor = f"train_{pipeline}/{RUN}", f"conveyor_monitor_{pipeline}/{RUN}"
    return {
        "data docs": f"{train}/validation/try-1/data_docs/index.html",
        "summary": f"{train}/validation/try-1/summary.json",
        "drift report": f"{monitor}/drift/try-1/report/index.html",
        "csv": f"{train}/data/try-1/{pipeline}.csv",
        "parquet": f"{train}/validation/try-1/snapshot.parquet",
        "prediction log": f"predictions/{pipeline}/date=2026-02-03/part-0.jsonl",
    }


@pytest.fixture(scope="module")
def artifacts(settings: Settings) -> Path:
    """Reports and real raw data (a CSV, a parquet, a prediction log) of both pipelines, and
    a file with a served name just outside the artifact root."""
    root = Path(settings.artifact_root)
    frame = pd.DataFrame({"mean radius": [14.1, 20.6], "target": [0, 1]})
    for pipeline in (READABLE, HIDDEN):
        paths = {k: root / v for k, v in report_paths(pipeline).items()}
        for path in paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        paths["data docs"].write_text(f"<html><body>Expectations of {pipeline}</body></html>")
        paths["summary"].write_text('{"success": true}')
        paths["drift report"].write_text(f"<html><body>Drift of {pipeline}</body></html>")
        frame.to_csv(paths["csv"], index=False)
        frame.to_parquet(paths["parquet"])
        paths["prediction log"].write_text('{"inputs": [{"mean radius": 14.1}]}\n')
    (root.parent / "index.html").write_text("<p>outside the artifact root</p>")
    return root


def conveyor_urls() -> list[tuple[str, str]]:
    """(method, URL) of every route of the app's own route table, path parameters filled."""
    sample = report_paths(READABLE)["data docs"]
    return [
        (method, URL_PREFIX + route.path.replace("{path:path}", sample))
        for route in conveyor_app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods - {"HEAD"})
    ]


def check_login_required(base: str) -> dict[str, tuple[int, int]]:
    """Every route anonymously: (JSON status, browser status) per URL; asserts the redirect."""
    seen = {}
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as anonymous:
        for method, url in conveyor_urls():
            api = anonymous.request(method, url)
            browser = anonymous.request(method, url, headers={"Accept": "text/html"})
            seen[url] = (api.status_code, browser.status_code)
            assert api.status_code == 401, (url, api.text)
            assert browser.status_code == 303, (url, browser.text)
            location = browser.headers["location"]
            assert location.startswith("/api/v2/auth/login?next=%2Fconveyor"), location
            # Airflow's own redirector then leads to the auth manager's login page
            login = anonymous.get(location, follow_redirects=True)
            assert login.status_code == 200 and "/auth/" in str(login.url), login.url
    assert len(seen) >= 3
    return seen


def get(base: str, path: str, token: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=60, trust_env=False) as http:
        return http.get(path, headers={"Authorization": f"Bearer {token}"})


# -- the session's api-server: SimpleAuthManager ----------------------------------------


def test_anonymous_requests_to_every_route_need_the_login(airflow_server):
    _, client = airflow_server
    print(f"\n[simple auth, anonymous] {check_login_required(client.url)}")


def test_logged_in_user_sees_pages_and_reports_but_no_raw_data(airflow_server, artifacts):
    _, client = airflow_server
    token = client.token()
    overview = get(client.url, "/conveyor/", token)
    assert overview.status_code == 200
    assert f"<h2>{READABLE}</h2>" in overview.text and f"<h2>{HIDDEN}</h2>" in overview.text
    statuses = {}
    for kind, rel in report_paths(READABLE).items():
        answer = get(client.url, f"/conveyor/artifacts/{rel}", token)
        statuses[kind] = answer.status_code
        raw = (artifacts / rel).read_bytes()
        assert (raw in answer.content) is (answer.status_code == 200)
    # The browser's way: the UI's _token cookie instead of a bearer header.
    with httpx.Client(base_url=client.url, timeout=60, trust_env=False) as browser:
        browser.cookies.set("_token", token)
        cookie = browser.get(f"/conveyor/artifacts/{report_paths(READABLE)['data docs']}")
        assert cookie.status_code == 200 and "Expectations of" in cookie.text
    print(f"\n[simple auth, admin] {statuses}")
    assert statuses == {
        "data docs": 200,
        "summary": 200,
        "drift report": 200,
        "csv": 404,
        "parquet": 404,
        "prediction log": 404,
    }


def test_paths_out_of_the_root_are_refused(airflow_server, artifacts):
    _, client = airflow_server
    assert (artifacts.parent / "index.html").is_file()
    token = client.token()
    for path in (
        "%2E%2E/index.html",
        f"train_{READABLE}/{RUN}/validation/try-1/%2E%2E/%2E%2E/%2E%2E/%2E%2E/index.html",
    ):
        answer = get(client.url, f"/conveyor/artifacts/{path}", token)
        assert answer.status_code == 400, (path, answer.text)
        assert "outside the artifact root" not in answer.text


def test_rollback_triggered_by_a_user_is_audited_as_that_user(airflow_server, settings):
    """The rollback DAG, triggered over REST by the logged-in admin (what the UI's trigger
    button does): the audit record's ``user`` is ``admin``, not ``airflow:<dag_id>``."""
    from conveyor.registry import tracking

    _, client = airflow_server
    mlflow = tracking.configure(settings)
    name = HIDDEN
    if not mlflow.search_registered_models(f"name = '{name}'"):
        mlflow.create_registered_model(name)
    versions = []
    for label in ("first", "second"):
        mv = mlflow.create_model_version(
            name, source=str(settings.home / "no-model"), tags={COMPLETE_TAG: "true"}
        )
        versions.append(str(mv.version))
        mlflow.set_registered_model_alias(name, PRODUCTION, str(mv.version))
        audit.record_event(
            settings.artifact_root,
            model=name,
            action="promote",
            from_version=versions[-2] if len(versions) > 1 else None,
            to_version=str(mv.version),
            reason=f"{label} (seeded by test_ui_auth)",
            user=audit.cli_actor(),
        )
    # not paused at creation: a REST trigger runs without anyone unpausing it first
    assert client.wait_for_dag("conveyor_rollback", timeout=180)["is_paused"] is False
    run_id = client.trigger(
        "conveyor_rollback",
        conf={"pipeline": name, "version": versions[0], "reason": "ui auth test"},
    )
    result = client.wait_for_run("conveyor_rollback", run_id, timeout=300)
    assert str(result.state) == "success", result.states
    # a manual rollback pins production: the last two records are the rollback and the pin
    event = [e for e in audit.list_events(settings.artifact_root, name) if e.action != "pin"][-1]
    assert (event.action, event.from_version, event.to_version, event.run_id) == (
        "rollback",
        versions[1],
        versions[0],
        run_id,
    )
    assert event.user == "admin"
    assert str(mlflow.get_model_version_by_alias(name, PRODUCTION).version) == versions[0]


# -- an api-server with the FAB auth manager: per-DAG read access ---------------------------


@pytest.fixture(scope="module")
def fab_server(settings: Settings, tmp_path_factory):
    """(url, clients by user) of an api-server with the FAB auth manager; stopped afterwards."""
    started = time.monotonic()
    home = tmp_path_factory.mktemp("fab")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_HOME", "AIRFLOW__DATABASE__", "AIRFLOW__CORE__SIMPLE"))
    }
    env.update(
        {
            "CONVEYOR_HOME": str(home / "conveyor"),  # its own supervisor state and secrets
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'fab.db'}",
            "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
            # the session's locations: the same reports, pipelines and registry
            "CONVEYOR_ARTIFACT_ROOT": settings.artifact_root,
            "CONVEYOR_PIPELINES_DIR": str(settings.pipelines_dir),
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        }
    )
    (home / "airflow").mkdir()
    airflow = str(Path(sys.executable).with_name("airflow"))
    for cmd in ([airflow, "db", "migrate"], [sys.executable, "-c", FAB_SETUP]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (
            f"{cmd[1:]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    supervisor = AirflowSupervisor(Settings.from_env(env), base_env=env)
    state = supervisor.start(components=("api-server",), port=free_port(), timeout=240)
    clients = {
        user: AirflowClient(state["url"], user, password)
        for user, password in (("reader", "reader-pw"), ("boss", "boss-pw"))
    }
    print(f"\n[fab_server] up in {time.monotonic() - started:.1f} s at {state['url']}")
    try:
        yield state["url"], clients
    finally:
        for client in clients.values():
            client.close()
        supervisor.stop(timeout=20)


def test_fab_anonymous_requests_need_the_login(fab_server):
    url, _ = fab_server
    print(f"\n[fab, anonymous] {check_login_required(url)}")


def test_fab_user_without_read_on_the_dag_is_refused(fab_server, artifacts):
    url, clients = fab_server
    seen: dict[str, dict[str, int]] = {}
    for user, client in clients.items():
        token = client.token()
        names = [e["name"] for e in get(url, "/conveyor/api/pipelines", token).json()]
        page = get(url, "/conveyor/", token)
        assert page.status_code == 200
        seen[f"{user} overview"] = {"pipelines": len(names)}
        if user == "reader":  # may read train_breast_cancer only
            assert names == [READABLE]
            assert f"<h2>{READABLE}</h2>" in page.text and f"<h2>{HIDDEN}</h2>" not in page.text
        else:
            assert {READABLE, HIDDEN} <= set(names)
        for pipeline in (READABLE, HIDDEN):
            statuses = {
                kind: get(url, f"/conveyor/artifacts/{rel}", token).status_code
                for kind, rel in report_paths(pipeline).items()
            }
            seen[f"{user} {pipeline}"] = statuses
            reports = {k: v for k, v in statuses.items() if k in ("data docs", "summary")}
            if user == "reader" and pipeline == HIDDEN:
                # every file of the pipeline, its monitoring DAG's and raw data alike
                assert set(statuses.values()) == {403}, statuses
            else:
                assert set(reports.values()) == {200}, statuses
                assert statuses["drift report"] == 200, statuses
                assert statuses["csv"] == statuses["parquet"] == 404, statuses
    print(f"\n[fab] {seen}")
