"""The planner: pure, no I/O. Entries and their wallets' balances in, each entry's
outcome out, with what the writer needs to write them in one statement.

`plan` judges a batch of entries in order, each on the balances the entries before it
left: an entry is refused if one of its wallets is missing, a leg reverses a row reversed
before (or earlier in the batch), a leg captures or releases a hold that is closed (or
more than it still holds), a debit or a new hold needs more than the wallet's available
balance (its balance less what its holds set aside), or a credit would take the balance
above the limit; a refused entry changes nothing, so the entries after it see exactly
what they would have seen had it never been sent. A capture is judged on its hold only.

For each wallet the plan also gives the ranges of starting balances (and of starting
available balances) on which every decision stays the same (which entries apply, which
are refused, and for which leg): the writer plans on the balances it last saw (a guess),
and the statement writes only if the balances it finds under the row lock lie in the
ranges. Each leg's condition bounds its own wallet only, so the ranges of a batch's
wallets are independent of each other.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from wallet_api.core.money import MAX_MINOR_UNITS
from wallet_api.posting.entries import (
    ACTIVE,
    CREDIT_KINDS,
    Entry,
    EntryKind,
    HoldState,
    Leg,
    Refusal,
    Shortfall,
)

#: What the planner decided for an entry: each leg's balance right after it, or why not.
Judged = tuple[int, ...] | Refusal


@dataclass(slots=True)
class Span:
    """One wallet in a plan: its starting balance and available balance, the same after
    the batch, and the starting balances [low, high] and available balances
    [available_low, available_high] on which the batch's decisions stay the same."""

    start: int
    balance: int
    available_start: int
    available: int
    low: int = 0
    high: int = MAX_MINOR_UNITS
    available_low: int = 0
    available_high: int = MAX_MINOR_UNITS


@dataclass(frozen=True, slots=True)
class Plan:
    """A batch judged: one outcome per entry, in order, a span per wallet that exists
    among those the entries name, and the state each hold the batch touched is left in."""

    outcomes: list[Judged]
    spans: dict[UUID, Span]
    holds: dict[UUID, HoldState] = field(default_factory=dict)
    #: For each entry that names a hold and applied, the state it left the hold in and
    #: the available balance of its first leg's wallet right after it.
    hold_after: dict[int, tuple[HoldState, int]] = field(default_factory=dict)

    def writes(self, entries: Sequence[Entry]) -> bool:
        """Whether the batch leaves anything to write: an entry applied, or a key kept."""
        return any(
            not isinstance(outcome, Refusal) or kept(entry, outcome)
            # One outcome per entry by construction: `strict` only documents it.
            for entry, outcome in zip(entries, self.outcomes, strict=True)  # pragma: no mutate
        )


def plan(
    starts: Mapping[UUID, int],
    entries: Iterable[Entry],
    *,
    held: Mapping[UUID, int] | None = None,
    reversed_before: Collection[int] = (),
    holds: Mapping[UUID, HoldState] | None = None,
) -> Plan:
    """Judge `entries` in order on `starts` (the balances of the wallets that exist), what
    their holds set aside (`held`, the holds that have not expired; none if not given),
    and the states of the holds they capture or release."""
    judging = _Judging(starts, held or {}, set(reversed_before), holds or {})
    outcomes: list[Judged] = []
    hold_after: dict[int, tuple[HoldState, int]] = {}
    for index, entry in enumerate(entries):
        outcomes.append(judging.judge(entry))
        if judging.last_hold is not None:
            hold_after[index] = judging.last_hold
            judging.last_hold = None
    return Plan(outcomes, judging.spans, judging.touched, hold_after)


