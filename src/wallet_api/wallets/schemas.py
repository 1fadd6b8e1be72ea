"""Request and response bodies of the wallet endpoints."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from wallet_api.core.errors import ValidationFailed
from wallet_api.core.money import MAX_MINOR_UNITS, format_minor_units, to_minor_units
from wallet_api.core.responses import json_number
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.repository import LedgerEntry


def _amount_in_minor_units(value: object) -> int:
    try:
        return to_minor_units(value)
    except ValueError as exc:
        raise PydanticCustomError("amount", str(exc)) from None


_MAX = format_minor_units(MAX_MINOR_UNITS)

Amount = Annotated[
    int,
    BeforeValidator(_amount_in_minor_units),
    WithJsonSchema(
        {
            "description": (
                "Positive amount in currency units with at most two fractional digits, "
                f"as a JSON number or a numeric string; at most {_MAX}."
            ),
            "oneOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": float(_MAX)},
                {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,2})?$"},
            ],
            "examples": [1000, 12.5, "100.00"],
        }
    ),
]

Money = Annotated[Decimal, WithJsonSchema({"type": "number", "examples": [1000, 0.3]})]


class OperationRequest(BaseModel):
    """A deposit or withdrawal. `amount` is held in minor units once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operation: OperationType
    amount: Amount


class WalletCreated(BaseModel):
    wallet_uuid: UUID


class WalletBalance(BaseModel):
    balance: Money


class OperationResult(BaseModel):
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
_CURSOR_PREFIX = "o1:"


class OperationItem(BaseModel):
    id: int
    operation: OperationType
    amount: Money
    balance_after: Money
    created_at: datetime
    idempotency_key: str | None = Field(None, description="Present when one was given.")


class OperationsPage(BaseModel):
    items: list[OperationItem]
    next_cursor: str | None = Field(description="Opaque; null on the last page.")


def encode_cursor(before_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{before_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The ledger id a cursor stands for, or a 422 when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text.startswith(_CURSOR_PREFIX) and text[len(_CURSOR_PREFIX) :].isdigit():
            before_id = int(text[len(_CURSOR_PREFIX) :])
            if 0 < before_id < 2**63:
                return before_id
    except ValueError:
        pass
    raise ValidationFailed(
        "cursor is not valid: pass back the next_cursor of a previous page.",
        errors=[{"loc": ["query", "cursor"], "message": "not a cursor of this API"}],
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
