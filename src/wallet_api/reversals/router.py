"""HTTP endpoint for reversals: parse, call the service once, render."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from wallet_api.auth.gate import key_id_of, owner_of
from wallet_api.core import idempotency
from wallet_api.core.errors import (
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
from wallet_api.reversals.exceptions import (
    AlreadyReversed,
    EntryNotFound,
    EntryNotReversible,
    ReversalExceedsEntry,
)
from wallet_api.reversals.schemas import REVERSAL_REQUEST_EXAMPLES, Reversal, ReversalRequest
from wallet_api.reversals.service import ReversalService
from wallet_api.transfers.exceptions import (
    TransferBalanceLimitExceeded,
    TransferInsufficientFunds,
    TransferNotFound,
)

router = APIRouter(prefix="/api/v1/reversals", tags=["reversals"])
REVERSALS_PATH = router.prefix


def reversal_service(request: Request) -> ReversalService:
    """The process's service, made by the application's lifespan."""
    service: ReversalService = request.app.state.reversal_service
    return service


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Reversal,
    responses={
        **replayed_success(201),
        **error_responses(
            TransferInsufficientFunds,
            TransferBalanceLimitExceeded,
            EntryNotFound,
            TransferNotFound,
            AlreadyReversed,
            EntryNotReversible,
            ReversalExceedsEntry,
            *WRITE_FAILURES,
            WalletBusy,  # a wallet of it held past DB_LOCK_TIMEOUT_MS
            replayed=(400, 409),
        ),
    },
    openapi_extra=json_request_body(ReversalRequest, REVERSAL_REQUEST_EXAMPLES),
)
async def reverse_entry(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
    """Reverse a deposit, a withdrawal or a transfer, in full or in part, by writing the
    compensating entry (a `REVERSAL_OUT` or `REVERSAL_IN` row per wallet, linked both
    ways in the history). An entry is reversed at most once (`already_reversed`); a
    reversal that a wallet's balance cannot bear is refused without any change.
    """
    body = await read_json_body(request, ReversalRequest)
    fingerprint = (
        idempotency.fingerprint("POST", REVERSALS_PATH, body.canonical())
        if idempotency_key is not None
        else ""
    )
    owner = owner_of(request.scope)
    result = await reversal_service(request).reverse(
        body,
        owner=owner,
        api_key_id=key_id_of(request.scope),
        idempotency_key=scoped_key(owner, idempotency_key),
        fingerprint=fingerprint,
    )
    if isinstance(result, Replay):
        return result.response()
    return Response(result, status.HTTP_201_CREATED, media_type="application/json")
