"""The planner: pure, no I/O. Entries and their wallets' balances in, each entry's
outcome out, with what the writer needs to write them in one statement.

`plan` judges a batch of entries in order, each on the balances the entries before it
left: an entry is refused if one of its wallets is missing, a leg reverses a row reversed
before (or earlier in the batch), or a leg would take its wallet below zero or above the
limit; a refused entry changes nothing, so the entries after it see exactly what they
would have seen had it never been sent.

For each wallet the plan also gives the range of starting balances, [low, high], on which
every decision stays the same (which entries apply, which are refused, and for which leg):
the writer plans on the balance it last saw (a guess), and the statement writes only if
the balance it finds under the row lock lies in the range. Each leg's condition bounds its
own wallet only, so the ranges of a batch's wallets are independent of each other.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from wallet_api.core.money import MAX_MINOR_UNITS
from wallet_api.posting.entries import CREDIT_KINDS, Entry, Leg, Refusal, Shortfall

#: What the planner decided for an entry: each leg's balance right after it, or why not.
Judged = tuple[int, ...] | Refusal


@dataclass(slots=True)
class Span:
    """One wallet in a plan: its starting balance, its balance after the batch, and the
    starting balances [low, high] on which the batch's decisions stay the same."""

    start: int
    balance: int
    low: int = 0
    high: int = MAX_MINOR_UNITS


@dataclass(frozen=True, slots=True)
class Plan:
    """A batch judged: one outcome per entry, in order, and a span per wallet that exists
    among those the entries name."""

    outcomes: list[Judged]
    spans: dict[UUID, Span]

    def writes(self, entries: Sequence[Entry]) -> bool:
        """Whether the batch leaves anything to write: an entry applied, or a key kept."""
        return any(
            not isinstance(outcome, Refusal) or kept(entry, outcome)
            for entry, outcome in zip(entries, self.outcomes, strict=True)
        )


def plan(
    starts: Mapping[UUID, int],
    entries: Iterable[Entry],
    *,
    reversed_before: Collection[int] = (),
) -> Plan:
    """Judge `entries` in order on `starts` (the balances of the wallets that exist)."""
    spans: dict[UUID, Span] = {}
    reversed_rows = set(reversed_before)
    outcomes: list[Judged] = []
    for entry in entries:
        outcomes.append(_judge(entry, starts, spans, reversed_rows))
    return Plan(outcomes, spans)


def _judge(
    entry: Entry, starts: Mapping[UUID, int], spans: dict[UUID, Span], reversed_rows: set[int]
) -> Judged:
    legs = entry.legs
    if len(legs) == 1:  # the common case, without the bookkeeping of several legs
        return _judge_one(legs[0], starts, spans, reversed_rows)
    for index, leg in enumerate(legs):
        if leg.wallet_id not in starts:
            return Refusal(Shortfall.MISSING, index)
    for index, leg in enumerate(legs):
        if leg.reverses is not None and leg.reverses in reversed_rows:
            return Refusal(Shortfall.ALREADY_REVERSED, index)
    after: dict[UUID, int] = {}
    balances: list[int] = []
    for index, leg in enumerate(legs):
        wallet_id = leg.wallet_id
        span = spans.get(wallet_id)
        if span is None:
            start = starts[wallet_id]
            span = spans[wallet_id] = Span(start, start)
        balance = _leg(leg, index, span, after.get(wallet_id, span.balance))
        if isinstance(balance, Refusal):
            return balance
        after[wallet_id] = balance
        balances.append(balance)
    for wallet_id, balance in after.items():
        spans[wallet_id].balance = balance
    for leg in legs:
        if leg.reverses is not None:
            reversed_rows.add(leg.reverses)
    return tuple(balances)


