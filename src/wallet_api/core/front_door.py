"""The front door: the one layer every HTTP request passes first, before FastAPI.

In order, for every request:

1. its **request id**: a well-formed incoming `X-Request-ID` is kept, otherwise one is made;
   it is bound to the request's context (logs, problem documents) and echoed on the answer;
2. its **body limit**: a declared `Content-Length` over the limit (the path's own, or the
   default) is refused at once with 413; a body without one (chunked) is counted as it
   arrives and refused as soon as it passes the limit (`BodyTooLarge`, answered where the
   body is read);
3. with API keys required, the **gate** (`admit`) on `/api/` paths: who the caller is, its
   scopes, its rate limit; a refusal is answered here, and the rate-limit headers go on the
   answer;
4. the **fast routes** (`core/fast_path.py`): the plain form of the hot requests, answered
   here without FastAPI's routing and middleware; anything else goes on to FastAPI;
5. after the answer, its **metrics and access log line** (`core/metrics.record_request`).

One layer instead of one middleware for each of these: a hot request was measured passing
ten ASGI layers (Uvicorn's, Starlette's, FastAPI's and the service's own), each an
`await` and most a wrapped `send` per message; they cost about a sixth of a hot-wallet
write's CPU (docs/PERFORMANCE.md). A fast route's answer is sent by the front door itself,
straight to the server.

A fast route's exception is answered as FastAPI's layers would answer it: an `AppError`, a
database failure or an `OSError` with its problem document (`exception_response`, the one
mapping behind the application's error handlers); any other with the same 500 document,
then raised for the server to log and close the connection, as Starlette's server-error
middleware does. A request whose client left before its body was read is not answered.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from uuid import UUID

from fastapi import FastAPI, Response
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wallet_api.core.errors import ANSWERED_ERRORS, BodyTooLarge, error_response, exception_response
from wallet_api.core.fast_path import FastRoute, FastRoutes
from wallet_api.core.metrics import record_request
from wallet_api.core.request_context import REQUEST_ID_PATTERN, set_request_id
from wallet_api.core.requests import receive_body

Headers = list[tuple[bytes, bytes]]
#: Admits a request (leaving its caller in the scope) and gives the headers its answer
#: carries, or raises the refusal.
Admit = Callable[[Scope], Awaitable[Sequence[tuple[bytes, bytes]]]]

REQUEST_ID_HEADER = b"x-request-id"
_CONTENT_LENGTH = b"content-length"
#: More digits than any body limit has: a longer Content-Length is over it, unparsed.
_LENGTH_DIGITS = 18
_VALID_REQUEST_ID = re.compile(REQUEST_ID_PATTERN.encode())

# Generated ids: a random per-process prefix and a counter. Unique across processes and
# restarts without a `getrandom` system call per request (costly on virtual machines).
_PROCESS_PREFIX = os.urandom(6).hex()
_sequence = itertools.count(1)


def new_request_id() -> bytes:
    return f"{_PROCESS_PREFIX}{next(_sequence):012x}".encode()


class FrontDoor:
    """Request id, body limit, gate and fast routes in one layer before `app`; the metrics
    and access log of every request after it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Sequence[FastRoute],
        limit: int,
        limits_by_path: Mapping[str, int] | None = None,
        admit: Admit | None = None,
        guarded_prefix: str = "/",
    ) -> None:
        self.app = app
        self.routes = FastRoutes(routes)
        self.limit = limit
        self.limits_by_path = dict(limits_by_path or {})
        self.admit = admit
        self.guarded_prefix = guarded_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = None
        declared: bytes | None = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER and request_id is None:
                request_id = value if _VALID_REQUEST_ID.fullmatch(value) else new_request_id()
            elif name == _CONTENT_LENGTH and declared is None:
                declared = value
        if request_id is None:
            request_id = new_request_id()
        set_request_id(request_id.decode())
        headers: Headers = [(REQUEST_ID_HEADER, request_id)]
        status = _Status()
        try:
            await self._serve(scope, receive, send, headers, declared=declared, status=status)
        finally:
            record_request(scope, status.code, time.perf_counter() - started)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
        *,
        declared: bytes | None,
        status: _Status,
    ) -> None:
        """Answer the request, noting its status once its answer has started."""
        path = route_path(scope)
        limit = self.limits_by_path.get(path, self.limit)
        if declared is not None and (
            not declared.isdigit() or len(declared) > _LENGTH_DIGITS or int(declared) > limit
        ):
            status.code = await _answer(send, error_response(BodyTooLarge(limit)), headers)
            return
        receive = _counted(receive, limit)
        if self.admit is not None and path.startswith(self.guarded_prefix):
            try:
                headers.extend(await self.admit(scope))
            except ANSWERED_ERRORS as refusal:  # a 401, 403, 429; 503 if keys are unreadable
                status.code = await _answer(send, exception_response(refusal), headers)
                return
            except Exception as exc:
                status.code = await _answer(send, exception_response(exc), headers)
                raise
        matched = self.routes.match(scope)
        if matched is not None:
            status.code = await _serve_fast(scope, receive, send, headers, matched)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.code = message["status"]
                message["headers"] = _with_ours(message.get("headers", ()), headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def route_path(scope: Scope) -> str:
    """The path as FastAPI routes it: without the server's root path (ASGI's `path`
    includes it). The gate judges this path, so that a server run under a root path
    guards what it routes to `/api/`."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]  # as Starlette's routing reads it
    return path


class _Status:
    """A request's status once its answer has started: 500 until then (a request that
    fails before it is answered is answered 500 by the server)."""

    __slots__ = ("code",)

    def __init__(self) -> None:
        self.code = 500


async def _serve_fast(
    scope: Scope,
    receive: Receive,
    send: Send,
    headers: Headers,
    matched: tuple[FastRoute, tuple[UUID, ...]],
) -> int:
    """Serve a request its fast route matched; its status."""
    route, ids = matched
    scope["route"] = route.route  # what the metrics and the access log label it with
    try:
        body = await receive_body(receive) if route.method == "POST" else b""
        response = await route.handler(scope, body, ids)
    except ClientDisconnect:
        return 499  # gone before its body was read: nothing applied, no one to answer
    except ANSWERED_ERRORS as exc:
        response = exception_response(exc)
    except Exception as exc:
        # As Starlette's server-error middleware does for a route: the 500 document
        # (logged by `exception_response`), then the exception for the server to log.
        await _answer(send, exception_response(exc), headers)
        raise
    return await _answer(send, response, headers)


async def _answer(send: Send, response: Response, headers: Headers) -> int:
    """Send `response` with `headers` added (its own request id replaced); its status."""
    raw = _with_ours(response.raw_headers, headers)
    await send({"type": "http.response.start", "status": response.status_code, "headers": raw})
    await send({"type": "http.response.body", "body": response.body})
    return response.status_code


def _with_ours(own: Iterable[tuple[bytes, bytes]], headers: Headers) -> Headers:
    """An answer's own headers, its request id left out, then the front door's `headers`
    (the request id, the rate limit's)."""
    return [*(h for h in own if h[0] != REQUEST_ID_HEADER), *headers]


def _counted(receive: Receive, limit: int) -> Receive:
    """`receive` that raises `BodyTooLarge` once the body passes `limit` bytes (a body
    with a declared length cannot pass it; a chunked one can)."""
    received = 0

    async def counted_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)  # answered where the body is read
        return message

    return counted_receive


class FrontDoorApp(FastAPI):
    """FastAPI with a front door before its own layers: set `front_door` to a `FrontDoor`
    whose app is `behind` (FastAPI's own layers)."""

    front_door: FrontDoor | None = None

    async def behind(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's own layers: what the front door passes a request on to."""
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self  # as Starlette sets it: the fast routes read the app's state
        if self.front_door is None:
            await self.behind(scope, receive, send)
        else:
            await self.front_door(scope, receive, send)
