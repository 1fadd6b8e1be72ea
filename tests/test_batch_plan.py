"""The batch plan's range: every starting balance in it, and none next to it, gives the
same decisions. The service writes a batch on that range (one statement, checked by
PostgreSQL under the row lock), so a wrong bound would apply a refused operation or
refuse an applicable one. Pure function; the HTTP tests cover the writes themselves."""

from __future__ import annotations

import random

import pytest

from wallet_api.core.errors import AppError
from wallet_api.core.money import MAX_MINOR_UNITS
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.service import Operation, plan_batch


def decisions(start: int, operations: list[Operation]) -> list[str]:
    outcomes = plan_batch(start, operations).outcomes
    return [o.code if isinstance(o, AppError) else "applied" for o in outcomes]


def random_batch(rng: random.Random, scale: int) -> list[Operation]:
    return [
        Operation(rng.choice(list(OperationType)), rng.randint(1, scale))
        for _ in range(rng.randint(1, 12))
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
