"""HTTP endpoints for transfers: parse, call the service once, render."""

from __future__ import annotations

from uuid import UUID

import orjson
from fastapi import APIRouter, Request, Response, status

from wallet_api.auth.gate import key_id_of, owner_of
from wallet_api.core import idempotency
from wallet_api.core.errors import (
    DatabaseUnavailable,
    InternalError,
    ServiceUnavailable,
    ValidationFailed,
    WalletBusy,
)
from wallet_api.core.idempotency import IdempotencyKey, Replay, scoped_key
from wallet_api.core.openapi import (
    WRITE_FAILURES,
    error_responses,
    json_request_body,
    replayed_success,
)
from wallet_api.core.requests import read_json_body
from wallet_api.transfers.exceptions import (
    TransferBalanceLimitExceeded,
    TransferInsufficientFunds,
    TransferNotFound,
    TransferWalletNotFound,
)
from wallet_api.transfers.schemas import TRANSFER_REQUEST_EXAMPLES, Transfer, TransferRequest
from wallet_api.transfers.service import TransferService
from wallet_api.wallets.exceptions import CurrencyMismatch

router = APIRouter(prefix="/api/v1/transfers", tags=["transfers"])
TRANSFERS_PATH = router.prefix


#: For the stateful tests of client tools: where a new transfer's id goes next.
_CREATED_LINKS = {
    "GetTransfer": {
        "operationId": "get_transfer",
        "parameters": {"transfer_id": "$response.body#/transfer_id"},
    },
    "ReverseTransfer": {
        "operationId": "reverse_entry",
        "requestBody": {"transfer_id": "$response.body#/transfer_id"},
    },
}


def transfer_service(request: Request) -> TransferService:
    """The process's service, made by the application's lifespan."""
    service: TransferService = request.app.state.transfer_service
    return service


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Transfer,
    responses={
        201: {"links": _CREATED_LINKS, **replayed_success(201)[201]},
        **error_responses(
            TransferInsufficientFunds,
            TransferBalanceLimitExceeded,
            TransferWalletNotFound,
            CurrencyMismatch,
            *WRITE_FAILURES,
            WalletBusy,
            ServiceUnavailable,
            replayed=(400, 404),
        ),
    },
    openapi_extra=json_request_body(TransferRequest, TRANSFER_REQUEST_EXAMPLES),
)
async def create_transfer(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
    """Move an amount from one wallet to another: both legs or neither, in one
    transaction; answer with the transfer and both balances right after it.

    Refused without any change when the source's balance does not cover it
    (`insufficient_funds`), when the destination would exceed the balance limit
    (`balance_limit_exceeded`), or when either wallet does not exist (`wallet_not_found`,
    saying which). The source and the destination must differ.
    """
    body = await read_json_body(request, TransferRequest)
    fingerprint = (
        idempotency.fingerprint("POST", TRANSFERS_PATH, body.canonical())
        if idempotency_key is not None
        else ""
    )
    owner = owner_of(request.scope)
    result = await transfer_service(request).transfer(
        body,
        owner=owner,
        api_key_id=key_id_of(request.scope),
        idempotency_key=scoped_key(owner, idempotency_key),
        fingerprint=fingerprint,
    )
    if isinstance(result, Replay):
        return replayed_response(result)
    return created_response(*result)


def created_response(transfer_id: UUID, body: str) -> Response:
    """The 201 of a new transfer (also the fast path's, `transfers/fast_path.py`)."""
    return Response(
        body,
        status.HTTP_201_CREATED,
        media_type="application/json",
        headers={"Location": transfer_location(transfer_id)},
    )


def replayed_response(replay: Replay) -> Response:
    """A stored answer sent again. Only the status and body are stored: a created
    transfer's `Location` is derived again from its body, so that the replay names the
    transfer as the first answer did."""
    response = replay.response()
    if replay.status == status.HTTP_201_CREATED:
        transfer_id = UUID(orjson.loads(replay.body)["transfer_id"])
        response.headers["Location"] = transfer_location(transfer_id)
    return response


def transfer_location(transfer_id: UUID) -> str:
    return f"{TRANSFERS_PATH}/{transfer_id}"


@router.get(
    "/{transfer_id}",
    response_model=Transfer,
    responses=error_responses(
        TransferNotFound, ValidationFailed, InternalError, DatabaseUnavailable
    ),
)
async def get_transfer(transfer_id: UUID, request: Request) -> Response:
    """A transfer: its wallets, amount, the balances right after it, and what was
    reversed of it."""
    text = await transfer_service(request).get(transfer_id, owner=owner_of(request.scope))
    return Response(text, media_type="application/json")
