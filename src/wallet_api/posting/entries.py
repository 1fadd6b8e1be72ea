"""Entries: the one shape of every movement of money, as the ledger records it. Pure.

An entry is one or more legs, each a change of one wallet that becomes one ledger row: a
deposit or a withdrawal is one leg; a transfer is a debit of its source and a credit of
its destination; the reversal of a transfer debits the destination and credits the source
back. A hold sets money aside on a wallet (its available balance falls, its balance does
not); a capture takes what was held (the balance falls, and with a payee a second leg
credits it); a release gives what was held back. An entry applies whole or not at all:
`plan.py` judges a batch of them, in order, each on the balances the entries before it
left, and `writer.py` writes them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


class EntryKind(enum.StrEnum):
    """The kind of a ledger row, which gives its sign."""

    DEPOSIT = "DEPOSIT"
    WITHDRAW = "WITHDRAW"
    TRANSFER_IN = "TRANSFER_IN"
    TRANSFER_OUT = "TRANSFER_OUT"
    REVERSAL_IN = "REVERSAL_IN"
    REVERSAL_OUT = "REVERSAL_OUT"
    HOLD = "HOLD"
    CAPTURE = "CAPTURE"
    CAPTURE_IN = "CAPTURE_IN"
    RELEASE = "RELEASE"


#: The kinds that add to a balance.
CREDIT_KINDS = frozenset(
    {EntryKind.DEPOSIT, EntryKind.TRANSFER_IN, EntryKind.REVERSAL_IN, EntryKind.CAPTURE_IN}
)
#: The kinds that leave the balance as it is (they move what is held); the others take
#: from it.
UNMOVING_KINDS = frozenset({EntryKind.HOLD, EntryKind.RELEASE})
TRANSFER_KINDS = (EntryKind.TRANSFER_IN, EntryKind.TRANSFER_OUT)
REVERSAL_KINDS = (EntryKind.REVERSAL_IN, EntryKind.REVERSAL_OUT)
HOLD_KINDS = (EntryKind.HOLD, EntryKind.CAPTURE, EntryKind.CAPTURE_IN, EntryKind.RELEASE)
#: Characters a transfer's or a reversal's description may have.
DESCRIPTION_MAX_LENGTH = 500


# The shapes below are made for every request on the write path: plain slotted classes
# (a frozen dataclass's __init__ costs twice as much), never changed once made.


@dataclass(slots=True)
class Leg:
    """One wallet's side of an entry: one ledger row."""

    wallet_id: UUID
    kind: EntryKind
    amount: int  # minor units, positive
    counterparty: UUID | None = None  # the other wallet of a transfer, its reversal, a capture
    reverses: int | None = None  # the ledger row this leg compensates
    hold: UUID | None = None  # the hold it creates, captures or releases

    @property
    def delta(self) -> int:
        """Its change of the wallet's balance."""
        if self.kind in CREDIT_KINDS:
            return self.amount
        return 0 if self.kind in UNMOVING_KINDS else -self.amount

    @property
    def held_delta(self) -> int:
        """Its change of what the wallet's holds set aside."""
        if self.kind is EntryKind.HOLD:
            return self.amount
        if self.kind in (EntryKind.CAPTURE, EntryKind.RELEASE):
            return -self.amount
        return 0


class Shortfall(enum.Enum):
    """Why an entry was refused."""

    MISSING = "the wallet does not exist"
    INSUFFICIENT = "the balance does not cover the debit"
    OVER_LIMIT = "the credit would exceed the balance limit"
    ALREADY_REVERSED = "the entry it reverses was reversed already"
    HOLD_CLOSED = "the hold was captured, voided or has expired"
    HOLD_NOT_EXPIRED = "the hold has not expired"
    HOLD_EXCEEDED = "more than the hold still holds"
    HOLD_CHANGED = "the hold changed since it was read (another capture)"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An entry that changed nothing: which leg, why, and the balance it was judged on
    (for a hold it may not take from: what the hold still holds, and its status)."""

    reason: Shortfall
    leg: int
    balance: int | None = None
    hold_status: str | None = None


#: The status of a hold that is open.
ACTIVE = "active"


@dataclass(slots=True)
class HoldState:
    """A hold as the planner sees it: what it still holds, what was captured of it, its
    status, and whether it has expired (by the database's clock, when it was locked)."""

    remaining: int
    expired: bool = False
    captured: int = 0
    status: str = ACTIVE


@dataclass(slots=True)
class Posted:
    """An applied entry: each leg's balance right after it, when it was applied, and, for
    an entry that names a hold, the state it left the hold in and the available balance
    of its first leg's wallet right after it."""

    balances: tuple[int, ...]
    at: datetime
    hold: HoldState | None = None
    available: int | None = None


@dataclass(slots=True, eq=False)
class Entry:
    """Legs applied together, or not at all, and what to keep for the request's
    Idempotency-Key: `render` gives the response (status, body) of an outcome (needed
    only with a key).

    `applied_body`, when set, is the status of the response to the applied entry and the
    text around the first leg's balance after it (in units, as `core.money` writes it)
    that makes its body: its
    key's response can then be written by the statement that applies it, before its
    balance is known here (the one-statement write); without it, a keyed entry is written
    in a transaction that holds its rows' locks. `keep_missing`: whether a refusal for a
    wallet that does not exist is kept for the key (a transfer's is; an operation on a
    missing wallet is refused alike on every try, and keeps nothing)."""

    legs: tuple[Leg, ...]
    render: Callable[[Posted | Refusal], tuple[int, str]] | None = None
    transfer_id: UUID | None = None
    description: str | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""
    api_key_id: str | None = None  # the key that sent it, kept on its ledger rows
    applied_body: tuple[int, str, str] | None = None
    keep_missing: bool = True
    #: For an entry with hold legs: the status the hold is left in when nothing of it
    #: stays held (`captured`, `voided`, `expired`: only an expired hold may be released
    #: as `expired`, only one that has not expired otherwise); for a new hold, when it
    #: expires, in seconds from the transaction's time.
    hold_status: str | None = None
    expires_in: int | None = None
    #: The type of the event its commit writes (posting/events.py), None: no event.
    event: str | None = None
    #: The client's metadata (a JSON object's text, `core.fields.metadata_text`), kept on
    #: each of its ledger rows.
    metadata: str | None = None

    def response(self, outcome: Posted | Refusal) -> tuple[int, str]:
        """(status, body) of the response to `outcome`, as kept for the key."""
        assert self.render is not None, "an entry with a key renders its outcomes"
        return self.render(outcome)
