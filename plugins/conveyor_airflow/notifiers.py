"""ConveyorNotifier: log every event, and POST it to a webhook when one is configured.

The webhook URL comes from an Airflow Connection (default id ``conveyor_webhook``), never
from code: its ``host`` holds the full URL (``https://hooks.slack.com/...``), or its
``extra`` has ``{"url": ...}``. Without that connection the notifier only logs, which is
the default on a laptop. Usable anywhere Airflow takes a notifier::

    on_failure_callback=ConveyorNotifier(event="task_failed")
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

#: Connection id that holds the webhook URL.
WEBHOOK_CONN_ID = "conveyor_webhook"


def webhook_url(conn_id: str = WEBHOOK_CONN_ID) -> str | None:
    """The webhook URL of connection ``conn_id``, or None when it is not defined."""
    from airflow.sdk import Connection

    from conveyor_airflow.compat import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    extra = conn.extra_dejson or {}
    if extra.get("url"):
        return str(extra["url"])
    host = conn.host or ""
    if host.startswith(("http://", "https://")):
        return host
    if not host:
        return None
    scheme = "https" if conn.conn_type == "https" else "http"
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema.lstrip('/')}" if conn.schema else ""
    return f"{scheme}://{host}{port}{path}"


class ConveyorNotifier(BaseNotifier):
    """Notify about a Conveyor event (a failed task, drift).

    :param event: Short event name (``task_failed``, ``drift``). (templated)
    :param message: Human-readable text. (templated)
    :param details: Extra JSON-safe fields sent with the event.
    :param conn_id: Connection holding the webhook URL.
    """

    template_fields: Sequence[str] = ("event", "message")

    def __init__(
        self,
        *,
        event: str = "task_failed",
        message: str = "",
        details: dict[str, Any] | None = None,
        conn_id: str = WEBHOOK_CONN_ID,
    ) -> None:
        super().__init__()
        self.event = event
        self.message = message
        self.details = details or {}
        self.conn_id = conn_id

    def payload(self, context: Context) -> dict[str, Any]:
        """What is sent: event, where it happened, the message (``text``) and details."""
        ti = context.get("ti") or context.get("task_instance")
        dag = context.get("dag")
        exception = context.get("exception")
        message = self.message or (f"{type(exception).__name__}: {exception}" if exception else "")
        where = "/".join(
            str(x)
            for x in (
                getattr(dag, "dag_id", None),
                context.get("run_id"),
                getattr(ti, "task_id", None),
            )
            if x
        )
        return {
            "text": f"[conveyor] {self.event} in {where}: {message}",
            "event": self.event,
            "dag_id": getattr(dag, "dag_id", None),
            "run_id": context.get("run_id"),
            "task_id": getattr(ti, "task_id", None),
            "try_number": getattr(ti, "try_number", None),
            "message": message,
            **self.details,
        }

    def notify(self, context: Context) -> None:
        from conveyor.monitoring.notifications import post_webhook

        payload = self.payload(context)
        log.warning("%s", payload["text"])
        url = webhook_url(self.conn_id)
        if url is None:
            log.info("No '%s' connection: notification logged only", self.conn_id)
            return
        try:
            status = post_webhook(url, payload)
            log.info("Notification sent to the '%s' webhook (HTTP %s)", self.conn_id, status)
        except OSError as exc:
            # A broken hook must not hide or replace what it reports.
            log.error("Notification to the '%s' webhook failed: %s", self.conn_id, exc)
