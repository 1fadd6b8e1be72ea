"""The planner (posting/plan.py): every entry judged in order, whole or not at all, on the
balances the entries before it left; and each wallet's range, the starting balances on
which every decision stays the same. The service writes a batch on those ranges (one
statement, checked by PostgreSQL under the row locks), so a wrong bound would apply a
refused entry or refuse an applicable one. Pure functions; the HTTP tests cover the
writes themselves."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from wallet_api.core.errors import AppError
from wallet_api.core.money import MAX_MINOR_UNITS, Currency, UnitAmount
from wallet_api.posting.entries import (
    Entry,
    EntryKind,
    HoldState,
    Leg,
    Posted,
    Refusal,
    Shortfall,
)
from wallet_api.posting.plan import Judged, Span, hopeful_starts, kept, parts, plan
from wallet_api.wallets.exceptions import InsufficientFunds
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.operations import (
    Applied,
    AtomicRefusal,
    Operation,
    atomic_outcome,
    atomic_response,
    entry_of,
    outcome_of,
    refusal_document,
)

#: A currency of two digits, as DEFAULT_CURRENCY is (the specification's bodies).
USD = Currency("USD", 2, implicit=True)


def cents(minor: int) -> UnitAmount:
    """An amount sent as `minor` cents of a currency of two digits."""
    return UnitAmount(Decimal(minor).scaleb(-2))


AT = datetime(2026, 12, 4, tzinfo=UTC)


def entry(*legs: Leg, key: str | None = None, keep_missing: bool = True) -> Entry:
    return Entry(legs=legs, idempotency_key=key, keep_missing=keep_missing)


def transfer(source: uuid.UUID, destination: uuid.UUID, amount: int) -> Entry:
    return entry(
        Leg(source, EntryKind.TRANSFER_OUT, amount, counterparty=destination),
        Leg(destination, EntryKind.TRANSFER_IN, amount, counterparty=source),
    )


def random_entries(rng: random.Random, wallets: list[uuid.UUID], scale: int) -> list[Entry]:
    entries = []
    for _ in range(rng.randint(1, 12)):
        source, destination = rng.sample(wallets, 2)
        if rng.random() < 0.6:
            entries.append(transfer(source, destination, rng.randint(1, scale)))
        else:
            kind = rng.choice([EntryKind.DEPOSIT, EntryKind.WITHDRAW])
            entries.append(entry(Leg(source, kind, rng.randint(1, scale))))
    return entries


def bounds(span: Span) -> tuple[int, int]:
    """The starting balances a span holds on, with nothing held (the balance and the
    available balance are then one figure)."""
    return max(span.low, span.available_low), min(span.high, span.available_high)


def decisions(outcomes: list[Judged]) -> list[object]:
    """What was decided, without the figures: applied, or refused for which leg and why."""
    return [(o.reason, o.leg) if isinstance(o, Refusal) else "applied" for o in outcomes]


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
    entries = random_entries(rng, wallets, 80)

    judged = plan(balances, entries)

    current = dict(balances)
    for one, outcome in zip(entries, judged.outcomes, strict=True):
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
            assert outcome == tuple(expected)
            current = after
    assert {w: span.balance for w, span in judged.spans.items()} == {
        w: current[w] for w in judged.spans
    }
    assert {w: span.start for w, span in judged.spans.items()} == {
        w: balances[w] for w in judged.spans
    }


@pytest.mark.parametrize("seed", range(300))
def test_the_ranges_hold_exactly_the_balances_with_the_same_decisions(seed: int) -> None:
    """On any starts within every wallet's [low, high] the decisions are the same and the
    figures shift with the starts; one unit outside a wallet's range (the others kept
    within theirs), a decision changes."""
    rng = random.Random(seed)
    wallets = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(3)]
    near_limit = seed % 3 == 0
    scale = 50 if seed % 2 else 1000
    guesses = {
        wallet: rng.randint(MAX_MINOR_UNITS - 3 * scale, MAX_MINOR_UNITS)
        if near_limit
        else rng.randint(0, 3 * scale)
        for wallet in wallets
    }
    entries = random_entries(rng, wallets, scale)
    guessed = plan(guesses, entries)
    expected = decisions(guessed.outcomes)
    spans = guessed.spans

    for span in spans.values():
        low, high = bounds(span)
        assert low <= span.start <= high
    for _ in range(5):
        starts = dict(guesses)
        for wallet, span in spans.items():
            low, high = bounds(span)
            starts[wallet] = rng.choice([low, high, rng.randint(low, high)])
        moved = plan(starts, entries)
        assert decisions(moved.outcomes) == expected
        for one, before, after in zip(entries, guessed.outcomes, moved.outcomes, strict=True):
            if isinstance(before, tuple):
                assert isinstance(after, tuple)
                shifts = [starts[leg.wallet_id] - guesses[leg.wallet_id] for leg in one.legs]
                assert [a - b for a, b in zip(after, before, strict=True)] == shifts
        for wallet, span in moved.spans.items():
            assert span.balance - span.start == spans[wallet].balance - spans[wallet].start
    for wallet, span in spans.items():
        low, high = bounds(span)
        for outside in (low - 1, high + 1):
            if 0 <= outside <= MAX_MINOR_UNITS:
                moved = plan({**guesses, wallet: outside}, entries)
                assert decisions(moved.outcomes) != expected


def test_a_refusal_in_the_middle_bounds_the_range_from_above() -> None:
    wallet = uuid.uuid4()
    entries = [
        entry(Leg(wallet, EntryKind.DEPOSIT, 100)),
        entry(Leg(wallet, EntryKind.WITHDRAW, 500)),
        entry(Leg(wallet, EntryKind.WITHDRAW, 50)),
    ]
    judged = plan({wallet: 300}, entries)

    assert judged.outcomes == [(400,), Refusal(Shortfall.INSUFFICIENT, 0, 400), (350,)]
    span = judged.spans[wallet]
    assert (*bounds(span), span.balance) == (0, 399, 350)  # from 400 on, 500 applies


def test_a_row_is_reversed_once_in_a_batch_and_never_after_a_reversal_before_it() -> None:
    wallet = uuid.uuid4()
    first = entry(Leg(wallet, EntryKind.REVERSAL_OUT, 5, reverses=7))
    again = entry(Leg(wallet, EntryKind.REVERSAL_OUT, 1, reverses=7))
    other = entry(Leg(wallet, EntryKind.REVERSAL_OUT, 1, reverses=8))
    refused_first = entry(Leg(wallet, EntryKind.REVERSAL_OUT, 500, reverses=9))
    after_refusal = entry(Leg(wallet, EntryKind.REVERSAL_OUT, 1, reverses=9))

    judged = plan({wallet: 10}, [first, again, other, refused_first, after_refusal])
    assert judged.outcomes == [
        (5,),
        Refusal(Shortfall.ALREADY_REVERSED, 0),
        (4,),
        Refusal(Shortfall.INSUFFICIENT, 0, 4),
        (3,),  # a refused reversal reversed nothing
    ]
    assert plan({wallet: 10}, [other], reversed_before={8}).outcomes == [
        Refusal(Shortfall.ALREADY_REVERSED, 0)
    ]


def test_two_legs_on_one_wallet_are_judged_one_after_the_other() -> None:
    wallet = uuid.uuid4()
    both = entry(Leg(wallet, EntryKind.DEPOSIT, 5), Leg(wallet, EntryKind.WITHDRAW, 12))
    assert plan({wallet: 10}, [both]).outcomes == [(15, 3)]
    assert plan({wallet: 6}, [both]).outcomes == [Refusal(Shortfall.INSUFFICIENT, 1, 11)]


def test_credits_and_debits_by_kind() -> None:
    wallet = uuid.uuid4()
    signs = {
        kind: (Leg(wallet, kind, 3).delta, Leg(wallet, kind, 3).held_delta) for kind in EntryKind
    }
    assert signs == {
        EntryKind.DEPOSIT: (3, 0),
        EntryKind.WITHDRAW: (-3, 0),
        EntryKind.TRANSFER_IN: (3, 0),
        EntryKind.TRANSFER_OUT: (-3, 0),
        EntryKind.REVERSAL_IN: (3, 0),
        EntryKind.REVERSAL_OUT: (-3, 0),
        EntryKind.HOLD: (0, 3),  # set aside: the balance stays, the available balance falls
        EntryKind.CAPTURE: (-3, -3),  # what was set aside leaves
        EntryKind.CAPTURE_IN: (3, 0),
        EntryKind.RELEASE: (0, -3),  # given back: the available balance rises
    }


def test_a_batch_of_transfers_with_known_answers() -> None:
    """Fixed figures, so that the references above cannot share a mistake with the
    planner."""
    a, b, c, gone = (uuid.UUID(int=n) for n in range(1, 5))
    judged = plan(
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
    )
    assert judged.outcomes == [
        (40, 60),
        Refusal(Shortfall.INSUFFICIENT, 0, 40),
        (0, 100),
        Refusal(Shortfall.OVER_LIMIT, 1, MAX_MINOR_UNITS - 5),
        Refusal(Shortfall.MISSING, 1),
        Refusal(Shortfall.MISSING, 0),
        (95, MAX_MINOR_UNITS),
    ]
    assert {w: bounds(s) for w, s in judged.spans.items()} == {
        # a: 60 must apply and 50 be refused on 40 (so a < 110); then 6 and 5 apply
        a: (60, 109),
        b: (0, MAX_MINOR_UNITS - 60),
        # c: the 6 must pass the limit, the 5 must not
        c: (MAX_MINOR_UNITS - 5, MAX_MINOR_UNITS - 5),
    }


@pytest.mark.parametrize("seed", range(200))
def test_the_hopeful_starts_are_the_lowest_balances_at_which_all_apply(seed: int) -> None:
    rng = random.Random(seed)
    wallets = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(3)]
    entries = random_entries(rng, wallets, 1000)
    starts = hopeful_starts(entries)
    assert set(starts) == {leg.wallet_id for one in entries for leg in one.legs}
    assert all(isinstance(o, tuple) for o in plan(starts, entries).outcomes)
    for wallet, start in starts.items():
        if start > 0:
            lower = plan({**starts, wallet: start - 1}, entries).outcomes
            assert any(isinstance(o, Refusal) for o in lower)


def test_the_hopeful_start_of_deposits_only_is_zero() -> None:
    w = uuid.uuid4()

    def hopeful(*legs: tuple[EntryKind, int]) -> int:
        return hopeful_starts([entry(Leg(w, kind, amount)) for kind, amount in legs])[w]

    deposit, withdraw = EntryKind.DEPOSIT, EntryKind.WITHDRAW
    assert hopeful((deposit, 5), (deposit, 7)) == 0
    assert hopeful((withdraw, 5), (deposit, 7)) == 5
    assert hopeful((deposit, 7), (withdraw, 10)) == 3
    assert hopeful((withdraw, 2), (deposit, 1), (withdraw, 4)) == 5


def test_parts_join_the_entries_that_share_a_wallet_and_keep_their_order() -> None:
    a, b, c, d, e = (uuid.UUID(int=n) for n in range(1, 6))
    entries = [
        entry(Leg(a, EntryKind.DEPOSIT, 1)),  # 0
        entry(Leg(d, EntryKind.DEPOSIT, 1)),  # 1
        transfer(b, c, 1),  # 2
        entry(Leg(e, EntryKind.WITHDRAW, 1)),  # 3
        transfer(c, a, 1),  # 4: joins a's part and b-c's
        entry(Leg(b, EntryKind.DEPOSIT, 1)),  # 5
        entry(Leg(d, EntryKind.WITHDRAW, 1)),  # 6
    ]
    assert sorted(parts(entries)) == [[0, 2, 4, 5], [1, 6], [3]]


def test_a_refusal_is_kept_for_a_key_and_one_for_a_missing_wallet_when_the_entry_says() -> None:
    w = uuid.uuid4()
    short = Refusal(Shortfall.INSUFFICIENT, 0, 3)
    missing = Refusal(Shortfall.MISSING, 0)
    assert not kept(entry(Leg(w, EntryKind.WITHDRAW, 5)), short)
    assert kept(entry(Leg(w, EntryKind.WITHDRAW, 5), key="k"), short)
    assert kept(entry(Leg(w, EntryKind.WITHDRAW, 5), key="k"), missing)
    assert not kept(entry(Leg(w, EntryKind.WITHDRAW, 5), key="k", keep_missing=False), missing)
    assert kept(entry(Leg(w, EntryKind.WITHDRAW, 5), key="k", keep_missing=False), short)
    written = plan({w: 3}, [entry(Leg(w, EntryKind.WITHDRAW, 5), key="k")])
    assert written.writes([entry(Leg(w, EntryKind.WITHDRAW, 5), key="k")])
    assert not written.writes([entry(Leg(w, EntryKind.WITHDRAW, 5))])


@pytest.mark.parametrize("seed", range(200))
def test_an_atomic_batch_is_its_items_applied_in_order_or_its_first_refusal(seed: int) -> None:
    """The reference: the items one at a time over all wallets, stopping at the first
    refusal (all or nothing)."""
    rng = random.Random(seed)
    wallets = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(rng.randint(1, 4))]
    starts = {wallet: rng.randint(0, 1500) for wallet in wallets}
    missing = uuid.UUID(int=0) if seed % 5 == 0 else None
    items = [
        (
            rng.choice(wallets),
            Operation(rng.choice(list(OperationType)), cents(rng.randint(1, 1000))),
        )
        for _ in range(rng.randint(1, 10))
    ]
    if missing is not None:
        items.insert(
            rng.randint(0, len(items)), (missing, Operation(OperationType.DEPOSIT, cents(1)))
        )
    entries = [entry_of(wallet, operation, USD) for wallet, operation in items]

    balances, expected = dict(starts), list[int]()
    refusal: tuple[int, str] | None = None
    for index, (wallet, operation) in enumerate(items):
        if wallet not in balances:
            refusal = (index, "wallet_not_found")
            break
        sign = 1 if operation.kind is OperationType.DEPOSIT else -1
        amount = operation.amount.minor_units()
        if balances[wallet] + sign * amount < 0:
            refusal = (index, "insufficient_funds")
            break
        balances[wallet] += sign * amount
        expected.append(balances[wallet])

    judged = plan(starts, entries).outcomes
    outcome = atomic_outcome(
        entries,
        [USD] * len(entries),
        [Posted(o, AT) if isinstance(o, tuple) else o for o in judged],
    )
    if refusal is None:
        assert outcome == [(balance, USD) for balance in expected]
    else:
        assert isinstance(outcome, AtomicRefusal)
        assert (outcome.index, outcome.error.code) == refusal
        if refusal[1] == "wallet_not_found":
            assert str(missing) in outcome.error.detail


def test_an_operations_refusal_quotes_the_balance_it_was_judged_on() -> None:
    w = uuid.uuid4()
    withdraw = entry_of(w, Operation(OperationType.WITHDRAW, cents(500)), USD)
    deposit = entry_of(w, Operation(OperationType.DEPOSIT, cents(2)), USD)
    short = outcome_of(withdraw.legs[0], Refusal(Shortfall.INSUFFICIENT, 0, 30), USD)
    over = outcome_of(deposit.legs[0], Refusal(Shortfall.OVER_LIMIT, 0, MAX_MINOR_UNITS - 1), USD)
    gone = outcome_of(withdraw.legs[0], Refusal(Shortfall.MISSING, 0), USD)
    assert isinstance(short, AppError)
    assert isinstance(over, AppError)
    assert isinstance(gone, AppError)
    assert (short.code, short.detail) == (
        "insufficient_funds",
        "Cannot withdraw 5: the balance is 0.3.",
    )
    assert over.code == "balance_limit_exceeded"
    assert "Cannot deposit 0.02: the balance 9999999999999.98" in over.detail
    assert gone.code == "wallet_not_found"
    assert str(w) in gone.detail
    assert outcome_of(deposit.legs[0], Posted((1234,), AT), USD) == (1234, USD)


# --------------------------------------------------------------------------------------
# Holds: judged on the available balance, captured and released from what they hold.


def hold_leg(wallet: uuid.UUID, kind: EntryKind, amount: int, hold_id: uuid.UUID) -> Leg:
    return Leg(wallet, kind, amount, hold=hold_id)


def test_a_new_hold_is_judged_on_the_available_balance_and_sets_it_aside() -> None:
    w, h1, h2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    judged = plan(
        {w: 100},
        [
            entry(hold_leg(w, EntryKind.HOLD, 30, h1)),
            entry(Leg(w, EntryKind.WITHDRAW, 61)),  # 60 are available: refused, quoting it
            entry(hold_leg(w, EntryKind.HOLD, 61, h2)),  # likewise
            entry(Leg(w, EntryKind.WITHDRAW, 60)),
        ],
        held={w: 10},  # another hold sets 10 aside already
    )
    assert judged.outcomes == [
        (100,),
        Refusal(Shortfall.INSUFFICIENT, 0, 60),
        Refusal(Shortfall.INSUFFICIENT, 0, 60),
        (40,),
    ]
    span = judged.spans[w]
    assert (span.start, span.balance, span.available_start, span.available) == (100, 40, 90, 0)
    assert (span.available_low, span.available_high) == (90, 90)  # 30 + 60 apply, 61 not
    assert judged.holds == {h1: HoldState(remaining=30)}
    assert judged.hold_after == {0: (HoldState(remaining=30), 60)}


def test_a_capture_takes_from_the_hold_not_from_what_is_available() -> None:
    w, payee, h = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    holds = {h: HoldState(remaining=30)}
    capture = entry(
        Leg(w, EntryKind.CAPTURE, 20, counterparty=payee, hold=h),
        Leg(payee, EntryKind.CAPTURE_IN, 20, counterparty=w, hold=h),
        hold_leg(w, EntryKind.RELEASE, 10, h),
    )
    capture = Entry(legs=capture.legs, hold_status="captured")
    judged = plan({w: 100, payee: 5}, [capture], held={w: 30}, holds=holds)
    assert judged.outcomes == [(80, 25, 80)]
    assert judged.spans[w].available == 80  # 70 available, 10 released
    assert judged.holds == {h: HoldState(remaining=0, captured=20, status="captured")}
    assert holds[h] == HoldState(remaining=30)  # the states given are not changed
    assert judged.hold_after[0] == (HoldState(remaining=0, captured=20, status="captured"), 80)


def test_partial_captures_take_what_is_left_and_close_the_hold_when_it_is_gone() -> None:
    w, h = uuid.uuid4(), uuid.uuid4()
    part = entry(hold_leg(w, EntryKind.CAPTURE, 10, h))
    judged = plan({w: 50}, [part, part, part, part], held={w: 30}, holds={h: HoldState(30)})
    assert judged.outcomes == [
        (40,),
        (30,),
        (20,),
        Refusal(Shortfall.HOLD_CLOSED, 0, hold_status="captured"),
    ]
    assert judged.holds[h] == HoldState(remaining=0, captured=30, status="captured")
    assert [state.remaining for state, _ in judged.hold_after.values()] == [20, 10, 0]
    too_much = entry(hold_leg(w, EntryKind.CAPTURE, 31, h))
    assert plan({w: 50}, [too_much], held={w: 30}, holds={h: HoldState(30)}).outcomes == [
        Refusal(Shortfall.HOLD_EXCEEDED, 0, 30, "active")
    ]
    # Two legs on one hold are added up.
    both = entry(hold_leg(w, EntryKind.CAPTURE, 20, h), hold_leg(w, EntryKind.RELEASE, 11, h))
    assert plan({w: 50}, [both], held={w: 30}, holds={h: HoldState(30)}).outcomes == [
        Refusal(Shortfall.HOLD_EXCEEDED, 1, 30, "active")
    ]


def test_a_closing_entry_must_take_all_the_hold_holds_else_it_changed() -> None:
    w, h = uuid.uuid4(), uuid.uuid4()
    void = Entry(legs=(hold_leg(w, EntryKind.RELEASE, 20, h),), hold_status="voided")
    judged = plan({w: 50}, [void], held={w: 30}, holds={h: HoldState(30)})
    assert judged.outcomes == [Refusal(Shortfall.HOLD_CHANGED, 0, 30, "active")]
    assert not judged.writes([void])
    exact = Entry(legs=(hold_leg(w, EntryKind.RELEASE, 30, h),), hold_status="voided")
    done = plan({w: 50}, [exact], held={w: 30}, holds={h: HoldState(30)})
    assert done.outcomes == [(50,)]
    assert done.spans[w].available == 50
    assert done.holds[h] == HoldState(remaining=0, status="voided")


def test_an_expired_hold_is_closed_to_captures_and_released_only_as_expired() -> None:
    w, h, gone = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    states = {h: HoldState(30, expired=True)}
    capture = entry(hold_leg(w, EntryKind.CAPTURE, 10, h))
    assert plan({w: 50}, [capture], holds=states).outcomes == [
        Refusal(Shortfall.HOLD_CLOSED, 0, hold_status="expired")
    ]
    expiry = Entry(legs=(hold_leg(w, EntryKind.RELEASE, 30, h),), hold_status="expired")
    judged = plan({w: 50}, [expiry], holds=states)  # nothing held counts: expired
    assert judged.outcomes == [(50,)]
    assert (judged.spans[w].available_start, judged.spans[w].available) == (50, 50)
    assert judged.holds[h].status == "expired"
    # Only an expired hold is released as expired; a closed or unknown one not at all.
    open_hold = {h: HoldState(30)}
    assert plan({w: 50}, [expiry], holds=open_hold).outcomes == [
        Refusal(Shortfall.HOLD_NOT_EXPIRED, 0, 30, "active")
    ]
    closed = {h: HoldState(0, status="voided")}
    assert plan({w: 50}, [expiry], holds=closed).outcomes == [
        Refusal(Shortfall.HOLD_CLOSED, 0, hold_status="voided")
    ]
    unknown = Entry(legs=(hold_leg(w, EntryKind.RELEASE, 1, gone),), hold_status="expired")
    assert plan({w: 50}, [unknown]).outcomes == [Refusal(Shortfall.HOLD_CLOSED, 0)]


def test_a_hold_opened_in_the_batch_can_be_captured_later_in_it() -> None:
    w, h = uuid.uuid4(), uuid.uuid4()
    judged = plan(
        {w: 40},
        [
            entry(hold_leg(w, EntryKind.HOLD, 25, h)),
            Entry(legs=(hold_leg(w, EntryKind.CAPTURE, 25, h),), hold_status="captured"),
        ],
    )
    assert judged.outcomes == [(40,), (15,)]
    assert judged.holds[h] == HoldState(remaining=0, captured=25, status="captured")


def test_a_hold_change_is_never_kept_for_its_key_and_hopeful_starts_count_holds() -> None:
    w, h = uuid.uuid4(), uuid.uuid4()
    keyed = entry(hold_leg(w, EntryKind.RELEASE, 5, h), key="k")
    assert not kept(keyed, Refusal(Shortfall.HOLD_CHANGED, 0, 5, "active"))
    assert kept(keyed, Refusal(Shortfall.HOLD_EXCEEDED, 0, 5, "active"))
    starts = hopeful_starts(
        [
            entry(hold_leg(w, EntryKind.HOLD, 30, h)),
            entry(hold_leg(w, EntryKind.CAPTURE, 10, h)),
            entry(hold_leg(w, EntryKind.RELEASE, 20, h)),
            entry(Leg(w, EntryKind.WITHDRAW, 25)),
        ]
    )
    assert starts == {w: 35}  # 30 held, 10 of it taken, 20 given back: 25 more need 5


# --------------------------------------------------------------------------------------
# What the planner's other parts promise, each case with known answers.


def test_an_entry_renders_its_outcomes_for_its_key_with_its_render_only() -> None:
    w = uuid.uuid4()
    rendered = Entry(legs=(Leg(w, EntryKind.DEPOSIT, 5),), render=lambda outcome: (201, "x"))
    assert rendered.response(Posted((5,), AT)) == (201, "x")
    with pytest.raises(AssertionError, match=r"^an entry with a key renders its outcomes$"):
        Entry(legs=(Leg(w, EntryKind.DEPOSIT, 5),)).response(Posted((5,), AT))


def test_a_wallet_without_holds_given_holds_nothing() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    judged = plan({a: 10, b: 10}, [entry(Leg(b, EntryKind.WITHDRAW, 10))], held={a: 5})
    assert judged.outcomes == [(0,)]
    assert judged.spans[b].available_start == 10


def test_a_reversal_of_two_legs_reverses_each_row_once() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()

    def reversal(out_row: int, in_row: int) -> Entry:
        return entry(
            Leg(b, EntryKind.REVERSAL_OUT, 5, counterparty=a, reverses=in_row),
            Leg(a, EntryKind.REVERSAL_IN, 5, counterparty=b, reverses=out_row),
        )

    judged = plan({a: 0, b: 10}, [reversal(1, 2), reversal(3, 2), reversal(1, 4)])
    assert judged.outcomes == [
        (5, 5),
        Refusal(Shortfall.ALREADY_REVERSED, 0),
        Refusal(Shortfall.ALREADY_REVERSED, 1),
    ]
    assert judged.hold_after == {}  # names no hold


def test_an_entry_may_open_two_holds() -> None:
    a, b, h1, h2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    both = entry(hold_leg(a, EntryKind.HOLD, 3, h1), hold_leg(b, EntryKind.HOLD, 4, h2))
    judged = plan({a: 10, b: 10}, [both])
    assert judged.holds == {h1: HoldState(remaining=3), h2: HoldState(remaining=4)}
    assert judged.hold_after == {0: (HoldState(remaining=4), 7)}


def test_a_hold_needs_its_amount_available_in_the_hopeful_start() -> None:
    w, h = uuid.uuid4(), uuid.uuid4()
    held_then_spent = [
        entry(hold_leg(w, EntryKind.HOLD, 30, h)),
        entry(Leg(w, EntryKind.WITHDRAW, 25)),
    ]
    assert hopeful_starts(held_then_spent) == {w: 55}


def test_entries_of_one_leg_are_parted_by_wallet_in_order() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    entries = [
        entry(Leg(a, EntryKind.DEPOSIT, 1)),
        entry(Leg(b, EntryKind.DEPOSIT, 1)),
        entry(Leg(a, EntryKind.WITHDRAW, 1)),
    ]
    assert parts(entries) == [[0, 2], [1]]


def test_an_operation_is_an_entry_of_one_leg_and_with_a_key_the_endpoints_answer() -> None:
    w = uuid.uuid4()
    plain = entry_of(w, Operation(OperationType.WITHDRAW, cents(500), api_key_id="k1"), USD)
    assert plain.legs == (Leg(w, EntryKind.WITHDRAW, 500),)
    assert (plain.api_key_id, plain.idempotency_key, plain.render) == ("k1", None, None)
    keyed = entry_of(
        w,
        Operation(
            OperationType.DEPOSIT,
            cents(1250),
            idempotency_key="key",
            fingerprint="fp",
            api_key_id="k2",
        ),
        USD,
    )
    assert keyed.legs == (Leg(w, EntryKind.DEPOSIT, 1250),)
    assert (keyed.idempotency_key, keyed.fingerprint, keyed.api_key_id) == ("key", "fp", "k2")
    assert keyed.applied_body == (200, '{"status":"success","balance":', "}")
    assert keyed.keep_missing is False
    assert keyed.response(Posted((1250,), AT)) == (200, '{"status":"success","balance":12.5}')
    status, body = keyed.response(Refusal(Shortfall.OVER_LIMIT, 0, MAX_MINOR_UNITS))
    assert status == 400
    assert '"code":"balance_limit_exceeded"' in body


def test_an_atomic_batch_answers_every_balance_or_its_first_refusal_by_position() -> None:
    status, body = atomic_response([Applied(150, USD), Applied(20, USD)])
    assert (status, json.loads(body)) == (
        200,
        {
            "results": [
                {"status": 200, "body": {"status": "success", "balance": 1.5}},
                {"status": 200, "body": {"status": "success", "balance": 0.2}},
            ]
        },
    )
    refused = AtomicRefusal(1, InsufficientFunds(balance=30, amount=500, exponent=2))
    status, body = atomic_response(refused)
    document = json.loads(body)
    assert status == 400
    assert (document["code"], document["index"]) == ("insufficient_funds", 1)
    assert document["detail"] == "Operation 1: Cannot withdraw 5: the balance is 0.3."
    assert refusal_document(refused)["index"] == 1
