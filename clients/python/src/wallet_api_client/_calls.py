"""What the sync and the async client share: each endpoint as a `Call` (method, path,
body, how its answer is read), the request's headers, an answer read as a result or an
error, and the bookkeeping of a call's tries (`Tries`)."""

from __future__ import annotations

import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar
from uuid import UUID

import httpx

from wallet_api_client._version import __version__
from wallet_api_client.errors import (
    ApiError,
    ConnectionFailed,
    UnexpectedAnswer,
    WalletApiError,
    error_class,
)
from wallet_api_client.models import (
    BalanceMonitor,
    Balances,
    BatchResponse,
    Delivery,
    Event,
    Hold,
    Items,
    OperationItem,
    OperationResult,
    OperationsPage,
    Page,
    Reversal,
    Statement,
    Transfer,
    WalletBalance,
    WalletCreated,
    WebhookEndpoint,
    WebhookEndpointCreated,
)
from wallet_api_client.retry import RetryPolicy, is_retried, retry_after_seconds

T = TypeVar("T")
logger = logging.getLogger("wallet_api_client")

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = f"wallet-api-client/{__version__} (python; httpx {httpx.__version__})"
#: Amount text the client passes on: ASCII digits, an optional point and sign.
_AMOUNT_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
#: Beyond 10**30 (or below 10**-30), no amount of the service's (at most 13 digits, and
#: cents): refused before its text is written out.
_LARGEST_EXPONENT = 30
#: Methods that change nothing: sent without an Idempotency-Key.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: An amount the caller may pass: exact types only (a float is refused: 0.1 is not 1/10).
Amount = Decimal | int | str


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request of an endpoint, and how its successful answer is read."""

    method: str
    path: str
    read: Callable[[Any], T]
    body: Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


def amount_text(amount: Amount) -> str:
    """An amount as the plain decimal text the service reads ("12.5"): no exponent, no
    trailing zeros (`Decimal("10.00") * Decimal("1.5")` is 15, not 15.000). A float is
    refused (TypeError), and so is text other than ASCII digits with an optional point and
    sign, or a value of absurd size (ValueError); the service judges the rest."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | str):
        raise TypeError(f"an amount must be a Decimal, an int or a str, not {type(amount)}")
    if isinstance(amount, str) and _AMOUNT_TEXT.fullmatch(amount) is None:
        raise ValueError(f"not an amount: {amount!r}")
    value = Decimal(amount)
    if not value.is_finite() or abs(value.adjusted()) > _LARGEST_EXPONENT:
        raise ValueError(f"not an amount: {amount!r}")
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _without_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if value is not None}


def history_pages(call: Call[OperationsPage]) -> Call[Page[OperationItem]]:
    """A history page's call as one of the pages a list is followed through."""
    return Call(call.method, call.path, call.read, call.body, call.params)


def _page_of(model: type[Any]) -> Callable[[Any], Page[Any]]:
    return Page[model].model_validate  # type: ignore[valid-type]


# The endpoints (docs/API.md, Endpoints), in its order.


def create_wallet(
    currency: str | None = None, metadata: Metadata | None = None
) -> Call[WalletCreated]:
    body = _without_none({"currency": currency, "metadata": _metadata(metadata)})
    return Call(
        "POST", "/api/v1/wallets/create_wallet", WalletCreated.model_validate, body=body or None
    )


