"""Entries: the one shape of every movement of money, as the ledger records it. Pure.

An entry is one or more legs, each a signed change of one wallet's balance that becomes
one ledger row: a deposit or a withdrawal is one leg; a transfer is a debit of its source
and a credit of its destination; the reversal of a transfer debits the destination and
credits the source back. An entry applies whole or not at all: `plan.py` judges a batch
of them, in order, each on the balances the entries before it left, and `writer.py`
writes them.
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


#: The kinds that add to a balance; the others take from it.
CREDIT_KINDS = frozenset({EntryKind.DEPOSIT, EntryKind.TRANSFER_IN, EntryKind.REVERSAL_IN})
TRANSFER_KINDS = (EntryKind.TRANSFER_IN, EntryKind.TRANSFER_OUT)
REVERSAL_KINDS = (EntryKind.REVERSAL_IN, EntryKind.REVERSAL_OUT)
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
    counterparty: UUID | None = None  # the other wallet of a transfer (or its reversal)
    reverses: int | None = None  # the ledger row this leg compensates

    @property
    def delta(self) -> int:
        return self.amount if self.kind in CREDIT_KINDS else -self.amount


class Shortfall(enum.Enum):
    """Why an entry was refused."""

    MISSING = "the wallet does not exist"
    INSUFFICIENT = "the balance does not cover the debit"
    OVER_LIMIT = "the credit would exceed the balance limit"
    ALREADY_REVERSED = "the entry it reverses was reversed already"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An entry that changed nothing: which leg, why, and the balance it was judged on."""

    reason: Shortfall
    leg: int
    balance: int | None = None


@dataclass(slots=True)
class Posted:
    """An applied entry: each leg's balance right after it, and when it was applied."""

    balances: tuple[int, ...]
    at: datetime


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

    def response(self, outcome: Posted | Refusal) -> tuple[int, str]:
        """(status, body) of the response to `outcome`, as kept for the key."""
        assert self.render is not None, "an entry with a key renders its outcomes"
        return self.render(outcome)
