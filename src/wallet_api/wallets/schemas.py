"""Request and response bodies of the wallet endpoints."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema
from pydantic_core import PydanticCustomError

from wallet_api.core.money import MAX_MINOR_UNITS, format_minor_units, to_minor_units
from wallet_api.wallets.models import OperationType


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