@dataclass(slots=True)
class _Judging:
    """A batch being judged: what it started from, and what its entries left so far."""

    starts: Mapping[UUID, int]
    held: Mapping[UUID, int]
    reversed_rows: set[int]
    holds: Mapping[UUID, HoldState]
    spans: dict[UUID, Span] = field(default_factory=dict)
    touched: dict[UUID, HoldState] = field(default_factory=dict)
    #: The state the entry just applied left its hold in, and its wallet's available balance.
    last_hold: tuple[HoldState, int] | None = None

    def span(self, wallet_id: UUID) -> Span | None:
        """The wallet's span, begun on its start; None for a wallet that does not exist."""
        span = self.spans.get(wallet_id)
        if span is None:
            start = self.starts.get(wallet_id)
            if start is None:
                return None
            available = start - self.held.get(wallet_id, 0)
            span = self.spans[wallet_id] = Span(start, start, available, available)
        return span

    def judge(self, entry: Entry) -> Judged:
        legs = entry.legs
        if len(legs) == 1 and legs[0].hold is None:  # the common case
            return self.judge_one(legs[0])
        refused = self.refusal_before_legs(entry)
        if refused is not None:
            return refused
        after: dict[UUID, tuple[int, int]] = {}
        balances: list[int] = []
        for index, leg in enumerate(legs):
            span = self.span(leg.wallet_id)
            assert span is not None  # every wallet exists: checked above
            moved = _leg(
                leg, index, span, *after.get(leg.wallet_id, (span.balance, span.available))
            )
            if isinstance(moved, Refusal):
                return moved
            if entry.hold_status == "expired" and leg.kind is EntryKind.RELEASE:
                # What an expired hold set aside stopped counting when it expired.
                moved = (moved[0], moved[1] - leg.amount)
            after[leg.wallet_id] = moved
            balances.append(moved[0])
        for wallet_id, (balance, available) in after.items():
            span = self.spans[wallet_id]
            span.balance, span.available = balance, available
        # Not mutated: adding None too would change nothing (no row's id is None).
        self.reversed_rows.update(
            leg.reverses
            for leg in legs
            if leg.reverses is not None  # pragma: no mutate
        )
        hold = _move_holds(entry, self.holds, self.touched)
        if hold is not None:
            self.last_hold = hold, after[legs[0].wallet_id][1]
        return tuple(balances)

    def refusal_before_legs(self, entry: Entry) -> Refusal | None:
        """What refuses an entry before any balance is looked at: a wallet missing, a row
        reversed before, a hold it may not capture or release."""
        for index, leg in enumerate(entry.legs):
            if leg.wallet_id not in self.starts:
                return Refusal(Shortfall.MISSING, index)
        for index, leg in enumerate(entry.legs):
            if leg.reverses is not None and leg.reverses in self.reversed_rows:
                return Refusal(Shortfall.ALREADY_REVERSED, index)
        return _hold_refusal(entry, self.holds, self.touched)

    def judge_one(self, leg: Leg) -> Judged:
        """`judge` for an entry of one leg that names no hold: the same decisions, in the
        same order, without the bookkeeping of several legs."""
        span = self.span(leg.wallet_id)
        if span is None:
            return Refusal(Shortfall.MISSING, 0)
        if leg.reverses is not None and leg.reverses in self.reversed_rows:
            return Refusal(Shortfall.ALREADY_REVERSED, 0)
        moved = _leg(leg, 0, span, span.balance, span.available)
        if isinstance(moved, Refusal):
            return moved
        span.balance, span.available = moved
        if leg.reverses is not None:
            self.reversed_rows.add(leg.reverses)
        return (moved[0],)


def _leg(
    leg: Leg, index: int, span: Span, balance: int, available: int
) -> tuple[int, int] | Refusal:
    """The balance and available balance after the leg, or its refusal. Either decision
    bounds a starting balance of the leg's own wallet (the balance for a credit, the
    available balance for a debit or a hold): the same decision is taken on any start
    within the bounds."""
    amount, kind = leg.amount, leg.kind
    if kind in CREDIT_KINDS:
        offset = balance - span.start
        if balance + amount > MAX_MINOR_UNITS:
            span.low = max(span.low, MAX_MINOR_UNITS - amount - offset + 1)
            return Refusal(Shortfall.OVER_LIMIT, index, balance)
        span.high = min(span.high, MAX_MINOR_UNITS - amount - offset)
        return balance + amount, available + amount
    if kind is EntryKind.CAPTURE:  # judged on its hold: what it takes was set aside
        return balance - amount, available
    if kind is EntryKind.RELEASE:
        return balance, available + amount
    return _debit(leg, index, span, balance, available)


def _debit(
    leg: Leg, index: int, span: Span, balance: int, available: int
) -> tuple[int, int] | Refusal:
    """A debit or a new hold: judged on the available balance."""
    amount = leg.amount
    offset = available - span.available_start
    if amount > available:
        span.available_high = min(span.available_high, amount - offset - 1)
        return Refusal(Shortfall.INSUFFICIENT, index, available)
    span.available_low = max(span.available_low, amount - offset)
    if leg.kind is EntryKind.HOLD:
        return balance, available - amount
    return balance - amount, available - amount


