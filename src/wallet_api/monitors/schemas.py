"""Request and response bodies of balance monitors."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from wallet_api.core.fields import Amount, Money
from wallet_api.core.money import Currency
from wallet_api.core.responses import json_number
from wallet_api.monitors.repository import MonitorRow

#: Monitors a wallet may have (each is judged by every commit that moves it).
MONITORS_PER_WALLET = 10

MONITOR_REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "running low": {"condition": "below", "threshold": 20},
    "over a limit": {"condition": "above", "threshold": "10000.00"},
}


class MonitorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    condition: Literal["below", "above"] = Field(
        description="Triggered when the available balance goes below (or above) the threshold."
    )
    threshold: Amount


class Monitor(BaseModel):
    id: UUID
    wallet_uuid: UUID
    condition: Literal["below", "above"]
    threshold: Money
    currency: str = Field(description="The wallet's ISO 4217 currency (the threshold's).")
    across: bool = Field(
        description="Whether the available balance is across the threshold now: the next "
        "`balance_monitor.triggered` comes when it goes across after being back."
    )
    created_at: datetime


class MonitorsPage(BaseModel):
    items: list[Monitor]


def monitor_document(row: MonitorRow, currency: Currency) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "wallet_uuid": str(row.wallet_id),
        "condition": row.condition,
        "threshold": json_number(row.threshold, currency.exponent),
        "currency": currency.code,
        "across": row.across,
        "created_at": row.created_at,
    }
