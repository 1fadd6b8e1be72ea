"""The transfers' fast path (`core/fast_path.py`): a plain `POST /api/v1/transfers` answered
with the route's body, headers and problem documents without FastAPI's routing. The route
in `transfers/router.py` stays the documented endpoint and serves a keyed request."""

from __future__ import annotations

from uuid import UUID

from fastapi import Response
from starlette.types import Scope

from wallet_api.auth.gate import key_id_of, owner_of
from wallet_api.core.fast_path import FastRoute
from wallet_api.core.idempotency import Replay
from wallet_api.core.requests import parse_json_body
from wallet_api.transfers.router import TRANSFERS_PATH, created_response, router
from wallet_api.transfers.schemas import TransferRequest
from wallet_api.transfers.service import TransferService


async def transfer(scope: Scope, body: bytes, ids: tuple[UUID, ...]) -> Response:
    request = parse_json_body(body, TransferRequest)
    service: TransferService = scope["app"].state.transfer_service
    result = await service.transfer(
        request,
        owner=owner_of(scope),
        api_key_id=key_id_of(scope),
        idempotency_key=None,
        fingerprint="",
    )
    assert not isinstance(result, Replay)  # only a keyed request can be a replay
    return created_response(*result)


def fast_routes() -> list[FastRoute]:
    return [FastRoute.of(router, "POST", TRANSFERS_PATH, transfer)]
