"""Notifications: a JSON POST to a webhook (Slack-, Teams- or any HTTP-compatible).

Kept to the standard library on purpose: a notifier runs in failure callbacks, where a
missing optional dependency would hide the very failure it reports.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger(__name__)


def post_webhook(url: str, payload: dict[str, Any], *, timeout: float = 10.0) -> int:
    """POST ``payload`` as JSON to ``url``; returns the HTTP status.

    The payload has a ``text`` field (what Slack and Teams incoming webhooks display) next
    to the structured fields, so the same call works for a chat hook and a custom receiver.

    Raises
    ------
    OSError
        When the hook cannot be reached or answers with an error status.
    """
    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        raise OSError(f"webhook answered HTTP {exc.code}") from exc
    except urllib.error.URLError as exc:
        raise OSError(f"webhook unreachable: {exc.reason}") from exc
