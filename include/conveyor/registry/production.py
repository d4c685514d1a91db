"""Read the production version's lineage tags without importing MLflow.

The cache check and the data watcher run often and must be cheap: importing MLflow costs
~4 s, more than the whole check should take. With a tracking *server* the lookup is one
REST call (``GET /api/2.0/mlflow/registered-models/alias``). With the embedded SQLite
store there is no server, so the lookup reads the store read-only with ``sqlite3``; if
that ever fails (e.g. a future MLflow schema), it falls back to the MLflow client.
"""

from __future__ import annotations

import logging
import sqlite3

from conveyor.errors import RegistryError

log = logging.getLogger(__name__)

PRODUCTION = "production"
COMPLETE_TAG = "conveyor.complete"


def _via_rest(tracking_uri: str, name: str, alias: str, timeout: float) -> dict[str, str] | None:
    import httpx

    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/registered-models/alias"
    try:
        response = httpx.get(url, params={"name": name, "alias": alias}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise RegistryError(
            f"MLflow at {tracking_uri} is unreachable ({exc}); is the server running?"
        ) from exc
    if response.status_code == 404 or (
        response.status_code == 400 and "RESOURCE_DOES_NOT_EXIST" in response.text
    ):
        return None
    if response.status_code != 200:
        raise RegistryError(f"MLflow {url} answered {response.status_code}: {response.text[:300]}")
    version = response.json()["model_version"]
    tags = {t["key"]: t.get("value", "") for t in version.get("tags", [])}
    return {**tags, "version": str(version["version"])}


def _via_sqlite(path: str, name: str, alias: str) -> dict[str, str] | None:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        row = conn.execute(
            "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
            (name, alias),
        ).fetchone()
        if row is None:
            return None
        tags = dict(
            conn.execute(
                "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
                (name, row[0]),
            ).fetchall()
        )
    return {**tags, "version": str(row[0])}


def _via_client(tracking_uri: str, name: str, alias: str) -> dict[str, str] | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        mv = MlflowClient(
            tracking_uri=tracking_uri, registry_uri=tracking_uri
        ).get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return {**mv.tags, "version": str(mv.version)}


def alias_tags(
    tracking_uri: str, name: str, alias: str = PRODUCTION, *, timeout: float = 10.0
) -> dict[str, str] | None:
    """Tags (plus ``version``) of the complete version ``alias`` points to, or None."""
    if tracking_uri.startswith(("http://", "https://")):
        tags = _via_rest(tracking_uri, name, alias, timeout)
    elif tracking_uri.startswith("sqlite:///"):
        path = tracking_uri.removeprefix("sqlite:///")
        try:
            tags = _via_sqlite(path, name, alias)
        except sqlite3.Error as exc:
            log.info("Direct read of %s failed (%s); asking the MLflow client", path, exc)
            tags = _via_client(tracking_uri, name, alias)
    else:
        tags = _via_client(tracking_uri, name, alias)
    if tags is not None and tags.get(COMPLETE_TAG) != "true":
        return None
    return tags
