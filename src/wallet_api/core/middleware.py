"""Pure ASGI middleware: cheap enough for the hot path, unlike `BaseHTTPMiddleware`."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wallet_api.core.errors import BodyTooLarge, error_response
from wallet_api.core.request_context import REQUEST_ID_PATTERN, set_request_id

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(REQUEST_ID_PATTERN.encode())

# Generated ids: a random per-process prefix and a counter. Unique across processes and
# restarts without a `getrandom` system call per request (costly on virtual machines).
_PROCESS_PREFIX = os.urandom(6).hex()
_sequence = itertools.count(1)


def new_request_id() -> bytes:
    return f"{_PROCESS_PREFIX}{next(_sequence):012x}".encode()


class RequestIdMiddleware:
    """Keep a well-formed incoming `X-Request-ID` or make one; echo it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                if _VALID_REQUEST_ID.fullmatch(value):
                    request_id = value
                break
        if request_id is None:
            request_id = new_request_id()
        set_request_id(request_id.decode())

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0] != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_request_id)


class BodyLimitMiddleware:
    """Refuse request bodies over `limit` bytes (or their path's own limit) with 413, before
    reading them in full.

    A declared Content-Length over the limit is refused at once; a body without one
    (chunked) is counted as it arrives and refused as soon as it passes the limit.
    """

    def __init__(
        self, app: ASGIApp, *, limit: int, limits_by_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.limits_by_path = dict(limits_by_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits_by_path.get(scope["path"], self.limit)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await error_response(BodyTooLarge(limit))(scope, receive, send)
                    return
                break
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)  # rendered by the error handlers
            return message

        await self.app(scope, counted_receive, send)
