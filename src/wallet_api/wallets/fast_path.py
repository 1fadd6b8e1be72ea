"""The wallets' fast paths (`core/fast_path.py`): `POST /api/v1/wallets/{wallet_uuid}/operation`,
the request a hot wallet receives thousands of times a second, and `GET
/api/v1/wallets/{wallet_uuid}`, the balance read, answered with the routes' bodies and
problem documents without FastAPI's routing. The routes in `wallets/router.py` stay the
documented endpoints and serve every other form (a keyed operation, a UUID written as 32
hex digits)."""

from __future__ import annotations

from uuid import UUID

from fastapi import Response
from starlette.types import Scope

from wallet_api.auth.gate import key_id_of, owner_of, require_deposit
from wallet_api.core.fast_path import FastRoute
from wallet_api.core.fields import metadata_text
from wallet_api.core.idempotency import Replay
from wallet_api.core.requests import parse_json_body
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.operations import Operation
from wallet_api.wallets.router import OPERATION_PATH, WALLET_PATH, router
from wallet_api.wallets.schemas import OperationRequest, balance_body, operation_body
from wallet_api.wallets.service import WalletService


async def apply_operation(scope: Scope, body: bytes, ids: tuple[UUID, ...]) -> Response:
    (wallet_id,) = ids
    request = parse_json_body(body, OperationRequest)
    if request.operation is OperationType.DEPOSIT:
        require_deposit(scope)
    service: WalletService = scope["app"].state.wallet_service
    outcome = await service.apply_operation(
        wallet_id,
        Operation(
            kind=request.operation,
            amount=request.amount,
            api_key_id=key_id_of(scope),
            metadata=metadata_text(request.metadata),
        ),
        owner=owner_of(scope),
    )
    assert not isinstance(outcome, Replay)  # only a keyed request can be a replay
    return Response(operation_body(*outcome), media_type="application/json")


async def get_balance(scope: Scope, body: bytes, ids: tuple[UUID, ...]) -> Response:
    (wallet_id,) = ids
    service: WalletService = scope["app"].state.wallet_service
    balance, currency = await service.get_balance(wallet_id, owner=owner_of(scope))
    return Response(balance_body(balance, currency), media_type="application/json")


def fast_routes() -> list[FastRoute]:
    return [
        FastRoute.of(router, "POST", OPERATION_PATH, apply_operation),
        FastRoute.of(router, "GET", WALLET_PATH, get_balance),
    ]
