"""Retraining on a message: ``triggers.message`` in a pipeline YAML.

:func:`message_trigger` builds Airflow's common-messaging ``MessageQueueTrigger`` (Redis
pub/sub through the redis provider's ``redis+pubsub`` scheme; SQS or Kafka with their
providers) for the pipeline's data asset. Its module initialises every provider's queues on
import, so it is imported only for pipelines that configure a message trigger.

:func:`payload_from_message` maps the event a queue trigger emits (for Redis:
``{"type": "message", "channel": ..., "data": "<body>"}``) onto the payload shape of the DVC
watcher that :func:`conveyor_airflow.operators.pull.event_payload` reads. The body is JSON
``{"reason": "labels for week 47 delivered", "rev": "<optional>", "force": false}``; a
body that is not a JSON object is taken as the reason. No ``rev``: the tracked branch's
head. The unchanged-input skip still applies unless ``force`` is true.
"""

from __future__ import annotations

import json
from typing import Any

from conveyor.errors import ConfigError


def message_trigger(pipeline: str, spec: dict[str, Any]) -> Any:
    """A ``MessageQueueTrigger`` for ``spec`` (``scheme`` + the provider's arguments)."""
    try:
        from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
    except ImportError as exc:
        raise ConfigError(
            f"Pipeline {pipeline!r} sets triggers.message, which needs Airflow's "
            "common-messaging provider (and the queue's own, e.g. the redis provider): "
            f"pip install 'conveyor-mlops[messaging]' ({exc})"
        ) from None
    args = dict(spec)
    scheme = args.pop("scheme")
    return MessageQueueTrigger(scheme=scheme, **args)


def _body(payload: dict[str, Any]) -> Any:
    if "data" in payload:  # Redis pub/sub
        return payload["data"]
    batch = payload.get("message_batch")  # SQS
    if isinstance(batch, list) and batch and isinstance(batch[-1], dict):
        return batch[-1].get("Body")
    return payload.get("value", payload.get("body"))  # Kafka-like shapes


def is_message_payload(payload: Any) -> bool:
    return isinstance(payload, dict) and any(
        key in payload for key in ("data", "message_batch", "value", "body")
    )


def payload_from_message(payload: dict[str, Any]) -> dict[str, Any]:
    """The DVC-watcher-shaped payload (``status``, ``rev``, ``reason``, ``force``) of a
    message event."""
    body = _body(payload)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    parsed: Any = body
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {"reason": body}
    if not isinstance(parsed, dict):
        parsed = {"reason": str(parsed)}
    where = payload.get("channel") or payload.get("topic") or payload.get("queue")
    rev = parsed.get("rev")
    force = parsed.get("force", False)
    return {
        "status": "message",
        "rev": str(rev).strip() if rev not in (None, "") else None,
        "reason": str(parsed.get("reason") or f"message on {where or 'the queue'}"),
        "force": force is True or str(force).lower() in ("true", "1", "yes"),
        "channel": where,
    }
