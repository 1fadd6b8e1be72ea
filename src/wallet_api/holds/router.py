"""HTTP endpoints for holds: parse, call the service once, render."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request, Response, status

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
from wallet_api.holds.exceptions import (
    CaptureExceedsHold,
    HoldCaptured,
    HoldExpired,
    HoldInsufficientFunds,
    HoldNotFound,
    HoldVoided,
)
from wallet_api.holds.schemas import (
    CAPTURE_REQUEST_EXAMPLES,
    HOLD_REQUEST_EXAMPLES,
    HOLDS_LIMIT_DEFAULT,
    HOLDS_LIMIT_MAX,
    CaptureRequest,
    Hold,
    HoldRequest,
    HoldsPage,
)
from wallet_api.holds.service import HoldService
from wallet_api.transfers.exceptions import TransferBalanceLimitExceeded, TransferWalletNotFound
from wallet_api.wallets.cursors import decode_cursor, encode_cursor
from wallet_api.wallets.dependencies import PageCursor
from wallet_api.wallets.exceptions import CurrencyMismatch, WalletNotFound

router = APIRouter(prefix="/api/v1/holds", tags=["holds"])
HOLDS_PATH = router.prefix
CAPTURE_PATH = f"{HOLDS_PATH}/{{hold_id}}/capture"
wallet_holds_router = APIRouter(prefix="/api/v1/wallets", tags=["holds"])

#: A hold's writes wait in a queue: a wallet held too long, a queue full or closing.
_WRITE_FAILURES = (*WRITE_FAILURES, WalletBusy, ServiceUnavailable)
_CLOSED = (HoldCaptured, HoldVoided, HoldExpired)


def hold_service(request: Request) -> HoldService:
    """The process's service, made by the application's lifespan."""
    service: HoldService = request.app.state.hold_service
    return service


def _fingerprint(path: str, canonical: str, key: str | None) -> str:
    return idempotency.fingerprint("POST", path, canonical) if key is not None else ""


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Hold,
    responses={
        **replayed_success(201),
        **error_responses(
            HoldInsufficientFunds, WalletNotFound, *_WRITE_FAILURES, replayed=(400, 404)
        ),
    },
    openapi_extra=json_request_body(HoldRequest, HOLD_REQUEST_EXAMPLES),
)
async def create_hold(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
    """Set an amount aside on a wallet until it is captured, voided or expires: the
    wallet's available balance falls by it at once, its balance does not. Refused, with
    nothing changed, when the available balance does not cover it (`insufficient_funds`).
    Answers the hold and the wallet's balances right after it."""
    body = await read_json_body(request, HoldRequest)
    owner = owner_of(request.scope)
    result = await hold_service(request).create(
        body,
        owner=owner,
        api_key_id=key_id_of(request.scope),
        idempotency_key=scoped_key(owner, idempotency_key),
        fingerprint=_fingerprint(HOLDS_PATH, body.canonical(), idempotency_key),
    )
    if isinstance(result, Replay):
        return _replayed(result)
    return created_response(*result)


def created_response(hold_id: UUID, body: str) -> Response:
    """The 201 of a new hold (also the fast path's, `holds/fast_path.py`)."""
    return Response(
        body,
        status.HTTP_201_CREATED,
        media_type="application/json",
        headers={"Location": f"{HOLDS_PATH}/{hold_id}"},
    )


def _replayed(replay: Replay) -> Response:
    """A stored answer sent again; a created hold's `Location` derived from its body."""
    response = replay.response()
    if replay.status == status.HTTP_201_CREATED:
        response.headers["Location"] = f"{HOLDS_PATH}/{orjson.loads(replay.body)['hold_id']}"
    return response


@router.post(
    "/{hold_id}/capture",
    response_model=Hold,
    responses={
        **replayed_success(200),
        **error_responses(
            HoldNotFound,
            *_CLOSED,
            CaptureExceedsHold,
            CurrencyMismatch,
            TransferWalletNotFound,
            TransferBalanceLimitExceeded,
            *_WRITE_FAILURES,
            replayed=(400, 404, 409, 422),
        ),
    },
    openapi_extra=json_request_body(CaptureRequest, CAPTURE_REQUEST_EXAMPLES),
)
async def capture_hold(
    hold_id: UUID, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """Take all or part of what a hold still holds: into another wallet (a payment: any
    owner's wallet) or out of the service. `final` (the default) releases the rest in the
    same commit and closes the hold; `"final": false` keeps it held for a later capture.
    Never more than it holds (422 `capture_exceeds_hold`); a hold captured, voided or
    expired is a 409 naming its state."""
    body = await read_json_body(request, CaptureRequest)
    owner = owner_of(request.scope)
    result = await hold_service(request).capture(
        hold_id,
        body,
        owner=owner,
        api_key_id=key_id_of(request.scope),
        idempotency_key=scoped_key(owner, idempotency_key),
        fingerprint=_fingerprint(
            f"{HOLDS_PATH}/{hold_id}/capture", body.canonical(), idempotency_key
        ),
    )
    if isinstance(result, Replay):
        return result.response()
    return Response(result, media_type="application/json")


@router.post(
    "/{hold_id}/void",
    response_model=Hold,
    responses={
        **replayed_success(200),
        **error_responses(HoldNotFound, *_CLOSED, *_WRITE_FAILURES, replayed=(409,)),
    },
)
async def void_hold(
    hold_id: UUID, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """Release all a hold still holds and close it: at most once (a hold captured,
    voided or expired is a 409 naming its state)."""
    owner = owner_of(request.scope)
    result = await hold_service(request).void(
        hold_id,
        owner=owner,
        api_key_id=key_id_of(request.scope),
        idempotency_key=scoped_key(owner, idempotency_key),
        fingerprint=_fingerprint(f"{HOLDS_PATH}/{hold_id}/void", "", idempotency_key),
    )
    if isinstance(result, Replay):
        return result.response()
    return Response(result, media_type="application/json")


@router.get(
    "/{hold_id}",
    response_model=Hold,
    responses=error_responses(HoldNotFound, ValidationFailed, InternalError, DatabaseUnavailable),
)
async def get_hold(hold_id: UUID, request: Request) -> Response:
    """A hold as it is now (an active hold past its expiry is shown `expired`)."""
    text = await hold_service(request).get(hold_id, owner=owner_of(request.scope))
    return Response(text, media_type="application/json")


@wallet_holds_router.get(
    "/{wallet_uuid}/holds",
    response_model=HoldsPage,
    responses=error_responses(WalletNotFound, ValidationFailed, InternalError, DatabaseUnavailable),
)
async def list_holds(
    wallet_uuid: UUID,
    request: Request,
    status_: Annotated[
        Literal["active", "captured", "voided", "expired"] | None,
        Query(alias="status", description="Only the holds in this state."),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=HOLDS_LIMIT_MAX, description="Holds per page.")
    ] = HOLDS_LIMIT_DEFAULT,
    cursor: PageCursor = None,
) -> Response:
    """The wallet's holds, newest first, a page at a time."""
    items, following = await hold_service(request).wallet_holds(
        wallet_uuid,
        owner=owner_of(request.scope),
        status=status_,
        limit=limit,
        before=None if cursor is None else decode_cursor(cursor),
    )
    body = (
        b'{"items":['
        + b",".join(item.encode() for item in items)
        + b'],"next_cursor":'
        + orjson.dumps(None if following is None else encode_cursor(following))
        + b"}"
    )
    return Response(body, media_type="application/json")
