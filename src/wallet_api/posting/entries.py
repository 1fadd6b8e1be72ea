"""Entries: what moves money, as the ledger records it. Pure: no I/O.

An entry is one or more legs, each a signed change of one wallet's balance that becomes
one ledger row: a transfer is a debit of its source and a credit of its destination; the
reversal of a transfer debits the destination and credits the source back. An entry
applies whole or not at all: `plan_entries` judges a batch of them, in order, on the
balances of their wallets (read under the rows' locks), each on the balances the entries
before it left.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from wallet_api.core.money import MAX_MINOR_UNITS


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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Posted:
    """An applied entry: each leg's balance right after it, and when it was applied."""

    balances: tuple[int, ...]
    at: datetime


@dataclass(frozen=True, slots=True, eq=False)
class Entry:
    """Legs applied together, or not at all, and what to keep for the request's
    Idempotency-Key: `render` gives the response (status, body) of an outcome."""

    legs: tuple[Leg, ...]
    render: Callable[[Posted | Refusal], tuple[int, str]]
    transfer_id: UUID | None = None
    description: str | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""
    api_key_id: str | None = None  # the key that sent it, kept on its ledger rows


def plan_entries(
    balances: Mapping[UUID, int],
    entries: Sequence[Entry],
    *,
    reversed_before: Collection[int],
    at: datetime,
) -> list[Posted | Refusal]:
    """Each entry's outcome, judged in order: on the `balances` (those of the wallets
    that exist) as the entries before it left them. An entry is refused if one of its
    wallets is missing, a leg reverses a row reversed before (or earlier in the batch), or
    a leg would take its wallet below zero or above the limit; a refused entry changes
    nothing."""
    current = dict(balances)
    reversed_rows = set(reversed_before)
    outcomes: list[Posted | Refusal] = []
    for entry in entries:
        outcome = _judge(entry, current, reversed_rows, at)
        if isinstance(outcome, Posted):
            # A Posted has a balance per leg by construction: `strict` only documents it.
            for leg, balance in zip(entry.legs, outcome.balances, strict=True):  # pragma: no mutate
                current[leg.wallet_id] = balance
                if leg.reverses is not None:
                    reversed_rows.add(leg.reverses)
        outcomes.append(outcome)
    return outcomes


def _judge(
    entry: Entry, balances: Mapping[UUID, int], reversed_rows: Collection[int], at: datetime
) -> Posted | Refusal:
    for index, leg in enumerate(entry.legs):
        if leg.wallet_id not in balances:
            return Refusal(Shortfall.MISSING, index)
    for index, leg in enumerate(entry.legs):
        if leg.reverses is not None and leg.reverses in reversed_rows:
            return Refusal(Shortfall.ALREADY_REVERSED, index)
    after: dict[UUID, int] = {}
    result: list[int] = []
    for index, leg in enumerate(entry.legs):
        balance = after.get(leg.wallet_id, balances[leg.wallet_id])
        new = balance + leg.delta
        if new < 0:
            return Refusal(Shortfall.INSUFFICIENT, index, balance)
        if new > MAX_MINOR_UNITS:
            return Refusal(Shortfall.OVER_LIMIT, index, balance)
        after[leg.wallet_id] = new
        result.append(new)
    return Posted(tuple(result), at)


@dataclass(frozen=True, slots=True)
class RangePlan:
    """A batch of entries planned to apply whole, on any start balances within each
    wallet's [low, high]: every leg then keeps its wallet within [0, the limit], so
    `plan_entries` on those balances posts every entry. `deltas`: each wallet's total;
    `offsets`: each leg's balance after it, less its wallet's start (the legs in order)."""

    wallets: tuple[UUID, ...]
    lows: tuple[int, ...]
    highs: tuple[int, ...]
    deltas: tuple[int, ...]
    offsets: tuple[int, ...]


def plan_in_range(entries: Sequence[Entry]) -> RangePlan | None:
    """The range plan of a batch, or None when no start balance lets it all apply (a
    wallet's legs need more room than the limit gives)."""
    net: dict[UUID, int] = {}
    lowest: dict[UUID, int] = {}  # the lowest prefix sum of each wallet's legs
    highest: dict[UUID, int] = {}
    offsets: list[int] = []
    for entry in entries:
        for leg in entry.legs:
            prefix = net.get(leg.wallet_id, 0) + leg.delta
            net[leg.wallet_id] = prefix
            lowest[leg.wallet_id] = min(lowest.get(leg.wallet_id, 0), prefix)
            highest[leg.wallet_id] = max(highest.get(leg.wallet_id, 0), prefix)
            offsets.append(prefix)
    wallets = tuple(net)
    lows = tuple(-lowest[wallet] for wallet in wallets)
    highs = tuple(MAX_MINOR_UNITS - highest[wallet] for wallet in wallets)
    # lows and highs come from the same wallets: `strict` only documents it.
    if any(low > high for low, high in zip(lows, highs, strict=True)):  # pragma: no mutate
        return None
    return RangePlan(wallets, lows, highs, tuple(net[w] for w in wallets), tuple(offsets))


def posted_in_range(
    entries: Sequence[Entry], plan: RangePlan, starts: Mapping[UUID, int], at: datetime
) -> list[Posted]:
    """Each entry's outcome once the plan was written on the `starts` found."""
    outcomes: list[Posted] = []
    offsets = iter(plan.offsets)
    for entry in entries:
        balances = tuple(starts[leg.wallet_id] + next(offsets) for leg in entry.legs)
        outcomes.append(Posted(balances, at))
    return outcomes
