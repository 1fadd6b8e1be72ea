"""The bodies of the feed: an event, a page of them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field

from wallet_api.core.idempotency import client_key
from wallet_api.core.responses import json_number, stored_json
from wallet_api.events.repository import EventRow, HoldFacts, LegRow
from wallet_api.posting.events import EventType
from wallet_api.wallets.schemas import OperationItem

EVENTS_LIMIT_DEFAULT = 100
EVENTS_LIMIT_MAX = 500
#: Seconds a page may wait for a first event (long-poll).
WAIT_MAX = 30


class EventEntry(OperationItem):
    """A ledger row the change wrote, as the wallet's history shows it, with its wallet
    and its place in that wallet's ledger (`seq`: 1, 2, 3, ... without gaps, so that a
    receiver can order a wallet's events and see one missing)."""

    wallet_uuid: UUID
    seq: int | None = Field(
        description="Its place in the wallet's ledger; null for rows written before the "
        "numbering began."
    )


class EventHold(BaseModel):
    """What never changes about a hold (what it is now: GET /api/v1/holds/{hold_id})."""

    hold_id: UUID
    wallet_uuid: UUID
    amount: float = Field(description="As held.")
    expires_at: datetime
    description: str | None = None
    metadata: dict[str, str] | None = None


class EventMonitor(BaseModel):
    monitor_id: UUID
    condition: Literal["below", "above"]
    threshold: float
    available: float = Field(description="The wallet's available balance its commit left.")


class EventData(BaseModel):
    wallet_uuid: UUID = Field(description="The wallet of the owner's that the change touched.")
    currency: str = Field(
        description="The wallet's ISO 4217 currency: every amount of the event is in it."
    )
    entries: list[EventEntry] = Field(
        description="The ledger rows it wrote on the owner's wallets, in the order they "
        "were applied (none for `wallet.created`). A transfer or a capture into another "
        "owner's wallet is an event of each owner, each with its own rows."
    )
    hold: EventHold | None = Field(
        None, description="For `hold.*` events of the hold's owner (not a capture's payee)."
    )
    monitor: EventMonitor | None = Field(
        None, description="For `balance_monitor.triggered`: the monitor, and what was available."
    )


class Event(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1042,
                    "type": "operation.applied",
                    "created_at": "2026-12-05T03:15:06.123456+00:00",
                    "data": {
                        "wallet_uuid": "3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47",
                        "currency": "USD",
                        "entries": [
                            {
                                "id": 42,
                                "wallet_uuid": "3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47",
                                "seq": 7,
                                "operation": "DEPOSIT",
                                "amount": 10,
                                "balance_after": 10.3,
                                "created_at": "2026-12-05T03:15:06.123456+00:00",
                            }
                        ],
                    },
                }
            ]
        }
    )

    id: int = Field(description="Stable: the same event is always the same id.")
    type: EventType
    created_at: datetime = Field(description="When its transaction committed, about.")
    data: EventData


class EventsPage(BaseModel):
    items: list[Event]
    next_cursor: str = Field(
        description="Pass it back as `after` for the events that follow (always given: the "
        "feed has no last page; an empty page keeps the position)."
    )


def _text(value: UUID | None) -> str | None:
    # asyncpg's UUIDs are a subclass orjson does not serialise.
    return None if value is None else str(value)


def _entry(leg: LegRow, exponent: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": leg.id,
        "wallet_uuid": str(leg.wallet_id),
        "seq": leg.seq,
        "operation": leg.operation,
        "amount": json_number(leg.amount, exponent),
        "balance_after": json_number(leg.balance_after, exponent),
        "created_at": leg.created_at,
    }
    optional = {
        "idempotency_key": client_key(leg.idempotency_key),
        "transfer_id": _text(leg.transfer_id),
        "counterparty_wallet_uuid": _text(leg.counterparty_wallet_id),
        "reverses_entry_id": leg.reverses_id,
        "description": leg.description,
        "hold_id": _text(leg.hold_id),
        "metadata": stored_json(leg.metadata),
    }
    item.update((name, value) for name, value in optional.items() if value is not None)
    return item


def event_document(
    event: EventRow, legs: Mapping[int, LegRow], holds: Mapping[UUID, HoldFacts]
) -> dict[str, Any]:
    """An event as the API shows it: its rows on wallets of its owner (another owner's
    rows, the other side of a transfer, are that owner's event)."""
    entries = [
        legs[ledger_id]
        for ledger_id in event.ledger_ids
        if ledger_id in legs and legs[ledger_id].owner == event.owner
    ]
    # An event's amounts are of its wallet's currency: an entry moves one currency.
    exponent = event.currency_exponent
    data: dict[str, Any] = {
        "wallet_uuid": str(event.wallet_id),
        "currency": event.currency,
        "entries": [_entry(leg, exponent) for leg in entries],
    }
    hold_id = next((leg.hold_id for leg in entries if leg.hold_id is not None), None)
    hold = None if hold_id is None else holds.get(hold_id)
    # The payee of a capture has the hold's id on its row, not the payer's hold.
    if hold is not None and hold.owner == event.owner:
        data["hold"] = {
            "hold_id": str(hold.id),
            "wallet_uuid": str(hold.wallet_id),
            "amount": json_number(hold.amount, exponent),
            "expires_at": hold.expires_at,
        }
        if hold.description is not None:
            data["hold"]["description"] = hold.description
        if hold.metadata is not None:
            data["hold"]["metadata"] = stored_json(hold.metadata)
    if event.detail is not None:  # a monitor's crossing
        detail = orjson.loads(event.detail)
        data["monitor"] = {
            "monitor_id": detail["monitor_id"],
            "condition": detail["condition"],
            "threshold": json_number(detail["threshold"], exponent),
            "available": json_number(detail["available"], exponent),
        }
    return {"id": event.id, "type": event.type, "created_at": event.created_at, "data": data}
