"""Request and response bodies of the wallet endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema

from wallet_api.core.errors import AppError, error_document
from wallet_api.core.fields import (
    Amount,
    CanonicalUUID,
    CurrencyCode,
    Metadata,
    Money,
    canonical_metadata,
)
from wallet_api.core.idempotency import Replay, client_key
from wallet_api.core.money import Currency
from wallet_api.core.responses import json_number, stored_json
from wallet_api.posting.entries import EntryKind
from wallet_api.wallets.cursors import encode_cursor
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.repository import LedgerEntry


class OperationRequest(BaseModel):
    """A deposit to or a withdrawal from a wallet."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [{"operation": "DEPOSIT", "amount": 1000}]},
    )

    operation: OperationType
    amount: Amount
    metadata: Metadata | None = None

    def canonical(self) -> str:
        """What makes two operation requests the same (for their Idempotency-Key): `100`
        and `"100.00"` are one amount."""
        return (
            f"{self.operation.value} {self.amount.canonical()}{canonical_metadata(self.metadata)}"
        )


class CreateWalletRequest(BaseModel):
    """The optional body of `create_wallet`: the wallet's currency, and metadata."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{"currency": "JPY"}, {"metadata": {"customer_id": "c_42"}}]
        },
    )

    currency: CurrencyCode | None = Field(
        None, description="Its ISO 4217 currency; without it, DEFAULT_CURRENCY."
    )
    metadata: Metadata | None = Field(
        None,
        description="Your own references on the wallet (shown by `/balances`); set when it "
        "is made.",
    )

    def canonical(self) -> str:
        """What makes two create_wallet requests the same (for their Idempotency-Key):
        empty without a body, as before the body existed."""
        return (self.currency or "") + canonical_metadata(self.metadata)


#: The specification's bodies (`create_wallet`, the balance, an operation) say the
#: wallet's currency only when it is not DEFAULT_CURRENCY: for a wallet of that currency
#: they stay exactly as the specification defines them.
_SPEC_CURRENCY = Annotated[
    str | None,
    WithJsonSchema(
        {
            "type": "string",
            "description": "Present when the wallet's currency is not DEFAULT_CURRENCY: "
            "its ISO 4217 code.",
        }
    ),
]
#: Every other body that shows an amount says its currency.
_CURRENCY = Annotated[
    str,
    WithJsonSchema(
        {"type": "string", "description": "The amounts' ISO 4217 currency.", "examples": ["USD"]}
    ),
]


#: A wallet's metadata in an answer.
_WALLET_METADATA = Annotated[
    dict[str, str] | None,
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Present when the wallet was made with metadata: that object.",
        }
    ),
]


class WalletCreated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"wallet_uuid": "3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47"},
                {"wallet_uuid": "8d2f4b6a-1c3e-4f5a-9b7d-0e2c4a6b8d1f", "currency": "JPY"},
            ]
        }
    )

    wallet_uuid: UUID
    currency: _SPEC_CURRENCY = None
    metadata: _WALLET_METADATA = None


class WalletBalance(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"balance": 1000},
                {"balance": 250, "at": "2026-12-01T00:00:00Z"},
                {"balance": 1500, "currency": "JPY"},
            ]
        }
    )

    balance: Money
    currency: _SPEC_CURRENCY = None
    at: Annotated[
        datetime | None, _present_when("string", "with `?at=`: the time asked", "date-time")
    ] = None


class OperationResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "success", "balance": 2000}]}
    )

    status: Literal["success"]
    balance: Money
    currency: _SPEC_CURRENCY = None


class WalletBalances(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"balance": 100, "held": 25, "available": 75, "currency": "USD"}]
        }
    )

    balance: Money = Field(description="What the ledger holds (the wallet's `balance`).")
    held: Money = Field(description="What its active holds set aside.")
    available: Money = Field(description="What it may spend: balance less held.")
    currency: _CURRENCY
    metadata: _WALLET_METADATA = None


def balances_body(balance: int, held: int, currency: Currency, metadata: str | None) -> str:
    """The 200 body of a wallet's balances (`metadata`: the wallet's, JSON text)."""
    exponent = currency.exponent
    body: dict[str, object] = {
        "balance": json_number(balance, exponent),
        "held": json_number(held, exponent),
        "available": json_number(balance - held, exponent),
        "currency": currency.code,
    }
    if metadata is not None:
        body["metadata"] = stored_json(metadata)
    return orjson.dumps(body).decode()


def balance_body(balance: int, currency: Currency, *, at: datetime | None = None) -> str:
    """The 200 body of a balance read (at a point in time: with it)."""
    body: dict[str, object] = {"balance": json_number(balance, currency.exponent)}
    if not currency.implicit:
        body["currency"] = currency.code
    if at is not None:
        body["at"] = at
    return orjson.dumps(body).decode()


def operation_body_around(currency: Currency) -> tuple[str, str]:
    """The 200 body of an applied operation around its balance, for a statement that
    renders it itself (`operation_body`'s text: tests/test_idempotency.py compares the
    two)."""
    if currency.implicit:
        return '{"status":"success","balance":', "}"
    return '{"status":"success","balance":', f',"currency":"{currency.code}"}}'


def operation_body(balance: int, currency: Currency) -> str:
    """The 200 body of an applied operation (also stored for idempotent replays)."""
    if currency.implicit:
        return orjson.dumps(
            {"status": "success", "balance": json_number(balance, currency.exponent)}
        ).decode()
    return orjson.dumps(
        {
            "status": "success",
            "balance": json_number(balance, currency.exponent),
            "currency": currency.code,
        }
    ).decode()


def created_body(wallet_id: UUID, currency: Currency, metadata: str | None = None) -> str:
    """The 201 body of a created wallet (also stored for idempotent replays): the
    specification's, with its currency unless it is DEFAULT_CURRENCY, and its metadata
    (JSON text) if it has any."""
    body: dict[str, object] = {"wallet_uuid": str(wallet_id)}
    if not currency.implicit:
        body["currency"] = currency.code
    if metadata is not None:
        body["metadata"] = stored_json(metadata)
    return orjson.dumps(body).decode()


HISTORY_LIMIT_DEFAULT = 50
HISTORY_LIMIT_MAX = 100


def _present_when(
    kind: Literal["string", "integer"], when: str, form: str | None = None
) -> WithJsonSchema:
    schema: dict[str, Any] = {"type": kind, "description": f"Present {when}."}
    if form is not None:
        schema["format"] = form
    return WithJsonSchema(schema)


class OperationItem(BaseModel):
    """One ledger entry of the wallet: a deposit, a withdrawal, a leg of a transfer (in
    or out), a reversal (in or out), or a hold's (HOLD sets money aside, CAPTURE takes it,
    CAPTURE_IN is the payee's, RELEASE gives it back), with the balance right after it."""

    id: int
    operation: EntryKind
    amount: Money
    balance_after: Money
    created_at: datetime
    idempotency_key: Annotated[str | None, _present_when("string", "when one was given")] = None
    transfer_id: Annotated[
        UUID | None, _present_when("string", "for a transfer's leg and its reversal", "uuid")
    ] = None
    counterparty_wallet_uuid: Annotated[
        UUID | None,
        _present_when("string", "with `transfer_id`, or a capture's: the other wallet", "uuid"),
    ] = None
    reverses_entry_id: Annotated[
        int | None, _present_when("integer", "for a reversal: the entry it compensates")
    ] = None
    reversed_by_entry_id: Annotated[
        int | None, _present_when("integer", "when the entry was reversed: the reversal")
    ] = None
    description: Annotated[
        str | None, _present_when("string", "when the transfer or reversal had one")
    ] = None
    hold_id: Annotated[
        UUID | None, _present_when("string", "for a hold's entries: the hold", "uuid")
    ] = None
    metadata: Annotated[
        dict[str, str] | None,
        WithJsonSchema(
            {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Present when the request that wrote it had metadata: that "
                "object (on each of its entries: both legs of a transfer).",
            }
        ),
    ] = None


class OperationsPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 42,
                            "operation": "DEPOSIT",
                            "amount": 10,
                            "balance_after": 10.3,
                            "created_at": "2026-11-28T07:15:06.123456+00:00",
                            "idempotency_key": "order-42",
                        }
                    ],
                    "currency": "USD",
                    "next_cursor": "2a",
                }
            ]
        }
    )

    items: list[OperationItem]
    currency: _CURRENCY
    next_cursor: str | None = Field(
        description="Pass it back as `cursor` for the next page; null on the last page."
    )


def _text(value: UUID | None) -> str | None:
    # asyncpg's UUIDs are a subclass orjson does not serialise.
    return None if value is None else str(value)


def history_body(entries: Sequence[LedgerEntry], next_id: int | None, currency: Currency) -> str:
    items = []
    exponent = currency.exponent
    for entry in entries:
        item: dict[str, Any] = {
            "id": entry.id,
            "operation": entry.operation,
            "amount": json_number(entry.amount, exponent),
            "balance_after": json_number(entry.balance_after, exponent),
            "created_at": entry.created_at,
        }
        optional = {
            "idempotency_key": client_key(entry.idempotency_key),
            "transfer_id": _text(entry.transfer_id),
            "counterparty_wallet_uuid": _text(entry.counterparty_wallet_id),
            "reverses_entry_id": entry.reverses_id,
            "reversed_by_entry_id": entry.reversed_by_id,
            "description": entry.description,
            "hold_id": _text(entry.hold_id),
            "metadata": stored_json(entry.metadata),
        }
        item.update((name, value) for name, value in optional.items() if value is not None)
        items.append(item)
    next_cursor = encode_cursor(next_id) if next_id is not None else None
    return orjson.dumps(
        {"items": items, "currency": currency.code, "next_cursor": next_cursor}
    ).decode()


