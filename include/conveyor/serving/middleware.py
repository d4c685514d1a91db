"""Pure-ASGI body size limit: 413 before a large body is read or parsed.

Checked twice: on the ``Content-Length`` header, before reading anything, and on the
bytes actually received, which also covers chunked uploads that send no length. A pure
ASGI middleware rather than ``BaseHTTPMiddleware``, which would add a task and a copy of
every request to the hot path.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from conveyor.serving.schema import RequestRejected

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(RequestRejected):
    """The request body is larger than the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"Request body is larger than {limit} bytes: send smaller batches "
            "(or raise CONVEYOR_SERVE_MAX_BODY_BYTES)",
        )


class BodySizeLimit:
    """Reject request bodies over ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _reply(send, RequestRejected(400, "Invalid Content-Length header"))
                    return
                if length > limit:
                    await _reply(send, BodyTooLarge(limit))
                    return
                break
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:  # raised where no exception handler saw it
            if started:
                raise
            await _reply(send, exc)


async def _reply(send: Send, error: RequestRejected) -> None:
    body = json.dumps(error.payload()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
