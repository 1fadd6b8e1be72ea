"""Request and response bodies of the hold endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from wallet_api.core.fields import (
    Amount,
    CanonicalUUID,
    Metadata,
    Money,
    canonical_amount,
    canonical_metadata,
)
from wallet_api.core.money import Currency
from wallet_api.core.responses import json_number, stored_json
from wallet_api.transfers.schemas import Description

#: A hold's lifetime when the request names none: 7 days (a card authorization's usual).
DEFAULT_EXPIRES_IN = 7 * 24 * 3600
#: The longest a hold may live: 30 days.
MAX_EXPIRES_IN = 30 * 24 * 3600
#: Holds per page of a wallet's list, by default and at most.
HOLDS_LIMIT_DEFAULT = 50
HOLDS_LIMIT_MAX = 100

_HOLD = "5b0e7f3c-2a4d-4e6f-8a1b-9c3d5e7f9a2b"
_WALLET = "3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47"
_PAYEE = "8d2f4b6a-1c3e-4f5a-9b7d-0e2c4a6b8d1f"

HOLD_REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "a fare reserved for an hour": {
        "wallet_uuid": _WALLET,
        "amount": "25.00",
        "expires_in": 3600,
        "description": "ride 7731",
    },
    "for the default 7 days": {"wallet_uuid": _WALLET, "amount": 100},
}
CAPTURE_REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "all of it, out of the service": {},
    "part of it to a seller, the rest released": {"amount": "18.40", "to_wallet_uuid": _PAYEE},
    "part of it, the rest kept held": {"amount": 10, "final": False},
}


class HoldRequest(BaseModel):
    """Set `amount` aside on a wallet: its available balance falls by it until the hold is
    captured, voided or expires."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": list(HOLD_REQUEST_EXAMPLES.values())},
    )

    wallet_uuid: CanonicalUUID
    amount: Amount
    expires_in: int = Field(
        DEFAULT_EXPIRES_IN,
        ge=1,
        le=MAX_EXPIRES_IN,
        description="Seconds until the hold expires (by the database's clock), at most "
        f"{MAX_EXPIRES_IN} (30 days); {DEFAULT_EXPIRES_IN} (7 days) if not given. An "
        "expired hold sets nothing aside and can no longer be captured.",
    )
    description: Description = None
    metadata: Metadata | None = None

    def canonical(self) -> str:
        """What makes two hold requests the same (for their Idempotency-Key)."""
        return orjson.dumps(
            [
                str(self.wallet_uuid),
                canonical_amount(self.amount),
                self.expires_in,
                self.description,
            ]
        ).decode() + canonical_metadata(self.metadata)


class CaptureRequest(BaseModel):
    """Take all or part of what a hold still holds: out of the service (as a withdrawal)
    or into another wallet (as a transfer)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": list(CAPTURE_REQUEST_EXAMPLES.values())},
    )

    amount: Amount | None = Field(
        None, description="What to capture; all that the hold still holds if not given."
    )
    to_wallet_uuid: CanonicalUUID | None = Field(
        None,
        description="The wallet the money goes to (any owner's: a payment); without it the "
        "money leaves the service.",
    )
    final: StrictBool = Field(
        True,
        description="true: release what is left in the same commit and close the hold; "
        "false: keep it held for a later capture.",
    )
    description: Description = None
    metadata: Metadata | None = None

    def canonical(self) -> str:
        return orjson.dumps(
            [
                canonical_amount(self.amount),
                None if self.to_wallet_uuid is None else str(self.to_wallet_uuid),
                self.final,
                self.description,
            ]
        ).decode() + canonical_metadata(self.metadata)


class Balances(BaseModel):
    balance: Money = Field(description="The wallet's balance: what its ledger holds.")
    held: Money = Field(description="What its active holds set aside.")
    available: Money = Field(description="What it may spend: balance less held.")


class CaptureMade(BaseModel):
    amount: Money
    to_wallet_uuid: UUID | None
    to_balance: Money | None = Field(
        description="The payee's balance right after it; null without a payee, or for a "
        "caller who does not own the payee's wallet."
    )


class Hold(BaseModel):
    """A hold: what it set aside, what was captured and released of it, its state."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "hold_id": _HOLD,
                    "wallet_uuid": _WALLET,
                    "status": "active",
                    "amount": 25,
                    "currency": "USD",
                    "captured": 0,
                    "released": 0,
                    "held": 25,
                    "description": "ride 7731",
                    "created_at": "2026-12-04T19:00:00.123456+00:00",
                    "expires_at": "2026-12-04T20:00:00.123456+00:00",
                    "closed_at": None,
                    "balances": {"balance": 100, "held": 25, "available": 75},
                    "capture": None,
                }
            ]
        }
    )

    hold_id: UUID
    wallet_uuid: UUID
    status: str = Field(description="active, captured, voided or expired.")
    amount: Money = Field(description="What was held.")
    currency: str = Field(description="The wallet's ISO 4217 currency: every amount's.")
    captured: Money
    released: Money
    held: Money = Field(description="What it still holds (0 once closed).")
    description: str | None
    metadata: dict[str, str] | None = Field(
        None, description="The metadata it was made with; null without."
    )
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None = Field(None, description="When it was closed; null if active.")
    balances: Balances | None = Field(
        None,
        description="The wallet's balances right after the request (in the answer to a "
        "POST; null when read).",
    )
    capture: CaptureMade | None = Field(
        None, description="The capture this answer is for (null for any other)."
    )


class HoldsPage(BaseModel):
    items: list[Hold]
    next_cursor: str | None


def hold_document(
    *,
    hold_id: UUID,
    wallet_id: UUID,
    status: str,
    amount: int,
    currency: Currency,
    captured: int,
    held: int,
    description: str | None,
    created_at: datetime,
    expires_at: datetime,
    closed_at: datetime | None,
    balances: tuple[int, int] | None = None,
    capture: tuple[int, UUID | None, int | None] | None = None,
    metadata: str | None = None,
) -> dict[str, Any]:
    """A hold as the API shows it. `balances`: the wallet's balance and what it holds
    right after the request; `capture`: the amount, the payee and its balance; `metadata`:
    the JSON text it was made with."""
    exponent = currency.exponent
    return {
        "hold_id": str(hold_id),
        "wallet_uuid": str(wallet_id),
        "status": status,
        "amount": json_number(amount, exponent),
        "currency": currency.code,
        "captured": json_number(captured, exponent),
        "released": json_number(amount - captured - held, exponent),
        "held": json_number(held, exponent),
        "description": description,
        "metadata": stored_json(metadata),
        "created_at": created_at,
        "expires_at": expires_at,
        "closed_at": closed_at,
        "balances": None
        if balances is None
        else {
            "balance": json_number(balances[0], exponent),
            "held": json_number(balances[1], exponent),
            "available": json_number(balances[0] - balances[1], exponent),
        },
        "capture": None
        if capture is None
        else {
            "amount": json_number(capture[0], exponent),
            "to_wallet_uuid": None if capture[1] is None else str(capture[1]),
            "to_balance": None if capture[2] is None else json_number(capture[2], exponent),
        },
    }


def render(document: dict[str, Any]) -> str:
    return orjson.dumps(document).decode()