#: Operations one batch request may carry.
BATCH_MAX_OPERATIONS = 1000


class BatchOperation(BaseModel):
    """One operation of a batch: the single endpoint's body, and the wallet it is for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wallet_uuid: CanonicalUUID
    operation: OperationType
    amount: Amount
    metadata: Metadata | None = None


#: Named examples of batch requests (the published contract's).
BATCH_REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "operations on several wallets": {
        "operations": [
            {
                "wallet_uuid": "3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47",
                "operation": "DEPOSIT",
                "amount": 100,
            },
            {
                "wallet_uuid": "8d2f4b6a-1c3e-4f5a-9b7d-0e2c4a6b8d1f",
                "operation": "WITHDRAW",
                "amount": "12.50",
            },
        ]
    },
    "all or nothing": {
        "operations": [
            {
                "wallet_uuid": "3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47",
                "operation": "WITHDRAW",
                "amount": 30,
            },
            {
                "wallet_uuid": "8d2f4b6a-1c3e-4f5a-9b7d-0e2c4a6b8d1f",
                "operation": "DEPOSIT",
                "amount": 30,
            },
        ],
        "atomic": True,
    },
}


class BatchRequest(BaseModel):
    """Up to 1,000 operations on any wallets, applied in order per wallet."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": list(BATCH_REQUEST_EXAMPLES.values())},
    )

    operations: list[BatchOperation] = Field(
        min_length=1, max_length=BATCH_MAX_OPERATIONS, description="1 to 1,000 operations."
    )
    atomic: StrictBool = Field(
        False,
        description=(
            "All applied, or none: the first refused operation (by position) refuses the "
            "whole batch, with its problem document and its `index`."
        ),
    )

    def canonical(self) -> str:
        """What makes two batch requests the same (for their Idempotency-Key): `100` and
        `"100.00"` are one amount."""
        lines = [
            f"{item.wallet_uuid} {item.operation.value} {item.amount.canonical()}"
            f"{canonical_metadata(item.metadata)}"
            for item in self.operations
        ]
        return "\n".join([f"atomic={self.atomic}", *lines])


class BatchResult(BaseModel):
    """What the single endpoint would have answered for that operation."""

    status: int = Field(description="200, or the problem document's status.")
    body: OperationResult | dict[str, Any] = Field(
        description="The single endpoint's body: the balance right after the operation, or "
        "a problem document (without `request_id`: the batch's response header carries it)."
    )


class BatchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {"status": 200, "body": {"status": "success", "balance": 1100}},
                        {
                            "status": 400,
                            "body": {
                                "type": "urn:wallet-api:problem:insufficient_funds",
                                "title": "Insufficient funds",
                                "status": 400,
                                "detail": "Cannot withdraw 12.5: the balance is 3.",
                                "code": "insufficient_funds",
                            },
                        },
                    ]
                }
            ]
        }
    )

    results: list[BatchResult] = Field(description="One per operation, in the request's order.")


def batch_body(results: Sequence[tuple[int, str]]) -> str:
    """The 200 body of a batch: each operation's (status, JSON body), in order."""
    return orjson.dumps(
        {"results": [{"status": status, "body": orjson.Fragment(body)} for status, body in results]}
    ).decode()


def result_of(outcome: tuple[int, Currency] | AppError | Replay) -> tuple[int, str]:
    """(status, body) the single endpoint answers for an outcome (the balance after an
    applied operation, in its currency; a problem document without its request id)."""
    if isinstance(outcome, Replay):
        return outcome.status, outcome.body
    if isinstance(outcome, AppError):
        return outcome.status, orjson.dumps(error_document(outcome)).decode()
    return 200, operation_body(*outcome)
