"""The front door's gate decision under a root path, in the process (no server): a server
run with an ASGI `root_path` routes `/prefix/api/...` to the `/api/` routes, so the gate
must judge that path as routed (tests/test_auth.py tests the gate itself over HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from wallet_api.core.front_door import FrontDoor, route_path


def passes_the_gate(path: str, root_path: str) -> bool:
    """Whether a GET of `path` under `root_path` reaches the application ungated."""
    admitted: list[str] = []
    reached: list[str] = []

    async def admit(scope: Scope) -> Sequence[tuple[bytes, bytes]]:
        admitted.append(scope["path"])
        return []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    door = FrontDoor(app, routes=[], limit=1024, admit=admit, guarded_prefix="/api/")
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": root_path,
        "query_string": b"",
        "headers": [],
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: Message) -> None:
        return None

    asyncio.run(door(scope, receive, send))
    assert reached == [path]
    return not admitted


@pytest.mark.parametrize(
    ("path", "root_path"),
    [("/api/v1/wallets/x", ""), ("/prefix/api/v1/wallets/x", "/prefix")],
)
def test_an_api_path_is_gated_with_or_without_a_root_path(path: str, root_path: str) -> None:
    assert not passes_the_gate(path, root_path)


@pytest.mark.parametrize(
    ("path", "root_path"),
    [("/health/live", ""), ("/prefix/health/live", "/prefix"), ("/prefixapi/v1/x", "/prefix")],
)
def test_other_paths_pass_ungated(path: str, root_path: str) -> None:
    assert passes_the_gate(path, root_path)


def test_the_routed_path_is_starlettes() -> None:
    assert route_path({"path": "/p/api/x", "root_path": "/p"}) == "/api/x"
    assert route_path({"path": "/p", "root_path": "/p"}) == ""
    assert route_path({"path": "/pq/api", "root_path": "/p"}) == "/pq/api"
    assert route_path({"path": "/api/x", "root_path": ""}) == "/api/x"
