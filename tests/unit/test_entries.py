"""The entries planner: each entry applies whole or not at all, judged in order on the
balances the entries before it left. Pure function; tests/test_transfers.py and
tests/test_reversals.py cover the writes."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import pytest

from wallet_api.core.money import MAX_MINOR_UNITS
from wallet_api.posting.entries import (
    Entry,
    EntryKind,
    Leg,
    Posted,
    Refusal,
    Shortfall,
    plan_entries,
    plan_in_range,
    posted_in_range,
)

AT = datetime(2026, 11, 28, tzinfo=UTC)


def entry(*legs: Leg) -> Entry:
    return Entry(legs=legs, render=lambda _: (200, ""))


def transfer(source: uuid.UUID, destination: uuid.UUID, amount: int) -> Entry:
    return entry(
        Leg(source, EntryKind.TRANSFER_OUT, amount, counterparty=destination),
        Leg(destination, EntryKind.TRANSFER_IN, amount, counterparty=source),
    )


@pytest.mark.parametrize("seed", range(300))
def test_entries_apply_in_order_whole_or_not_at_all(seed: int) -> None:
    """The reference: each entry in turn; if any leg would leave its wallet below zero or
    above the limit, or names a missing wallet, nothing of it applies."""
    rng = random.Random(seed)
    wallets = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(4)]
    near_limit = seed % 4 == 0
    balances = {
        wallet: rng.randint(MAX_MINOR_UNITS - 100, MAX_MINOR_UNITS)
        if near_limit
        else rng.randint(0, 100)
        for wallet in wallets[:3]  # the fourth does not exist
    }
    entries = []
    for _ in range(rng.randint(1, 12)):
        source, destination = rng.sample(wallets, 2)
        if rng.random() < 0.7:
            entries.append(transfer(source, destination, rng.randint(1, 80)))
        else:
            kind = rng.choice([EntryKind.DEPOSIT, EntryKind.WITHDRAW])
            entries.append(entry(Leg(source, kind, rng.randint(1, 80))))

    outcomes = plan_entries(balances, entries, reversed_before=set(), at=AT)

    current = dict(balances)
    for one, outcome in zip(entries, outcomes, strict=True):
        missing = [i for i, leg in enumerate(one.legs) if leg.wallet_id not in current]
        if missing:
            assert outcome == Refusal(Shortfall.MISSING, missing[0])
            continue
        after, expected = dict(current), list[int]()
        refusal = None
        for index, leg in enumerate(one.legs):
            new = after[leg.wallet_id] + leg.delta
            if not 0 <= new <= MAX_MINOR_UNITS:
                reason = Shortfall.INSUFFICIENT if new < 0 else Shortfall.OVER_LIMIT
                refusal = Refusal(reason, index, after[leg.wallet_id])
                break
            after[leg.wallet_id] = new
            expected.append(new)
        if refusal is not None:
            assert outcome == refusal
        else:
            assert outcome == Posted(tuple(expected), AT)
            current = after
    assert sum(current.values()) - sum(balances.values()) == sum(
        leg.delta
        for one, outcome in zip(entries, outcomes, strict=True)
        if isinstance(outcome, Posted)
        for leg in one.legs
    )


def test_a_row_is_reversed_once_in_a_batch_and_never_after_a_reversal_before_it() -> None:
    wallet = uuid.uuid4()
    first = entry(Leg(wallet, EntryKind.REVERSAL_OUT, 5, reverses=7))
    again = entry(Leg(wallet, EntryKind.REVERSAL_OUT, 1, reverses=7))
    other = entry(Leg(wallet, EntryKind.REVERSAL_OUT, 1, reverses=8))
    refused_first = entry(Leg(wallet, EntryKind.REVERSAL_OUT, 500, reverses=9))
    after_refusal = entry(Leg(wallet, EntryKind.REVERSAL_OUT, 1, reverses=9))

    outcomes = plan_entries(
        {wallet: 10},
        [first, again, other, refused_first, after_refusal],
        reversed_before=set(),
        at=AT,
    )
    assert outcomes == [
        Posted((5,), AT),
        Refusal(Shortfall.ALREADY_REVERSED, 0),
        Posted((4,), AT),
        Refusal(Shortfall.INSUFFICIENT, 0, 4),
        Posted((3,), AT),  # a refused reversal reversed nothing
    ]
    assert plan_entries({wallet: 10}, [other], reversed_before={8}, at=AT) == [
        Refusal(Shortfall.ALREADY_REVERSED, 0)
    ]


def test_two_legs_on_one_wallet_are_judged_one_after_the_other() -> None:
    wallet = uuid.uuid4()
    both = entry(Leg(wallet, EntryKind.DEPOSIT, 5), Leg(wallet, EntryKind.WITHDRAW, 12))
    assert plan_entries({wallet: 10}, [both], reversed_before=(), at=AT) == [Posted((15, 3), AT)]
    assert plan_entries({wallet: 6}, [both], reversed_before=(), at=AT) == [
        Refusal(Shortfall.INSUFFICIENT, 1, 11)
    ]


def test_credits_and_debits_by_kind() -> None:
    wallet = uuid.uuid4()
    signs = {kind: Leg(wallet, kind, 3).delta for kind in EntryKind}
    assert signs == {
        EntryKind.DEPOSIT: 3,
        EntryKind.WITHDRAW: -3,
        EntryKind.TRANSFER_IN: 3,
        EntryKind.TRANSFER_OUT: -3,
        EntryKind.REVERSAL_IN: 3,
        EntryKind.REVERSAL_OUT: -3,
    }


def test_a_batch_of_transfers_with_known_answers() -> None:
    """Fixed figures, so that the reference above cannot share a mistake with the planner."""
    a, b, c, gone = (uuid.UUID(int=n) for n in range(1, 5))
    outcomes = plan_entries(
        {a: 100, b: 0, c: MAX_MINOR_UNITS - 5},
        [
            transfer(a, b, 60),  # applies: a 40, b 60
            transfer(a, b, 50),  # a has 40: refused on its leg 0, judged on 40
            transfer(b, a, 60),  # applies: b 0, a 100
            transfer(a, c, 6),  # c would pass the limit: refused on leg 1, judged on c's
            transfer(a, gone, 1),  # the destination is missing
            transfer(gone, a, 1),  # the source is missing
            transfer(a, c, 5),  # applies: a 95, c at the limit
        ],
        reversed_before=(),
        at=AT,
    )
    assert outcomes == [
        Posted((40, 60), AT),
        Refusal(Shortfall.INSUFFICIENT, 0, 40),
        Posted((0, 100), AT),
        Refusal(Shortfall.OVER_LIMIT, 1, MAX_MINOR_UNITS - 5),
        Refusal(Shortfall.MISSING, 1),
        Refusal(Shortfall.MISSING, 0),
        Posted((95, MAX_MINOR_UNITS), AT),
    ]


@pytest.mark.parametrize("seed", range(300))
def test_a_range_plan_posts_what_plan_entries_posts_on_any_start_within_it(seed: int) -> None:
    """On every start inside each wallet's [low, high] every entry applies, with the
    balances plan_entries gives; one unit outside a wallet's range, plan_entries refuses
    something (so the range is exactly the starts on which all apply)."""
    rng = random.Random(seed)
    wallets = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(4)]
    entries = []
    for _ in range(rng.randint(1, 12)):
        source, destination = rng.sample(wallets, 2)
        kind = rng.random()
        if kind < 0.6:
            entries.append(transfer(source, destination, rng.randint(1, 50)))
        elif kind < 0.8:
            entries.append(entry(Leg(source, EntryKind.DEPOSIT, rng.randint(1, 50))))
        else:
            entries.append(entry(Leg(source, EntryKind.WITHDRAW, rng.randint(1, 50))))
    plan = plan_in_range(entries)
    assert plan is not None
    ranges = dict(zip(plan.wallets, zip(plan.lows, plan.highs, strict=True), strict=True))
    near_limit = seed % 3 == 0
    starts = {
        wallet: high - rng.randint(0, 20) if near_limit else low + rng.randint(0, 20)
        for wallet, (low, high) in ranges.items()
    }
    starts = {w: max(ranges[w][0], min(ranges[w][1], s)) for w, s in starts.items()}
    expected = plan_entries(starts, entries, reversed_before=(), at=AT)
    assert all(isinstance(outcome, Posted) for outcome in expected)
    assert posted_in_range(entries, plan, starts, AT) == expected
    last: dict[uuid.UUID, int] = {}
    for each, outcome in zip(entries, expected, strict=True):
        assert isinstance(outcome, Posted)
        last.update(zip((leg.wallet_id for leg in each.legs), outcome.balances, strict=True))
    assert last == {w: starts[w] + d for w, d in zip(plan.wallets, plan.deltas, strict=True)}
    for wallet, (low, high) in ranges.items():
        for outside in (low - 1, high + 1):
            if 0 <= outside <= MAX_MINOR_UNITS:
                moved = {**starts, wallet: outside}
                judged = plan_entries(moved, entries, reversed_before=(), at=AT)
                assert any(isinstance(outcome, Refusal) for outcome in judged)


def test_no_range_plan_when_the_legs_need_more_room_than_the_limit() -> None:
    wallet = uuid.uuid4()
    entries = [
        entry(Leg(wallet, EntryKind.DEPOSIT, MAX_MINOR_UNITS)),
        entry(Leg(wallet, EntryKind.DEPOSIT, 1)),
    ]
    assert plan_in_range(entries) is None
    fits = plan_in_range(entries[:1])
    assert fits is not None
    assert (fits.lows, fits.highs, fits.deltas, fits.offsets) == (
        (0,),
        (0,),
        (MAX_MINOR_UNITS,),
        (MAX_MINOR_UNITS,),
    )