def _time(value: datetime | None) -> str | None:
    """A time as the service reads it (RFC 3339 with its offset); a naive one is refused
    here (the service would refuse it: its offset is not known)."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"a time needs its offset (a timezone): {value!r}")
    return value.isoformat()


def get_wallet(wallet: UUID | str, *, at: datetime | None = None) -> Call[WalletBalance]:
    return Call(
        "GET",
        f"/api/v1/wallets/{wallet}",
        WalletBalance.model_validate,
        params=_without_none({"at": _time(at)}),
    )


#: Metadata: your own references on what you write (string keys and values; the
#: service's bounds: 50 keys of at most 40 characters, values of at most 500).
Metadata = Mapping[str, str]


def _metadata(metadata: Metadata | None) -> dict[str, str] | None:
    return None if metadata is None else dict(metadata)


def operate(
    wallet: UUID | str, operation: str, amount: Amount, metadata: Metadata | None = None
) -> Call[OperationResult]:
    body = _without_none(
        {"operation": operation, "amount": amount_text(amount), "metadata": _metadata(metadata)}
    )
    return Call("POST", f"/api/v1/wallets/{wallet}/operation", OperationResult.model_validate, body)


def list_operations(
    wallet: UUID | str,
    *,
    limit: int | None = None,
    cursor: str | None = None,
    operations: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    metadata: tuple[str, str] | None = None,
) -> Call[OperationsPage]:
    if metadata is not None and not (isinstance(metadata, tuple) and len(metadata) == 2):
        raise TypeError("metadata: a (key, value) tuple")
    key, value = (None, None) if metadata is None else metadata
    params = {
        "limit": limit,
        "cursor": cursor,
        "operation": operations or None,
        "from": _time(since),
        "to": _time(until),
        "metadata_key": key,
        "metadata_value": value,
    }
    return Call(
        "GET",
        f"/api/v1/wallets/{wallet}/operations",
        OperationsPage.model_validate,
        params=_without_none(params),
    )


def get_statement(
    wallet: UUID | str, *, since: datetime | None = None, until: datetime | None = None
) -> Call[Statement]:
    return Call(
        "GET",
        f"/api/v1/wallets/{wallet}/statement",
        Statement.model_validate,
        params=_without_none({"from": _time(since), "to": _time(until)}),
    )


#: A batch's operation: (wallet, "DEPOSIT" or "WITHDRAW", amount), or with its metadata.
BatchItem = tuple[UUID | str, str, Amount] | tuple[UUID | str, str, Amount, Metadata]


def _batch_item(item: BatchItem) -> dict[str, Any]:
    wallet, kind, amount, *rest = item
    body = {"wallet_uuid": str(wallet), "operation": kind, "amount": amount_text(amount)}
    return _without_none({**body, "metadata": _metadata(rest[0]) if rest else None})


def apply_batch(operations: list[BatchItem], *, atomic: bool) -> Call[BatchResponse]:
    body = {"operations": [_batch_item(item) for item in operations], "atomic": atomic}
    return Call("POST", "/api/v1/operations/batch", BatchResponse.model_validate, body)


def create_transfer(
    source: UUID | str,
    destination: UUID | str,
    amount: Amount,
    description: str | None,
    metadata: Metadata | None = None,
) -> Call[Transfer]:
    body = _without_none(
        {
            "from_wallet_uuid": str(source),
            "to_wallet_uuid": str(destination),
            "amount": amount_text(amount),
            "description": description,
            "metadata": _metadata(metadata),
        }
    )
    return Call("POST", "/api/v1/transfers", Transfer.model_validate, body)


def get_transfer(transfer: UUID | str) -> Call[Transfer]:
    return Call("GET", f"/api/v1/transfers/{transfer}", Transfer.model_validate)


def reverse_entry(
    *,
    entry_id: int | None,
    transfer_id: UUID | str | None,
    amount: Amount | None,
    description: str | None,
    metadata: Metadata | None = None,
) -> Call[Reversal]:
    if (entry_id is None) == (transfer_id is None):
        raise ValueError("name exactly one of entry_id and transfer_id")
    body = _without_none(
        {
            "entry_id": entry_id,
            "transfer_id": None if transfer_id is None else str(transfer_id),
            "amount": None if amount is None else amount_text(amount),
            "description": description,
            "metadata": _metadata(metadata),
        }
    )
    return Call("POST", "/api/v1/reversals", Reversal.model_validate, body)


def get_balances(wallet: UUID | str) -> Call[Balances]:
    return Call("GET", f"/api/v1/wallets/{wallet}/balances", Balances.model_validate)


def create_hold(
    wallet: UUID | str,
    amount: Amount,
    expires_in: int | None,
    description: str | None,
    metadata: Metadata | None = None,
) -> Call[Hold]:
    body = _without_none(
        {
            "wallet_uuid": str(wallet),
            "amount": amount_text(amount),
            "expires_in": expires_in,
            "description": description,
            "metadata": _metadata(metadata),
        }
    )
    return Call("POST", "/api/v1/holds", Hold.model_validate, body)


def capture_hold(
    hold: UUID | str,
    *,
    amount: Amount | None,
    to_wallet: UUID | str | None,
    final: bool | None,
    description: str | None,
    metadata: Metadata | None = None,
) -> Call[Hold]:
    body = _without_none(
        {
            "amount": None if amount is None else amount_text(amount),
            "to_wallet_uuid": None if to_wallet is None else str(to_wallet),
            "final": final,
            "description": description,
            "metadata": _metadata(metadata),
        }
    )
    return Call("POST", f"/api/v1/holds/{hold}/capture", Hold.model_validate, body)


def void_hold(hold: UUID | str) -> Call[Hold]:
    return Call("POST", f"/api/v1/holds/{hold}/void", Hold.model_validate)


def get_hold(hold: UUID | str) -> Call[Hold]:
    return Call("GET", f"/api/v1/holds/{hold}", Hold.model_validate)


def list_holds(
    wallet: UUID | str,
    *,
    status: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Page[Hold]]:
    return Call(
        "GET",
        f"/api/v1/wallets/{wallet}/holds",
        _page_of(Hold),
        params=_without_none({"status": status, "limit": limit, "cursor": cursor}),
    )


def list_events(
    *,
    after: str | None = None,
    limit: int | None = None,
    types: list[str] | None = None,
    wait: float | None = None,
) -> Call[Page[Event]]:
    return Call(
        "GET",
        "/api/v1/events",
        _page_of(Event),
        params=_without_none({"after": after, "limit": limit, "type": types, "wait": wait}),
    )


def get_event(event: int) -> Call[Event]:
    return Call("GET", f"/api/v1/events/{event}", Event.model_validate)


def create_balance_monitor(
    wallet: UUID | str, condition: str, threshold: Amount
) -> Call[BalanceMonitor]:
    body = {"condition": condition, "threshold": amount_text(threshold)}
    return Call(
        "POST",
        f"/api/v1/wallets/{wallet}/balance_monitors",
        BalanceMonitor.model_validate,
        body,
    )


def list_balance_monitors(wallet: UUID | str) -> Call[Items[BalanceMonitor]]:
    return Call(
        "GET",
        f"/api/v1/wallets/{wallet}/balance_monitors",
        Items[BalanceMonitor].model_validate,
    )


def delete_balance_monitor(wallet: UUID | str, monitor: UUID | str) -> Call[None]:
    return Call("DELETE", f"/api/v1/wallets/{wallet}/balance_monitors/{monitor}", _nothing)


def create_webhook_endpoint(
    url: str, types: list[str] | None, description: str | None
) -> Call[WebhookEndpointCreated]:
    body = _without_none({"url": url, "types": types, "description": description})
    return Call("POST", "/api/v1/webhook_endpoints", WebhookEndpointCreated.model_validate, body)


def list_webhook_endpoints() -> Call[Items[WebhookEndpoint]]:
    return Call("GET", "/api/v1/webhook_endpoints", Items[WebhookEndpoint].model_validate)


def get_webhook_endpoint(endpoint: UUID | str) -> Call[WebhookEndpoint]:
    return Call("GET", f"/api/v1/webhook_endpoints/{endpoint}", WebhookEndpoint.model_validate)


def update_webhook_endpoint(
    endpoint: UUID | str, changes: Mapping[str, Any]
) -> Call[WebhookEndpoint]:
    """`changes`: the fields to change (`url`, `types`, `description`, `status`); a
    `types` of None means every type."""
    return Call(
        "PATCH",
        f"/api/v1/webhook_endpoints/{endpoint}",
        WebhookEndpoint.model_validate,
        dict(changes),
    )


def delete_webhook_endpoint(endpoint: UUID | str) -> Call[None]:
    return Call("DELETE", f"/api/v1/webhook_endpoints/{endpoint}", _nothing)


def list_event_deliveries(event: int) -> Call[Items[Delivery]]:
    return Call("GET", f"/api/v1/events/{event}/deliveries", Items[Delivery].model_validate)


def redeliver_event(event: int, endpoint: UUID | str | None) -> Call[Items[Delivery]]:
    body = _without_none({"endpoint_id": None if endpoint is None else str(endpoint)})
    return Call("POST", f"/api/v1/events/{event}/redeliver", Items[Delivery].model_validate, body)


def _nothing(_: Any) -> None:
    """The reading of an answer without a body (204)."""


def new_key() -> str:
    """A new Idempotency-Key: unique, and the same for every try of one call."""
    return f"wac-{uuid.uuid4()}"


def request_of(call: Call[Any], key: str | None) -> tuple[dict[str, str], bytes | None]:
    """The headers and body of a try of `call` (its key on a POST)."""
    headers = {}
    content = None
    if call.body is not None:
        headers["Content-Type"] = "application/json"
        content = json.dumps(call.body, separators=(",", ":")).encode()
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers, content


def read_answer(
    call: Call[T], response: httpx.Response, key: str | None
) -> T | ApiError | UnexpectedAnswer:
    """A successful answer's result, or the error its problem document names."""
    content = response.content
    document: Any
    try:  # JSON is UTF-8 (RFC 8259): read as bytes, without guessing an encoding
        document = json.loads(content, parse_float=Decimal) if content else None
    except ValueError:
        document = None
    if response.is_success:
        try:
            return call.read(document)
        except ValueError as error:  # pydantic's ValidationError is one
            return UnexpectedAnswer(
                f"{response.status_code}, but not an answer this client reads: {error}",
                method=call.method,
                path=call.path,
                idempotency_key=key,
            )
    problem = (
        document
        if isinstance(document, dict)
        else {"detail": content[:200].decode("utf-8", "replace")}
    )
    return error_class(response.status_code, problem.get("code"))(
        problem,
        status=response.status_code,
        method=call.method,
        path=call.path,
        idempotency_key=key,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )


