"""The fast paths: the hot requests served without FastAPI's routing.

The writes a client sends thousands of times a second (an operation, a transfer, a hold
and its capture) and the balance read cost more CPU in FastAPI's per-request machinery
(routing, parameter and dependency resolution, the route's exception layers) than in the
work itself: measured here, about 750 µs of worker CPU per operation through the route
against about 350 µs through a fast path when it was introduced (docs/PERFORMANCE.md).

Each domain package lists the requests it serves this way (`FastRoute`s, in its
`fast_path.py`): a method and a path whose `{name}` parts are canonical UUIDs, the FastAPI
route it stands in for, and a handler that parses the body with the route's parser, calls
the same service method and renders the same answer. `FastRoutes` matches a request to one;
the front door (`core/front_door.py`) serves it there, after the request id, the body
limit and the API key gate, and answers an `AppError` or a database failure with the same
problem document as the route, through the application's one error mapping
(`core.errors.exception_response`).

A request with a query string goes on to FastAPI (`GET /api/v1/wallets/{id}?at=` is a
balance at a point in time, not the balance now). A POST is served only in its plain
form: a JSON content type and no `Idempotency-Key`.
Everything else (a keyed request, another content type, a UUID in another form, any other
route) goes on to FastAPI unchanged: the routes stay the documented endpoints (OpenAPI)
and serve those requests. `tests/test_fast_path.py` sends every scenario both ways.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

from fastapi import APIRouter, Response
from starlette.types import Scope

from wallet_api.core.fields import CANONICAL_UUID, parse_uuid
from wallet_api.core.requests import is_plain_json_post

#: A handler: the request's scope, its body (empty for a GET) and the UUIDs of its path.
Handler = Callable[[Scope, bytes, tuple[UUID, ...]], Awaitable[Response]]

_CANONICAL_UUID = f"({CANONICAL_UUID})"
_PARAMETER = re.compile(r"\{[a-z_]+\}")


@dataclass(frozen=True, slots=True)
class FastRoute:
    """A request served by a fast path: `method` and `path` (a route's path, each `{name}`
    a canonical UUID), the FastAPI route it stands in for (metrics and the access log
    label with it), and its handler."""

    method: str
    path: str
    route: object
    handler: Handler

    @classmethod
    def of(cls, router: APIRouter, method: str, path: str, handler: Handler) -> FastRoute:
        """The fast route for `router`'s route of `method` and `path`."""
        route = next(
            candidate
            for candidate in router.routes
            if getattr(candidate, "path", None) == path
            and method in getattr(candidate, "methods", ())
        )
        return cls(method, path, route, handler)


class FastRoutes:
    """The fast route a request is served by, if any."""

    def __init__(self, routes: Sequence[FastRoute]) -> None:
        self._exact: dict[tuple[str, str], FastRoute] = {}
        self._patterns: dict[str, list[tuple[re.Pattern[str], FastRoute]]] = {}
        for route in routes:
            if _PARAMETER.search(route.path) is None:
                self._exact[route.method, route.path] = route
            else:
                pattern = re.compile(_PARAMETER.sub(_CANONICAL_UUID, route.path))
                self._patterns.setdefault(route.method, []).append((pattern, route))

    def match(self, scope: Scope) -> tuple[FastRoute, tuple[UUID, ...]] | None:
        """The route this path serves the request with, and its path's UUIDs; else None."""
        method, path = scope["method"], scope["path"]
        found = self._exact.get((method, path))
        ids: tuple[UUID, ...] = ()
        if found is None:
            for pattern, route in self._patterns.get(method, ()):
                match = pattern.fullmatch(path)
                if match is not None:
                    found, ids = route, tuple(parse_uuid(text) for text in match.groups())
                    break
            else:
                return None
        if scope.get("query_string") or (method == "POST" and not is_plain_json_post(scope)):
            return None
        return found, ids