def _judge_one(
    leg: Leg, starts: Mapping[UUID, int], spans: dict[UUID, Span], reversed_rows: set[int]
) -> Judged:
    """`_judge` for an entry of one leg: the same decisions, in the same order."""
    wallet_id = leg.wallet_id
    span = spans.get(wallet_id)
    if span is None:
        start = starts.get(wallet_id)
        if start is None:
            return Refusal(Shortfall.MISSING, 0)
        span = spans[wallet_id] = Span(start, start)
    if leg.reverses is not None:
        if leg.reverses in reversed_rows:
            return Refusal(Shortfall.ALREADY_REVERSED, 0)
        reversed_rows.add(leg.reverses)  # undone below if the leg is refused
    balance = _leg(leg, 0, span, span.balance)
    if isinstance(balance, Refusal):
        if leg.reverses is not None:
            reversed_rows.discard(leg.reverses)
        return balance
    span.balance = balance
    return (balance,)


def _leg(leg: Leg, index: int, span: Span, balance: int) -> int | Refusal:
    """The balance after the leg, or its refusal. Either decision bounds the starting
    balance of the leg's own wallet: the same decision is taken on any start within."""
    offset, amount = balance - span.start, leg.amount
    if leg.kind in CREDIT_KINDS:
        if balance + amount > MAX_MINOR_UNITS:
            span.low = max(span.low, MAX_MINOR_UNITS - amount - offset + 1)
            return Refusal(Shortfall.OVER_LIMIT, index, balance)
        span.high = min(span.high, MAX_MINOR_UNITS - amount - offset)
        return balance + amount
    if amount > balance:
        span.high = min(span.high, amount - offset - 1)
        return Refusal(Shortfall.INSUFFICIENT, index, balance)
    span.low = max(span.low, amount - offset)
    return balance - amount


def kept(entry: Entry, refusal: Refusal) -> bool:
    """Whether a refusal is kept for its entry's key (a refusal for a missing wallet
    only when the entry says so)."""
    if entry.idempotency_key is None:
        return False
    return refusal.reason is not Shortfall.MISSING or entry.keep_missing


def hopeful_starts(entries: Iterable[Entry]) -> dict[UUID, int]:
    """For each wallet the entries name, the lowest balance at which all its debits
    apply, in order (the limit aside): what a wallet whose balance is not known is planned
    on, so that its batch is written at once if its balance allows everything."""
    net: dict[UUID, int] = {}
    needed: dict[UUID, int] = {}
    for entry in entries:
        for leg in entry.legs:
            wallet_id = leg.wallet_id
            balance = net.get(wallet_id, 0) + (
                leg.amount if leg.kind in CREDIT_KINDS else -leg.amount
            )
            net[wallet_id] = balance
            needed[wallet_id] = max(needed.get(wallet_id, 0), -balance)
    return needed


def parts(entries: Sequence[Entry]) -> list[list[int]]:
    """The batch cut into parts that share no wallet: the indexes of each part's entries,
    in order. Entries that name a common wallet, directly or through others, are in one
    part (a transfer joins its two wallets): a part is written whole or not at all, so
    that no entry is ever half written and each wallet's entries keep their order."""
    if all(len(entry.legs) == 1 for entry in entries):  # the common case: one wallet each
        by_wallet: dict[UUID, list[int]] = {}
        for index, entry in enumerate(entries):
            by_wallet.setdefault(entry.legs[0].wallet_id, []).append(index)
        return list(by_wallet.values())
    parent: dict[UUID, UUID] = {}

    def root(wallet_id: UUID) -> UUID:
        parent.setdefault(wallet_id, wallet_id)
        while parent[wallet_id] != wallet_id:
            parent[wallet_id] = parent[parent[wallet_id]]  # halve the path
            wallet_id = parent[wallet_id]
        return wallet_id

    for entry in entries:
        first = root(entry.legs[0].wallet_id)
        for leg in entry.legs[1:]:
            other = root(leg.wallet_id)
            if other != first:
                parent[other] = first
    grouped: dict[UUID, list[int]] = {}
    for index, entry in enumerate(entries):
        grouped.setdefault(root(entry.legs[0].wallet_id), []).append(index)
    return list(grouped.values())
