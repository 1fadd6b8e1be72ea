"""HTTP endpoints for wallets: parse, call the service once, render."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status
from starlette.exceptions import HTTPException

from wallet_api.auth.gate import key_id_of, owner_of, require_deposit
from wallet_api.core import idempotency
from wallet_api.core.errors import (
    BodyTooLarge,
    DatabaseUnavailable,
    InternalError,
    ServiceUnavailable,
    ValidationFailed,
    WalletBusy,
    problem_response,
)
from wallet_api.core.fields import (
    METADATA_KEY_MAX_LENGTH,
    METADATA_VALUE_MAX_LENGTH,
    NO_NUL,
    Instant,
    check_period,
    metadata_filter,
    metadata_text,
)
from wallet_api.core.idempotency import IdempotencyKey, Replay, scoped_key
from wallet_api.core.openapi import (
    WRITE_FAILURES,
    error_responses,
    json_request_body,
    replayed_success,
)
from wallet_api.core.requests import read_json_body
from wallet_api.posting.entries import EntryKind
from wallet_api.wallets.cursors import decode_cursor
from wallet_api.wallets.dependencies import PageCursor, WalletServiceDep, wallet_service
from wallet_api.wallets.exceptions import (
    BalanceLimitExceeded,
    InsufficientFunds,
    TimeInTheFuture,
    WalletNotFound,
)
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.operations import (
    AtomicRefusal,
    Operation,
    atomic_response,
    refusal_document,
)
from wallet_api.wallets.schemas import (
    BATCH_REQUEST_EXAMPLES,
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    BatchRequest,
    BatchResponse,
    CreateWalletRequest,
    OperationRequest,
    OperationResult,
    OperationsPage,
    WalletBalance,
    WalletBalances,
    WalletCreated,
    balance_body,
    balances_body,
    batch_body,
    created_body,
    history_body,
    operation_body,
    result_of,
)

router = APIRouter(prefix="/api/v1/wallets", tags=["wallets"])

_OPERATION = "/{wallet_uuid}/operation"
#: The operation endpoint's full path (also served by `wallets/fast_path.py`).
OPERATION_PATH = router.prefix + _OPERATION
#: The balance endpoint's full path (also served by `wallets/fast_path.py`).
WALLET_PATH = router.prefix + "/{wallet_uuid}"

#: For the stateful tests of client tools: where a created wallet's id goes next.
_CREATED_LINKS = {
    name: {
        "operationId": operation_id,
        "parameters": {"wallet_uuid": "$response.body#/wallet_uuid"},
    }
    for name, operation_id in (
        ("GetWallet", "get_wallet"),
        ("Operate", "operate"),
        ("ListOperations", "list_operations"),
        ("GetStatement", "get_statement"),
        ("GetBalances", "get_balances"),
        ("ListHolds", "list_holds"),
        ("CreateBalanceMonitor", "create_balance_monitor"),
        ("ListBalanceMonitors", "list_balance_monitors"),
    )
}

#: What a write (an operation, a batch of them) may be answered besides its success.
_WRITE_ERRORS = (
    InsufficientFunds,
    BalanceLimitExceeded,
    WalletNotFound,
    *WRITE_FAILURES,
)


@router.post(
    "/create_wallet",
    status_code=status.HTTP_201_CREATED,
    response_model=WalletCreated,
    responses={
        201: {"links": _CREATED_LINKS, **replayed_success(201)[201]},
        **error_responses(
            *WRITE_FAILURES,
        ),
    },
    openapi_extra=json_request_body(
        CreateWalletRequest,
        {
            "in a currency": {"currency": "JPY"},
            "with metadata": {"metadata": {"customer_id": "c_42"}},
        },
        required=False,
    ),
)
async def create_wallet(
    request: Request, service: WalletServiceDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Create a wallet with a zero balance, owned by the API key's owner, in the currency
    the optional body names and with its metadata (without a body: DEFAULT_CURRENCY, and
    the answer is the specification's)."""
    owner = owner_of(request.scope)
    body = CreateWalletRequest()
    if (await request.body()).strip():
        body = await read_json_body(request, CreateWalletRequest)
    metadata = metadata_text(body.metadata)
    created = await service.create_wallet(
        owner=owner,
        currency=body.currency,
        metadata=metadata,
        idempotency_key=scoped_key(owner, idempotency_key),
        fingerprint=idempotency.fingerprint(
            "POST", "/api/v1/wallets/create_wallet", body.canonical()
        ),
    )
    if isinstance(created, Replay):
        return created.response()
    wallet_id, currency = created
    return Response(
        created_body(wallet_id, currency, metadata),
        status.HTTP_201_CREATED,
        media_type="application/json",
    )


