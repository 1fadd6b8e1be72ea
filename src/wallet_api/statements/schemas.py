"""The JSON form of a statement (what the OpenAPI document describes; the service renders
it as it streams)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from wallet_api.core.fields import Money
from wallet_api.posting.entries import EntryKind

STATEMENT_EXAMPLE: dict[str, Any] = {
    "wallet_uuid": "3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47",
    "currency": "USD",
    "from": "2026-11-01T00:00:00Z",
    "to": "2026-12-01T00:00:00Z",
    "opening_balance": 100,
    "closing_balance": 87.5,
    "entries": [
        {
            "id": 41,
            "seq": 7,
            "created_at": "2026-11-03T10:15:00.123456Z",
            "operation": "WITHDRAW",
            "change": -12.5,
            "amount": 12.5,
            "balance_after": 87.5,
        }
    ],
}


class StatementEntry(BaseModel):
    """An entry of the period, as the history shows it, with what it changed."""

    id: int
    seq: int | None = Field(
        None,
        description="Its place in the wallet's ledger (absent: rows older than the numbering).",
    )
    created_at: datetime
    operation: EntryKind
    change: Money = Field(
        description="What it did to the balance: + a credit, - a debit, 0 for HOLD and "
        "RELEASE (they move what is held)."
    )
    amount: Money
    balance_after: Money
    transfer_id: UUID | None = Field(None, description="Present for a transfer's leg.")
    counterparty_wallet_uuid: UUID | None = Field(
        None, description="Present with the other wallet."
    )
    hold_id: UUID | None = Field(None, description="Present for a hold's entries.")
    reverses_entry_id: int | None = Field(None, description="Present for a reversal.")
    description: str | None = Field(None, description="Present when one was given.")
    metadata: dict[str, str] | None = Field(
        None, description="Present when the request that wrote it had metadata."
    )


class Statement(BaseModel):
    model_config = {"json_schema_extra": {"examples": [STATEMENT_EXAMPLE]}}

    wallet_uuid: UUID
    currency: str = Field(description="The wallet's ISO 4217 currency: every amount's.")
    from_: datetime | None = Field(alias="from", description="The period's start, as asked.")
    to: datetime | None = Field(description="The period's end, as asked.")
    opening_balance: Money = Field(description="The balance before the period's first entry.")
    closing_balance: Money = Field(description="The balance after its last entry.")
    entries: list[StatementEntry] = Field(description="Every entry of the period, oldest first.")
