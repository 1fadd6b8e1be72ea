"""HTTP endpoints for wallets: parse, call the service once, render."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response, status
from starlette.exceptions import HTTPException

from wallet_api.core.responses import json_number, json_response
from wallet_api.wallets.dependencies import OperationRequestDep, WalletServiceDep
from wallet_api.wallets.schemas import (
    OperationRequest,
    OperationResult,
    WalletBalance,
    WalletCreated,
)
from wallet_api.wallets.service import Operation

router = APIRouter(prefix="/api/v1/wallets", tags=["wallets"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "wallet_not_found", **_PROBLEM}}
_INVALID: dict[int | str, dict[str, Any]] = {422: {"description": "validation_error", **_PROBLEM}}


@router.post(
    "/create_wallet",
    status_code=status.HTTP_201_CREATED,
    response_model=WalletCreated,
)
async def create_wallet(service: WalletServiceDep) -> Response:
    """Create a wallet with a zero balance."""
    wallet_id = await service.create_wallet()
    return json_response({"wallet_uuid": str(wallet_id)}, status_code=status.HTTP_201_CREATED)


@router.api_route(
    "/create_wallet", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def create_wallet_other_methods() -> None:
    # Without this, GET /create_wallet would match /{wallet_uuid} and fail as a bad UUID.
    raise HTTPException(status.HTTP_405_METHOD_NOT_ALLOWED, headers={"Allow": "POST"})


@router.get(
    "/{wallet_uuid}",
    response_model=WalletBalance,
    responses={**_NOT_FOUND, **_INVALID},
)
async def get_wallet(wallet_uuid: UUID, service: WalletServiceDep) -> Response:
    """Read a wallet's current balance."""
    balance = await service.get_balance(wallet_uuid)
    return json_response({"balance": json_number(balance)})


@router.post(
    "/{wallet_uuid}/operation",
    response_model=OperationResult,
    responses={
        400: {"description": "insufficient_funds or balance_limit_exceeded", **_PROBLEM},
        **_NOT_FOUND,
        **_INVALID,
        503: {"description": "wallet_busy or database_unavailable", **_PROBLEM},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": OperationRequest.model_json_schema()}},
        }
    },
)
async def operate(
    wallet_uuid: UUID, request: OperationRequestDep, service: WalletServiceDep
) -> Response:
    """Deposit to or withdraw from a wallet; answer with the balance right after it."""
    balance = await service.apply_operation(
        wallet_uuid, Operation(kind=request.operation, amount=request.amount)
    )
    return json_response({"status": "success", "balance": json_number(balance)})
