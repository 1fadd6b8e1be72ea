"""The holds' fast paths (`core/fast_path.py`): a plain `POST /api/v1/holds` and `POST
/api/v1/holds/{hold_id}/capture`, a marketplace's authorize-then-capture pair, answered
with the routes' bodies, headers and problem documents without FastAPI's routing. The
routes in `holds/router.py` stay the documented endpoints and serve every other form (a
keyed request, a UUID written as 32 hex digits)."""

from __future__ import annotations

from uuid import UUID

from fastapi import Response
from starlette.types import Scope

from wallet_api.auth.gate import key_id_of, owner_of
from wallet_api.core.fast_path import FastRoute
from wallet_api.core.idempotency import Replay
from wallet_api.core.requests import parse_json_body
from wallet_api.holds.router import CAPTURE_PATH, HOLDS_PATH, created_response, router
from wallet_api.holds.schemas import CaptureRequest, HoldRequest
from wallet_api.holds.service import HoldService


async def create_hold(scope: Scope, body: bytes, ids: tuple[UUID, ...]) -> Response:
    request = parse_json_body(body, HoldRequest)
    service: HoldService = scope["app"].state.hold_service
    result = await service.create(
        request,
        owner=owner_of(scope),
        api_key_id=key_id_of(scope),
        idempotency_key=None,
        fingerprint="",
    )
    assert not isinstance(result, Replay)  # only a keyed request can be a replay
    return created_response(*result)


async def capture_hold(scope: Scope, body: bytes, ids: tuple[UUID, ...]) -> Response:
    (hold_id,) = ids
    request = parse_json_body(body, CaptureRequest)
    service: HoldService = scope["app"].state.hold_service
    result = await service.capture(
        hold_id,
        request,
        owner=owner_of(scope),
        api_key_id=key_id_of(scope),
        idempotency_key=None,
        fingerprint="",
    )
    assert not isinstance(result, Replay)  # only a keyed request can be a replay
    return Response(result, media_type="application/json")


def fast_routes() -> list[FastRoute]:
    return [
        FastRoute.of(router, "POST", HOLDS_PATH, create_hold),
        FastRoute.of(router, "POST", CAPTURE_PATH, capture_hold),
    ]
