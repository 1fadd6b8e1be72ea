"""The service's answers as typed, immutable objects. Amounts are `Decimal`, parsed from
the JSON text exactly (never through a binary float). Fields a newer service adds are kept
(`model_extra`), so an older client does not break on them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class WalletCreated(Model):
    wallet_uuid: UUID
    #: The wallet's ISO 4217 currency; None for DEFAULT_CURRENCY (the specification's
    #: bodies leave it unsaid).
    currency: str | None = None
    #: The metadata it was made with (None: none).
    metadata: dict[str, str] | None = None


class WalletBalance(Model):
    balance: Decimal
    #: The wallet's ISO 4217 currency; None for DEFAULT_CURRENCY (the specification's
    #: bodies leave it unsaid).
    currency: str | None = None
    #: With `at`: the time asked (the balance after the last entry dated at or before it).
    at: datetime | None = None


class HoldBalances(Model):
    """The ledger balance, what active holds set aside, and what may be spent."""

    balance: Decimal
    held: Decimal
    available: Decimal


class Balances(HoldBalances):
    """A wallet's balances, in its currency, and the metadata it was made with."""

    #: The ISO 4217 currency of the amounts (None from a service older than currencies).
    currency: str | None = None
    metadata: dict[str, str] | None = None


class StatementEntry(Model):
    """An entry of a statement's period, with what it did to the balance (`change`)."""

    id: int
    seq: int | None = None
    created_at: datetime
    operation: str
    change: Decimal
    amount: Decimal
    balance_after: Decimal
    transfer_id: UUID | None = None
    counterparty_wallet_uuid: UUID | None = None
    hold_id: UUID | None = None
    reverses_entry_id: int | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None


class Statement(Model):
    """A wallet's statement of a period: its balance at the start and at the end, and
    every entry between, oldest first."""

    wallet_uuid: UUID
    from_: datetime | None = Field(alias="from")
    to: datetime | None
    opening_balance: Decimal
    closing_balance: Decimal
    entries: list[StatementEntry]
    #: The ISO 4217 currency of the amounts (None from a service older than currencies).
    currency: str | None = None


class OperationResult(Model):
    status: str
    balance: Decimal
    #: The wallet's ISO 4217 currency; None for DEFAULT_CURRENCY (the specification's
    #: bodies leave it unsaid).
    currency: str | None = None


class OperationItem(Model):
    """A ledger entry of a wallet's history."""

    id: int
    operation: str
    amount: Decimal
    balance_after: Decimal
    created_at: datetime
    idempotency_key: str | None = None
    transfer_id: UUID | None = None
    counterparty_wallet_uuid: UUID | None = None
    reverses_entry_id: int | None = None
    reversed_by_entry_id: int | None = None
    description: str | None = None
    hold_id: UUID | None = None
    metadata: dict[str, str] | None = None


class Page(Model, Generic[T]):
    """A page of a list, and the cursor of the next one (None on the last)."""

    items: list[T]
    next_cursor: str | None


class OperationsPage(Page[OperationItem]):
    """A page of a wallet's history."""

    #: The ISO 4217 currency of its amounts (None from a service older than currencies).
    currency: str | None = None


class BatchResult(Model):
    """One operation of a batch: its status and the body it would have had alone (the
    operation's result, or a problem document)."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def result(self) -> OperationResult | None:
        """The operation's result, when it applied."""
        return OperationResult.model_validate(self.body) if self.ok else None


class BatchResponse(Model):
    results: list[BatchResult]


class TransferReversal(Model):
    amount: Decimal
    reversed_at: datetime


class Transfer(Model):
    """A transfer; each balance is shown only to the owner of its wallet (None else)."""

    transfer_id: UUID
    from_wallet_uuid: UUID
    to_wallet_uuid: UUID
    amount: Decimal
    #: The ISO 4217 currency of the amounts (None from a service older than currencies).
    currency: str | None = None
    description: str | None
    metadata: dict[str, str] | None = None
    from_balance: Decimal | None
    to_balance: Decimal | None
    created_at: datetime
    reversal: TransferReversal | None = None


class ReversalLeg(Model):
    wallet_uuid: UUID
    operation: str
    amount: Decimal
    balance_after: Decimal | None
    reverses_entry_id: int


class Reversal(Model):
    transfer_id: UUID | None
    amount: Decimal
    #: The ISO 4217 currency of the amounts (None from a service older than currencies).
    currency: str | None = None
    description: str | None
    legs: list[ReversalLeg]
    created_at: datetime


class CaptureMade(Model):
    amount: Decimal
    to_wallet_uuid: UUID | None
    to_balance: Decimal | None


class Hold(Model):
    """A hold: what it set aside, captured and released, and its state (`active`,
    `captured`, `voided`, `expired`). `balances` and `capture` are given in the answer to
    a POST."""

    hold_id: UUID
    wallet_uuid: UUID
    status: str
    amount: Decimal
    #: The ISO 4217 currency of the amounts (None from a service older than currencies).
    currency: str | None = None
    captured: Decimal
    released: Decimal
    held: Decimal
    description: str | None
    metadata: dict[str, str] | None = None
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None = None
    balances: HoldBalances | None = None
    capture: CaptureMade | None = None


class Items(Model, Generic[T]):
    """A whole list (webhook endpoints, deliveries, balance monitors): no pages."""

    items: list[T]


class EventEntry(OperationItem):
    """A ledger row an event's change wrote, with its wallet and its place in that
    wallet's ledger (1, 2, 3, ...; None for rows written before the numbering began)."""

    wallet_uuid: UUID
    seq: int | None


class EventHold(Model):
    hold_id: UUID
    wallet_uuid: UUID
    amount: Decimal
    expires_at: datetime
    description: str | None = None
    metadata: dict[str, str] | None = None


class EventMonitor(Model):
    monitor_id: UUID
    condition: str
    threshold: Decimal
    available: Decimal


class EventData(Model):
    wallet_uuid: UUID
    #: The ISO 4217 currency of the amounts (None from a service older than currencies).
    currency: str | None = None
    entries: list[EventEntry]
    hold: EventHold | None = None
    monitor: EventMonitor | None = None


class Event(Model):
    """A committed change (docs/EVENTS.md): its id is stable, its type says what changed."""

    id: int
    type: str
    created_at: datetime
    data: EventData


class WebhookEndpoint(Model):
    id: UUID
    url: str
    types: list[str] | None
    description: str | None
    status: str
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpoint):
    """A new endpoint, with the secret that signs its deliveries: shown only here."""

    secret: str


class Attempt(Model):
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None


class Delivery(Model):
    id: int
    endpoint_id: UUID
    status: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None
    tries: list[Attempt]


class BalanceMonitor(Model):
    id: UUID
    wallet_uuid: UUID
    condition: str
    threshold: Decimal
    #: The ISO 4217 currency of the amounts (None from a service older than currencies).
    currency: str | None = None
    across: bool
    created_at: datetime
