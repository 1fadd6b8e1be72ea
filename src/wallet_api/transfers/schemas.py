"""Request and response bodies of the transfer endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator
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
from wallet_api.core.responses import json_number, stored_json
from wallet_api.posting.entries import DESCRIPTION_MAX_LENGTH

Description = Annotated[
    str | None,
    Field(
        max_length=DESCRIPTION_MAX_LENGTH,
        # PostgreSQL's text cannot hold NUL (pydantic refuses lone surrogates itself).
        pattern=r"^[^\u0000]*$",
        description=f"Free text kept with the ledger rows, at most {DESCRIPTION_MAX_LENGTH} "
        "characters, without NUL.",
    ),
]

_EXAMPLE_ID = "7c1f3a52-9e1b-4d8e-a1c4-5b2f6d0e8a93"
_SOURCE = "3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47"
_DESTINATION = "8d2f4b6a-1c3e-4f5a-9b7d-0e2c4a6b8d1f"


#: Named examples of transfer requests (the published contract's).
TRANSFER_REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "a transfer": {
        "from_wallet_uuid": _SOURCE,
        "to_wallet_uuid": _DESTINATION,
        "amount": "12.50",
        "description": "order 42",
    },
    "without a description": {
        "from_wallet_uuid": _SOURCE,
        "to_wallet_uuid": _DESTINATION,
        "amount": 100,
    },
}


#: The one rule of a transfer request that its schema states in words only.
SAME_WALLET_RULE = "from_wallet_uuid and to_wallet_uuid must be different wallets"


class TransferRequest(BaseModel):
    """Move `amount` from one wallet to another: both legs, or neither. The two wallets
    must differ (a rule JSON Schema cannot state; a 422 `validation_error` otherwise)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": list(TRANSFER_REQUEST_EXAMPLES.values())},
    )

    from_wallet_uuid: CanonicalUUID
    to_wallet_uuid: CanonicalUUID
    amount: Amount
    description: Description = None
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _two_wallets(self) -> Self:
        if self.from_wallet_uuid == self.to_wallet_uuid:
            raise PydanticCustomError("same_wallet", SAME_WALLET_RULE)
        return self

    def canonical(self) -> str:
        """What makes two transfer requests the same (for their Idempotency-Key)."""
        return orjson.dumps(
            [
                str(self.from_wallet_uuid),
                str(self.to_wallet_uuid),
                canonical_amount(self.amount),
                self.description,
            ]
        ).decode() + canonical_metadata(self.metadata)


class TransferReversal(BaseModel):
    amount: Money
    reversed_at: datetime


class Transfer(BaseModel):
    """A transfer, with both wallets' balances right after it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": _EXAMPLE_ID,
                    "from_wallet_uuid": _SOURCE,
                    "to_wallet_uuid": _DESTINATION,
                    "amount": 12.5,
                    "currency": "USD",
                    "description": "order 42",
                    "from_balance": 87.5,
                    "to_balance": 12.5,
                    "created_at": "2026-11-28T07:15:06.123456+00:00",
                    "reversal": {"amount": 5, "reversed_at": "2026-11-28T09:01:12.654321+00:00"},
                }
            ]
        }
    )

    transfer_id: UUID
    from_wallet_uuid: UUID
    to_wallet_uuid: UUID
    amount: Money
    currency: str = Field(description="The ISO 4217 currency of both wallets.")
    description: str | None
    metadata: dict[str, str] | None = Field(
        None, description="The metadata it was made with; null without."
    )
    from_balance: Money | None = Field(
        description="The source's balance right after the transfer; null for a caller who "
        "does not own the source (with API keys)."
    )
    to_balance: Money | None = Field(
        description="The destination's balance right after it; null for a caller who does "
        "not own the destination (with API keys): a payment does not show the payee's "
        "balance to the payer."
    )
    created_at: datetime
    reversal: TransferReversal | None = Field(
        description="What was reversed of it, and when; null if nothing (always null in "
        "the answer to the POST that made it)."
    )


def transfer_body(
    *,
    transfer_id: UUID,
    from_wallet: UUID,
    to_wallet: UUID,
    amount: int,
    currency: Currency,
    description: str | None,
    balances: tuple[int | None, int | None],
    created_at: datetime,
    reversal: tuple[int, datetime] | None = None,
    metadata: str | None = None,
) -> str:
    """The body of a transfer (201 of the POST, kept for its key; 200 of the GET);
    `metadata`: the JSON text it was made with."""
    exponent = currency.exponent
    body: dict[str, Any] = {
        "transfer_id": str(transfer_id),  # str: orjson does not serialise asyncpg's UUIDs
        "from_wallet_uuid": str(from_wallet),
        "to_wallet_uuid": str(to_wallet),
        "amount": json_number(amount, exponent),
        "currency": currency.code,
        "description": description,
        "metadata": stored_json(metadata),
        "from_balance": None if balances[0] is None else json_number(balances[0], exponent),
        "to_balance": None if balances[1] is None else json_number(balances[1], exponent),
        "created_at": created_at,
        "reversal": None
        if reversal is None
        else {"amount": json_number(reversal[0], exponent), "reversed_at": reversal[1]},
    }
    return orjson.dumps(body).decode()
