"""Request and response bodies of the reversal endpoint."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self
from uuid import UUID

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from wallet_api.core.fields import (
    Amount,
    CanonicalUUID,
    Metadata,
    Money,
    canonical_amount,
    canonical_metadata,
)
from wallet_api.core.money import Currency
from wallet_api.core.responses import json_number
from wallet_api.posting.entries import EntryKind, Leg
from wallet_api.transfers.schemas import Description
from wallet_api.wallets.cursors import MAX_LEDGER_ID

_TRANSFER = "7c1f3a52-9e1b-4d8e-a1c4-5b2f6d0e8a93"

#: Named examples of reversal requests (the published contract's).
REVERSAL_REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "a deposit or a withdrawal, in full": {"entry_id": 42},
    "a transfer, in part": {"transfer_id": _TRANSFER, "amount": "5.00", "description": "refund"},
}


def _whole_number(value: object) -> object:
    """A JSON number whose value is whole (`42`, `42.0`: JSON Schema's `integer`), not a
    string; request bodies are parsed with every number an exact Decimal
    (core/requests.py)."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise PydanticCustomError("int_type", "Input should be an integer")


class ReversalRequest(BaseModel):
    """What to reverse: one ledger entry (a deposit, a withdrawal, or either leg of a
    transfer, which reverses the whole transfer) or a transfer, by its id; all of its
    amount, or a part."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": list(REVERSAL_REQUEST_EXAMPLES.values()),
            # Exactly one of the two targets, given (not null).
            "oneOf": [
                {"required": ["entry_id"], "properties": {"entry_id": {"type": "integer"}}},
                {
                    "required": ["transfer_id"],
                    "properties": {"transfer_id": {"type": "string"}},
                },
            ],
        },
    )

    entry_id: Annotated[int | None, BeforeValidator(_whole_number)] = Field(
        None, ge=1, le=MAX_LEDGER_ID, description="A ledger entry's `id` (from the history)."
    )
    transfer_id: CanonicalUUID | None = None
    amount: Amount | None = Field(None, description="Defaults to the entry's whole amount.")
    description: Description = None
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.entry_id is None) == (self.transfer_id is None):
            raise PydanticCustomError("one_target", "give exactly one of entry_id and transfer_id")
        return self

    def canonical(self) -> str:
        """What makes two reversal requests the same (for their Idempotency-Key)."""
        target = None if self.transfer_id is None else str(self.transfer_id)
        return orjson.dumps(
            [self.entry_id, target, canonical_amount(self.amount), self.description]
        ).decode() + canonical_metadata(self.metadata)


class ReversalLeg(BaseModel):
    wallet_uuid: UUID
    operation: EntryKind
    amount: Money
    balance_after: Money | None = Field(
        description="The wallet's balance right after it; null for a wallet the caller "
        "does not own (with API keys)."
    )
    reverses_entry_id: int


class Reversal(BaseModel):
    """The compensating entry: one ledger row per wallet the reversed entry moved."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": _TRANSFER,
                    "amount": 5,
                    "currency": "USD",
                    "description": "refund",
                    "legs": [
                        {
                            "wallet_uuid": "8d2f4b6a-1c3e-4f5a-9b7d-0e2c4a6b8d1f",
                            "operation": "REVERSAL_OUT",
                            "amount": 5,
                            "balance_after": 7.5,
                            "reverses_entry_id": 43,
                        },
                        {
                            "wallet_uuid": "3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47",
                            "operation": "REVERSAL_IN",
                            "amount": 5,
                            "balance_after": 92.5,
                            "reverses_entry_id": 42,
                        },
                    ],
                    "created_at": "2026-11-28T07:15:06.123456+00:00",
                }
            ]
        }
    )

    transfer_id: UUID | None = Field(description="The reversed transfer's; null otherwise.")
    amount: Money
    currency: str = Field(description="The ISO 4217 currency of its wallets.")
    description: str | None
    legs: list[ReversalLeg]
    created_at: datetime


def reversal_body(
    *,
    transfer_id: UUID | None,
    amount: int,
    currency: Currency,
    description: str | None,
    legs: tuple[Leg, ...],
    balances: tuple[int, ...],
    created_at: datetime,
    hidden: Collection[UUID] = (),
) -> str:
    """The 201 body of a reversal (also kept for its key); the balances of the wallets
    in `hidden` (another owner's) left out."""
    exponent = currency.exponent
    body = {
        "transfer_id": None if transfer_id is None else str(transfer_id),
        "amount": json_number(amount, exponent),
        "currency": currency.code,
        "description": description,
        "legs": [
            {
                "wallet_uuid": str(leg.wallet_id),
                "operation": leg.kind.value,
                "amount": json_number(leg.amount, exponent),
                "balance_after": None
                if leg.wallet_id in hidden
                else json_number(balance, exponent),
                "reverses_entry_id": leg.reverses,
            }
            for leg, balance in zip(legs, balances, strict=True)
        ],
        "created_at": created_at,
    }
    return orjson.dumps(body).decode()
