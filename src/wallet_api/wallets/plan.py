"""The batch planner: a pure function from a starting balance and a batch of operations to
each one's outcome, the balance after the batch, and the range of starting balances for
which every decision (which apply, which are refused) stays the same.

No I/O: the writer (`service.py`, `repository.py`) turns a plan into one statement, and the
range lets PostgreSQL check under the row lock that the plan still holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from wallet_api.core.errors import AppError
from wallet_api.core.money import MAX_MINOR_UNITS
from wallet_api.wallets.exceptions import BalanceLimitExceeded, InsufficientFunds, WalletNotFound
from wallet_api.wallets.models import OperationType


@dataclass(frozen=True, slots=True)
class Operation:
    """One requested deposit or withdrawal, in minor units, with its Idempotency-Key."""

    kind: OperationType
    amount: int
    idempotency_key: str | None = None
    fingerprint: str = ""  # of the whole request, when it carries a key
    api_key_id: str | None = None  # the key that sent it, kept on its ledger row


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """The effect of applying a batch in order to a starting balance."""

    start: int
    outcomes: list[int | AppError]
    balance: int
    applied: list[tuple[int, int]]  # (index of the operation, balance right after it)
    #: Every starting balance in [lowest, highest] gets the same decisions (which
    #: operations apply, which are refused); only the balances shift.
    lowest: int
    highest: int


def plan_batch(balance: int, operations: Sequence[Operation]) -> BatchPlan:
    """Apply `operations` one at a time, in order, to `balance`.

    A refused operation leaves the balance as it was, so the operations after it see
    exactly what they would have seen had the refused one never been sent.
    """
    start = balance
    lowest, highest = 0, MAX_MINOR_UNITS
    outcomes: list[int | AppError] = []
    applied: list[tuple[int, int]] = []
    for index, operation in enumerate(operations):
        offset, amount = balance - start, operation.amount
        if operation.kind is OperationType.DEPOSIT:
            if balance + amount > MAX_MINOR_UNITS:
                outcomes.append(
                    BalanceLimitExceeded(balance=balance, amount=amount, limit=MAX_MINOR_UNITS)
                )
                lowest = max(lowest, MAX_MINOR_UNITS - amount - offset + 1)
                continue
            highest = min(highest, MAX_MINOR_UNITS - amount - offset)
            balance += amount
        else:
            if amount > balance:
                outcomes.append(InsufficientFunds(balance=balance, amount=amount))
                highest = min(highest, amount - offset - 1)
                continue
            lowest = max(lowest, amount - offset)
            balance -= amount
        outcomes.append(balance)
        applied.append((index, balance))
    return BatchPlan(start, outcomes, balance, applied, lowest, highest)


def hopeful_start(operations: Sequence[Operation]) -> int:
    """The lowest balance at which every one of `operations` applies, in order (the
    deposits' limit aside): what a wallet whose balance is not known is planned on, so
    that its batch is written at once if its balance allows them all."""
    net = needed = 0
    for operation in operations:
        if operation.kind is OperationType.DEPOSIT:
            net += operation.amount
        else:
            net -= operation.amount
            needed = max(needed, -net)
    return needed


@dataclass(frozen=True, slots=True)
class AtomicRefusal:
    """An atomic batch refused as a whole: the first refused operation and why."""

    index: int
    error: AppError


#: An atomic batch's outcome: every operation's balance right after it, or its refusal.
Atomic = list[int] | AtomicRefusal


def atomic_outcome(items: Sequence[tuple[UUID, Operation]], plans: dict[UUID, BatchPlan]) -> Atomic:
    """An all-or-nothing batch judged on its wallets' plans (each wallet's items planned
    in order): the balance after each item, in the items' order, or the first refusal."""
    seen: dict[UUID, int] = {}
    balances: list[int] = []
    for index, (wallet_id, _) in enumerate(items):
        plan = plans.get(wallet_id)
        if plan is None:
            return AtomicRefusal(index, WalletNotFound(wallet_id))
        position = seen[wallet_id] = seen.get(wallet_id, -1) + 1
        outcome = plan.outcomes[position]
        if isinstance(outcome, AppError):
            return AtomicRefusal(index, outcome)
        balances.append(outcome)
    return balances