@router.api_route(
    "/create_wallet", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def create_wallet_other_methods() -> None:
    # Without this, GET /create_wallet would match /{wallet_uuid} and fail as a bad UUID.
    raise HTTPException(status.HTTP_405_METHOD_NOT_ALLOWED, headers={"Allow": "POST"})


@router.get(
    "/{wallet_uuid}",
    response_model=WalletBalance,
    responses=error_responses(
        WalletNotFound,
        BodyTooLarge,
        ValidationFailed,
        TimeInTheFuture,
        InternalError,
        DatabaseUnavailable,
        WalletBusy,
        ServiceUnavailable,
    ),
)
async def get_wallet(
    wallet_uuid: UUID,
    request: Request,
    service: WalletServiceDep,
    at: Annotated[
        Instant | None,
        Query(
            description="A time (RFC 3339, with its offset): the balance after the wallet's "
            "last entry dated at or before it (0 before its first), instead of the balance "
            "now. Not later than now (422 `time_in_the_future`).",
            examples=["2026-12-01T00:00:00Z"],
        ),
    ] = None,
) -> Response:
    """Read a wallet's current balance: what its ledger holds (money set aside by holds
    included; `/balances` tells what is held and what is available). With `at`, its
    balance at that time, from its ledger."""
    owner = owner_of(request.scope)
    if at is not None:
        balance, currency = await service.balance_at(wallet_uuid, at, owner=owner)
        return Response(balance_body(balance, currency, at=at), media_type="application/json")
    balance, currency = await service.get_balance(wallet_uuid, owner=owner)
    return Response(balance_body(balance, currency), media_type="application/json")


@router.get(
    "/{wallet_uuid}/balances",
    response_model=WalletBalances,
    responses=error_responses(
        WalletNotFound, BodyTooLarge, ValidationFailed, InternalError, DatabaseUnavailable
    ),
)
async def get_balances(wallet_uuid: UUID, request: Request, service: WalletServiceDep) -> Response:
    """A wallet's balance, what its active holds set aside (`held`), and what it may spend
    (`available`: balance less held): what every debit is judged on."""
    balances = await service.get_balances(wallet_uuid, owner=owner_of(request.scope))
    return Response(balances_body(*balances), media_type="application/json")


@router.post(
    _OPERATION,
    response_model=OperationResult,
    responses={
        **replayed_success(200),
        **error_responses(*_WRITE_ERRORS, WalletBusy, ServiceUnavailable, replayed=(400,)),
    },
    openapi_extra=json_request_body(
        OperationRequest,
        {
            "deposit": {"operation": "DEPOSIT", "amount": 1000},
            "withdraw": {"operation": "WITHDRAW", "amount": 12.5},
            "amount as a string": {"operation": "DEPOSIT", "amount": "100.00"},
        },
    ),
)
async def operate(
    wallet_uuid: UUID,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Deposit to or withdraw from a wallet; answer with the balance right after it."""
    # Requests without an Idempotency-Key are mostly served by `wallets/fast_path.py`
    # before they reach this route. The body and the service are taken here, not as
    # dependencies: FastAPI's dependency resolution costs more than this endpoint's work.
    body = await read_json_body(request, OperationRequest)
    if body.operation is OperationType.DEPOSIT:
        require_deposit(request.scope)
    service = wallet_service(request)
    owner = owner_of(request.scope)
    operation = Operation(
        kind=body.operation,
        amount=body.amount,
        metadata=metadata_text(body.metadata),
        idempotency_key=scoped_key(owner, idempotency_key),
        api_key_id=key_id_of(request.scope),
        fingerprint=idempotency.fingerprint(
            "POST", f"/api/v1/wallets/{wallet_uuid}/operation", body.canonical()
        )
        if idempotency_key is not None
        else "",
    )
    outcome = await service.apply_operation(wallet_uuid, operation, owner=owner)
    if isinstance(outcome, Replay):
        return outcome.response()
    return Response(operation_body(*outcome), media_type="application/json")


@router.get(
    "/{wallet_uuid}/operations",
    response_model=OperationsPage,
    responses=error_responses(
        WalletNotFound, BodyTooLarge, ValidationFailed, InternalError, DatabaseUnavailable
    ),
)
async def list_operations(
    wallet_uuid: UUID,
    request: Request,
    service: WalletServiceDep,
    *,
    limit: Annotated[
        int, Query(ge=1, le=HISTORY_LIMIT_MAX, description="Items per page.")
    ] = HISTORY_LIMIT_DEFAULT,
    cursor: PageCursor = None,
    operation: Annotated[
        list[EntryKind] | None,
        Query(
            description="Only entries of these kinds (repeat it for several). A page then "
            "examines at most 2,000 entries: it may hold fewer than `limit` items, even "
            "none, with a `next_cursor` to go on from."
        ),
    ] = None,
    since: Annotated[
        Instant | None,
        Query(
            alias="from",
            description="Only entries dated at or after this time (RFC 3339, with its offset).",
        ),
    ] = None,
    until: Annotated[
        Instant | None,
        Query(
            alias="to",
            description="Only entries dated before this time (RFC 3339, with its offset); "
            "not earlier than `from`.",
        ),
    ] = None,
    metadata_key: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=METADATA_KEY_MAX_LENGTH,
            pattern=NO_NUL,
            description="With `metadata_value`: only entries whose metadata has this key "
            "with that value (served from an index of the metadata: made for references "
            "such as an order id).",
        ),
    ] = None,
    metadata_value: Annotated[
        str | None,
        Query(
            max_length=METADATA_VALUE_MAX_LENGTH,
            pattern=NO_NUL,
            description="The value `metadata_key` must have (exactly).",
        ),
    ] = None,
) -> Response:
    """The wallet's applied operations, newest first, a page at a time; optionally of some
    kinds only, between two times, and with a metadata key and value. Filters and the
    cursor combine: pass the same filters with each page's `next_cursor`."""
    check_period(since, until)
    metadata = metadata_filter(metadata_key, metadata_value)
    entries, next_id, currency = await service.history(
        wallet_uuid,
        owner=owner_of(request.scope),
        limit=limit,
        before_id=None if cursor is None else decode_cursor(cursor),
        kinds=None if not operation else sorted({kind.value for kind in operation}),
        since=since,
        until=until,
        metadata=metadata,
    )
    return Response(history_body(entries, next_id, currency), media_type="application/json")


batch_router = APIRouter(prefix="/api/v1/operations", tags=["wallets"])
#: The batch endpoint's full path (a larger body limit applies to it: main.py).
BATCH_PATH = batch_router.prefix + "/batch"
#: Derived per-operation keys (`KEY #index`) must fit the 255 characters a key may have.
BATCH_KEY_MAX_LENGTH = 250


@batch_router.post(
    "/batch",
    response_model=BatchResponse,
    responses={
        **replayed_success(200),
        # WalletBusy: an atomic batch one of whose wallets another transaction holds.
        **error_responses(*_WRITE_ERRORS, WalletBusy, replayed=(400, 404)),
    },
    openapi_extra=json_request_body(BatchRequest, BATCH_REQUEST_EXAMPLES),
)
async def apply_batch(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
    """Apply up to 1,000 operations on any wallets; one result per operation, in order.

    Each result is what the single operation endpoint would have answered (each wallet's
    operations apply in the order given). With `atomic`, all apply or none: the first
    refused operation refuses the batch (its status, its problem document, its `index`).
    An Idempotency-Key replays the whole batch's outcome. A retry of a non-atomic batch
    cut off half-way replays what was applied and applies the rest:
    `Idempotent-Replayed: true` only when that retry applied or refused nothing for the
    first time.
    """
    body = await read_json_body(request, BatchRequest)
    if idempotency_key is not None and len(idempotency_key) > BATCH_KEY_MAX_LENGTH:
        raise ValidationFailed(
            f"The Idempotency-Key of a batch request is at most {BATCH_KEY_MAX_LENGTH} "
            "characters (each operation's own key is derived from it).",
            errors=[{"loc": ["header", idempotency.HEADER], "message": "too long"}],
        )
    if any(item.operation is OperationType.DEPOSIT for item in body.operations):
        require_deposit(request.scope)
    owner, api_key_id = owner_of(request.scope), key_id_of(request.scope)
    items = [
        (
            item.wallet_uuid,
            Operation(
                kind=item.operation,
                amount=item.amount,
                api_key_id=api_key_id,
                metadata=metadata_text(item.metadata),
            ),
        )
        for item in body.operations
    ]
    idempotency_key = scoped_key(owner, idempotency_key)
    fingerprint = (
        idempotency.fingerprint("POST", BATCH_PATH, body.canonical())
        if idempotency_key is not None
        else ""
    )
    service = wallet_service(request)
    if body.atomic:
        result = await service.apply_all_or_none(
            items, owner=owner, idempotency_key=idempotency_key, fingerprint=fingerprint
        )
        if isinstance(result, Replay):
            return result.response()
        if isinstance(result, AtomicRefusal):
            document = refusal_document(result)
            return problem_response(
                status=result.error.status,
                code=result.error.code,
                title=result.error.title,
                detail=document["detail"],
                extra={"index": result.index},
            )
        return Response(atomic_response(result)[1], media_type="application/json")
    outcomes, replayed = await service.apply_many(
        items, owner=owner, idempotency_key=idempotency_key, fingerprint=fingerprint
    )
    return Response(
        batch_body([result_of(outcome) for outcome in outcomes]),
        media_type="application/json",
        headers={idempotency.REPLAYED_HEADER: "true"} if replayed else None,
    )
