"""Request and response bodies of the wallet endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from wallet_api.core.money import MAX_MINOR_UNITS, format_minor_units, to_minor_units
from wallet_api.core.responses import json_number
from wallet_api.wallets.cursors import encode_cursor
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.repository import LedgerEntry


def _amount_in_minor_units(value: object) -> int:
    try:
        return to_minor_units(value)
    except ValueError as exc:
        raise PydanticCustomError("amount", str(exc)) from None


_MAX = format_minor_units(MAX_MINOR_UNITS)

#: A positive amount of at most two fractional digits and at most the maximum, as a
#: string: leading zeros are allowed, an exponent or a sign is not.
AMOUNT_STRING_PATTERN = r"^0*(?:[1-9][0-9]{0,12}(?:\.[0-9]{1,2})?|0\.(?:[1-9][0-9]?|0[1-9]))$"

Amount = Annotated[
    int,
    BeforeValidator(_amount_in_minor_units),
    WithJsonSchema(
        {
            "title": "Amount",
            "description": (
                "Positive amount in currency units with at most two fractional digits, "
                f"as a JSON number or a numeric string; at most {_MAX}. A number is read "
                "from its exact text (never through a binary float) and must be written "
                "without an exponent and with at most two fractional digits: `12.5`, not "
                "`1.25e1` or `12.500`. (The schema's keywords cannot say this of a number "
                "portably: `multipleOf: 0.01` is computed in binary floating point by "
                "common validators, which would refuse 0.07; anything else is a 422.)"
            ),
            "oneOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": float(_MAX)},
                {"type": "string", "pattern": AMOUNT_STRING_PATTERN},
            ],
            "examples": [1000, 12.5, "100.00"],
        }
    ),
]

Money = Annotated[Decimal, WithJsonSchema({"type": "number", "examples": [1000, 0.3]})]


class OperationRequest(BaseModel):
    """A deposit to or a withdrawal from a wallet."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [{"operation": "DEPOSIT", "amount": 1000}]},
    )

    operation: OperationType
    amount: Amount


class WalletCreated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"wallet_uuid": "3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47"}]}
    )

    wallet_uuid: UUID


class WalletBalance(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"balance": 1000}]})

    balance: Money


class OperationResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "success", "balance": 2000}]}
    )

    status: Literal["success"]
    balance: Money


def operation_body(balance: int) -> str:
    """The 200 body of an applied operation (also stored for idempotent replays)."""
    return orjson.dumps({"status": "success", "balance": json_number(balance)}).decode()


def created_body(wallet_id: UUID) -> str:
    """The 201 body of a created wallet (also stored for idempotent replays)."""
    return orjson.dumps({"wallet_uuid": str(wallet_id)}).decode()


HISTORY_LIMIT_DEFAULT = 50
HISTORY_LIMIT_MAX = 100


class OperationItem(BaseModel):
    id: int
    operation: OperationType
    amount: Money
    balance_after: Money
    created_at: datetime
    idempotency_key: Annotated[
        str | None,
        WithJsonSchema({"type": "string", "description": "Present when one was given."}),
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
                    "next_cursor": "2a",
                }
            ]
        }
    )

    items: list[OperationItem]
    next_cursor: str | None = Field(
        description="Pass it back as `cursor` for the next page; null on the last page."
    )


def history_body(entries: Sequence[LedgerEntry], next_id: int | None) -> str:
    items = []
    for entry in entries:
        item: dict[str, Any] = {
            "id": entry.id,
            "operation": entry.operation,
            "amount": json_number(entry.amount),
            "balance_after": json_number(entry.balance_after),
            "created_at": entry.created_at,
        }
        if entry.idempotency_key is not None:
            item["idempotency_key"] = entry.idempotency_key
        items.append(item)
    next_cursor = encode_cursor(next_id) if next_id is not None else None
    return orjson.dumps({"items": items, "next_cursor": next_cursor}).decode()
