"""Who may see the ``/conveyor`` app: Airflow's own login and per-DAG read access.

Airflow mounts a plugin's FastAPI app as is, so the app brings its own dependencies. They
are Airflow's, never a token parser of ours: ``get_user`` of the API server (the JWT from
``Authorization: Bearer`` or the UI's ``_token`` cookie, resolved by whichever auth manager
the deployment runs: SimpleAuthManager, FAB, Keycloak...) and ``requires_access_dag`` (the
auth manager's ``is_authorized_dag``). Both are internal API of
``airflow.api_fastapi.core_api.security``, with the same names and signatures in Airflow
3.1.8 to 3.3 (``tests/compat`` exercises them on the oldest minor we support).

* No or an expired login: 401 as JSON, or a redirect to Airflow's login page when the
  client asks for HTML (a browser), which returns to the page afterwards.
* A pipeline's pages and files need read access to its training DAG ``train_<name>``
  (its monitoring DAG's files included): else 403. Files of any other DAG need read
  access to that DAG.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import HTTPException, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.responses import Response

__all__ = [
    "GetUserDep",
    "install_login_redirect",
    "may_read_dag",
    "pipeline_dag_id",
    "require_dag_read",
]


def pipeline_dag_id(name: str) -> str:
    """The DAG whose read access opens pipeline ``name``'s pages: its training DAG."""
    from conveyor_airflow.factory import training_dag_id

    return training_dag_id(name)


def access_dag_id(dag_folder: str) -> str:
    """The DAG whose read access opens the artifacts under ``{artifact_root}/{dag_folder}/``:
    the pipeline's training DAG for its monitoring DAG's files, else that DAG itself."""
    from conveyor_airflow.factory import monitor_dag_id

    prefix = monitor_dag_id("")
    if dag_folder.startswith(prefix) and len(dag_folder) > len(prefix):
        return pipeline_dag_id(dag_folder[len(prefix) :])
    return dag_folder


async def require_dag_read(request: Request, user: GetUserDep, dag_id: str) -> None:
    """Raise Airflow's 403 unless ``user`` may read DAG ``dag_id`` (Airflow's own check)."""
    check = requires_access_dag("GET", param_dag_id=dag_id)
    if inspect.iscoroutinefunction(check):
        await check(request, user)
    else:  # 3.1-3.3: synchronous, with a metadata-DB query (the DAG's team)
        await run_in_threadpool(check, request, user)


async def may_read_dag(request: Request, user: GetUserDep, dag_id: str) -> bool:
    """Whether ``user`` may read DAG ``dag_id``."""
    try:
        await require_dag_read(request, user, dag_id)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_403_FORBIDDEN:
            return False
        raise
    return True


def wants_html(request: Request) -> bool:
    """A browser navigating (``Accept: text/html``), not an API client."""
    return "text/html" in request.headers.get("accept", "").lower()


def login_url(request: Request) -> str:
    """Airflow's login redirector (``/api/v2/auth/login``, which picks the auth manager's
    page and checks ``next``), coming back to this request's page after the login."""
    root = request.base_url.path.rstrip("/")  # the API server's root, not this app's
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{root}/api/v2/auth/login?{urlencode({'next': target})}"


async def _login_or_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_401_UNAUTHORIZED and wants_html(request):
        return RedirectResponse(login_url(request), status_code=status.HTTP_303_SEE_OTHER)
    return await http_exception_handler(request, exc)


def install_login_redirect(app: FastAPI) -> None:
    """Answer a browser's unauthenticated request with a redirect to the login page."""
    app.add_exception_handler(StarletteHTTPException, _login_or_error)