class Tries:
    """A call's tries: its key, how many were made, and whether and when to try again."""

    def __init__(
        self, call: Call[Any], key: str | None, policy: RetryPolicy, rng: random.Random
    ) -> None:
        self.call = call
        self.key = key if key is not None or call.method.upper() in SAFE_METHODS else new_key()
        self.count = 0
        #: Whether an earlier try may have been applied (no answer, or an ambiguous one).
        self.ambiguous = False
        self._policy = policy
        self._rng = rng
        self._started = time.monotonic()

    def begin(self) -> tuple[dict[str, str], bytes | None]:
        """The next try's headers and body."""
        self.count += 1
        return request_of(self.call, self.key)

    def failed(self, error: Exception) -> float:
        """The wait before the next try after `error` (a try's failure); raises the error
        the call ends with when there is none."""
        call = self.call
        if isinstance(error, ApiError):
            failure: WalletApiError = error
            retried = is_retried(error.status, error.code)
            retry_after = error.retry_after
        elif isinstance(error, WalletApiError):
            failure, retried, retry_after = error, False, None
        else:
            failure = ConnectionFailed(
                f"no answer: {type(error).__name__}: {error}",
                method=call.method,
                path=call.path,
                idempotency_key=self.key,
            )
            retried, retry_after = True, None
        failure.attempts = self.count
        self.ambiguous = self.ambiguous or not failure.settled
        failure.settled = not self.ambiguous
        delay = (
            self._policy.next_delay(
                self.count, time.monotonic() - self._started, retry_after, self._rng
            )
            if retried
            else None
        )
        if delay is None:
            if failure is error:
                raise failure
            raise failure from error
        logger.warning(
            "%s %s: %s; try %d of %d in %.2f s (Idempotency-Key %s)",
            call.method,
            call.path,
            failure.args[0],
            self.count + 1,
            self._policy.max_attempts,
            delay,
            self.key,
        )
        return delay
