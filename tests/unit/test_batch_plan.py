"""The batch plan's range: every starting balance in it, and none next to it, gives the
same decisions. The service writes a batch on that range (one statement, checked by
PostgreSQL under the row lock), so a wrong bound would apply a refused operation or
refuse an applicable one. Pure function; the HTTP tests cover the writes themselves."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal

import pytest

from wallet_api.core.errors import AppError
from wallet_api.core.money import MAX_MINOR_UNITS, format_minor_units
from wallet_api.wallets.exceptions import BalanceLimitExceeded
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.plan import (
    AtomicRefusal,
    Operation,
    atomic_outcome,
    hopeful_start,
    plan_batch,
)


def decisions(start: int, operations: list[Operation]) -> list[str]:
    outcomes = plan_batch(start, operations).outcomes
    return [o.code if isinstance(o, AppError) else "applied" for o in outcomes]


def random_batch(rng: random.Random, scale: int) -> list[Operation]:
    return [
        Operation(rng.choice(list(OperationType)), rng.randint(1, scale))
        for _ in range(rng.randint(1, 12))
    ]


def serial(start: int, operations: list[Operation]) -> tuple[list[int | str], int]:
    """The reference: each operation in turn, as the specification reads; a refused one
    changes nothing. Each result is the balance after it, or the refusal's code and the
    balance it was judged on."""
    balance, results = start, list[int | str]()
    for operation in operations:
        if operation.kind is OperationType.DEPOSIT:
            if balance + operation.amount > MAX_MINOR_UNITS:
                results.append(f"balance_limit_exceeded at {balance}")
                continue
            balance += operation.amount
        else:
            if operation.amount > balance:
                results.append(f"insufficient_funds at {balance}")
                continue
            balance -= operation.amount
        results.append(balance)
    return results, balance


def described(outcome: int | AppError, operation: Operation) -> int | str:
    """An outcome as `serial` writes it, read back from the refusal's own text."""
    if not isinstance(outcome, AppError):
        return outcome
    judged_on = outcome.detail.rsplit(" ", 1)[1].rstrip(".")
    if isinstance(outcome, BalanceLimitExceeded):
        judged_on = outcome.detail.split("the balance ")[1].split(" ")[0]
    assert format_minor_units(operation.amount) in outcome.detail
    return f"{outcome.code} at {int(Decimal(judged_on) * 100)}"


@pytest.mark.parametrize("seed", range(300))
def test_a_plan_is_its_batch_applied_one_operation_at_a_time(seed: int) -> None:
    rng = random.Random(seed)
    scale = 1000
    if seed % 3 == 0:
        start = rng.randint(MAX_MINOR_UNITS - 3 * scale, MAX_MINOR_UNITS)
    else:
        start = rng.randint(0, 3 * scale)
    operations = random_batch(rng, scale)
    expected, final = serial(start, operations)

    plan = plan_batch(start, operations)
    assert [
        described(outcome, operation)
        for outcome, operation in zip(plan.outcomes, operations, strict=True)
    ] == expected
    assert plan.start == start
    assert plan.balance == final
    assert plan.applied == [
        (index, result) for index, result in enumerate(expected) if isinstance(result, int)
    ]


@pytest.mark.parametrize("seed", range(300))
def test_the_range_holds_exactly_the_balances_with_the_same_decisions(seed: int) -> None:
    rng = random.Random(seed)
    near_limit = seed % 3 == 0
    scale = 1000
    guess = (
        rng.randint(MAX_MINOR_UNITS - 3 * scale, MAX_MINOR_UNITS)
        if near_limit
        else (rng.randint(0, 3 * scale))
    )
    operations = random_batch(rng, scale)
    plan = plan_batch(guess, operations)
    expected = decisions(guess, operations)

    assert plan.lowest <= guess <= plan.highest
    for start in {plan.lowest, plan.highest, rng.randint(plan.lowest, plan.highest)}:
        assert decisions(start, operations) == expected
        shifted = plan_batch(start, operations)
        assert shifted.balance - start == plan.balance - guess
    if plan.lowest > 0:
        assert decisions(plan.lowest - 1, operations) != expected
    if plan.highest < MAX_MINOR_UNITS:
        assert decisions(plan.highest + 1, operations) != expected


def test_a_refusal_in_the_middle_bounds_the_range_from_above() -> None:
    deposit, withdraw = OperationType.DEPOSIT, OperationType.WITHDRAW
    operations = [Operation(deposit, 100), Operation(withdraw, 500), Operation(withdraw, 50)]
    plan = plan_batch(300, operations)

    assert decisions(300, operations) == ["applied", "insufficient_funds", "applied"]
    assert (plan.lowest, plan.highest) == (0, 399)  # from 400 on, the 500 would apply


@pytest.mark.parametrize("seed", range(200))
def test_the_hopeful_start_is_the_lowest_balance_at_which_all_apply(seed: int) -> None:
    rng = random.Random(seed)
    operations = random_batch(rng, 1000)
    start = hopeful_start(operations)
    assert all(isinstance(o, int) for o in plan_batch(start, operations).outcomes)
    if start > 0:
        assert any(isinstance(o, AppError) for o in plan_batch(start - 1, operations).outcomes)


def test_the_hopeful_start_of_deposits_only_is_zero() -> None:
    deposit, withdraw = OperationType.DEPOSIT, OperationType.WITHDRAW
    assert hopeful_start([Operation(deposit, 5), Operation(deposit, 7)]) == 0
    assert hopeful_start([Operation(withdraw, 5), Operation(deposit, 7)]) == 5
    assert hopeful_start([Operation(deposit, 7), Operation(withdraw, 10)]) == 3
    assert (
        hopeful_start([Operation(withdraw, 2), Operation(deposit, 1), Operation(withdraw, 4)]) == 5
    )


@pytest.mark.parametrize("seed", range(200))
def test_an_atomic_batch_is_its_items_applied_in_order_or_its_first_refusal(seed: int) -> None:
    """The reference: the items one at a time over all wallets, stopping at the first
    refusal (all or nothing); the plans are made per wallet, as the writer makes them."""
    rng = random.Random(seed)
    wallets = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(rng.randint(1, 4))]
    starts = {wallet: rng.randint(0, 1500) for wallet in wallets}
    missing = uuid.UUID(int=0) if seed % 5 == 0 else None
    items = [
        (rng.choice(wallets), Operation(rng.choice(list(OperationType)), rng.randint(1, 1000)))
        for _ in range(rng.randint(1, 10))
    ]
    if missing is not None:
        items.insert(rng.randint(0, len(items)), (missing, Operation(OperationType.DEPOSIT, 1)))
    runs: dict[uuid.UUID, list[Operation]] = {}
    for wallet, operation in items:
        runs.setdefault(wallet, []).append(operation)
    plans = {
        wallet: plan_batch(starts[wallet], runs[wallet]) for wallet in runs if wallet in starts
    }

    balances, expected = dict(starts), list[int]()
    refusal: tuple[int, str] | None = None
    for index, (wallet, operation) in enumerate(items):
        if wallet not in balances:
            refusal = (index, "wallet_not_found")
            break
        ((result,), balances[wallet]) = serial(balances[wallet], [operation])
        if isinstance(result, str):
            refusal = (index, result.split(" ")[0])
            break
        expected.append(result)

    outcome = atomic_outcome(items, plans)
    if refusal is None:
        assert outcome == expected
    else:
        assert isinstance(outcome, AtomicRefusal)
        assert (outcome.index, outcome.error.code) == refusal
        if refusal[1] == "wallet_not_found":
            assert str(missing) in outcome.error.detail