def _hold_refusal(
    entry: Entry, holds: Mapping[UUID, HoldState], touched: Mapping[UUID, HoldState]
) -> Refusal | None:
    """Why the entry may not capture or release what its legs name, if it may not: the
    hold closed (or expired, unless the entry releases it as expired), or asked for more
    than it still holds."""
    taken: dict[UUID, int] = {}
    for index, leg in enumerate(entry.legs):
        if leg.hold is None or leg.kind not in (EntryKind.CAPTURE, EntryKind.RELEASE):
            continue
        state = touched.get(leg.hold) or holds.get(leg.hold)
        if state is None or state.status != ACTIVE:
            status = None if state is None else state.status
            return Refusal(Shortfall.HOLD_CLOSED, index, hold_status=status)
        if entry.hold_status == "expired" and not state.expired:
            return Refusal(Shortfall.HOLD_NOT_EXPIRED, index, state.remaining, ACTIVE)
        if entry.hold_status != "expired" and state.expired:
            return Refusal(Shortfall.HOLD_CLOSED, index, hold_status="expired")
        taken[leg.hold] = taken.get(leg.hold, 0) + leg.amount
        if taken[leg.hold] > state.remaining:
            return Refusal(Shortfall.HOLD_EXCEEDED, index, state.remaining, ACTIVE)
    if entry.hold_status is not None:  # it closes its hold: it must take all it holds
        for hold_id, total in taken.items():
            state = touched.get(hold_id) or holds[hold_id]
            if total != state.remaining:
                return Refusal(Shortfall.HOLD_CHANGED, 0, state.remaining, ACTIVE)
    return None


def _move_holds(
    entry: Entry, holds: Mapping[UUID, HoldState], touched: dict[UUID, HoldState]
) -> HoldState | None:
    """The holds' states after an applied entry: a new hold holds its amount; a capture
    or a release takes from what is held; a hold left holding nothing is closed. The
    state of the entry's hold (the last it names), if any."""
    state: HoldState | None = None
    for leg in entry.legs:
        if leg.hold is None or leg.kind is EntryKind.CAPTURE_IN:
            continue
        if leg.kind is EntryKind.HOLD:
            state = touched[leg.hold] = HoldState(remaining=leg.amount)
            continue
        state = touched.get(leg.hold) or holds[leg.hold]
        state = touched[leg.hold] = HoldState(  # active: a closed hold was refused
            state.remaining - leg.amount,
            state.expired,
            state.captured + (leg.amount if leg.kind is EntryKind.CAPTURE else 0),
        )
        if state.remaining == 0:
            state.status = entry.hold_status or "captured"
    return state


def kept(entry: Entry, refusal: Refusal) -> bool:
    """Whether a refusal is kept for its entry's key (a refusal for a missing wallet
    only when the entry says so)."""
    if entry.idempotency_key is None or refusal.reason is Shortfall.HOLD_CHANGED:
        return False  # a hold that changed meanwhile: the request is judged again
    return refusal.reason is not Shortfall.MISSING or entry.keep_missing


def hopeful_starts(entries: Iterable[Entry]) -> dict[UUID, int]:
    """For each wallet the entries name, the lowest available balance at which all its
    debits apply, in order (the limit aside): what a wallet whose balance is not known is
    planned on, so that its batch is written at once if its balance allows everything."""
    net: dict[UUID, int] = {}
    needed: dict[UUID, int] = {}
    for entry in entries:
        for leg in entry.legs:
            wallet_id = leg.wallet_id
            balance = net.get(wallet_id, 0) + leg.delta - leg.held_delta
            net[wallet_id] = balance
            needed[wallet_id] = max(needed.get(wallet_id, 0), -balance)
    return needed


def parts(entries: Sequence[Entry]) -> list[list[int]]:
    """The batch cut into parts that share no wallet: the indexes of each part's entries,
    in order. Entries that name a common wallet, directly or through others, are in one
    part (a transfer joins its two wallets): a part is written whole or not at all, so
    that no entry is ever half written and each wallet's entries keep their order."""
    # The common case, one wallet each, without the union-find (not mutated: the general
    # way gives the same parts).
    if all(len(entry.legs) == 1 for entry in entries):  # pragma: no mutate
        by_wallet: dict[UUID, list[int]] = {}
        for index, entry in enumerate(entries):
            by_wallet.setdefault(entry.legs[0].wallet_id, []).append(index)
        return list(by_wallet.values())
    parent: dict[UUID, UUID] = {}

    def root(wallet_id: UUID) -> UUID:
        parent.setdefault(wallet_id, wallet_id)
        # Not mutated: the one mutant of this condition never ends (a timeout, no verdict).
        while parent[wallet_id] != wallet_id:  # pragma: no mutate
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
