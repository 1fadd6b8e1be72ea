"""Wallet business rules: overdraft and limit checks, batching, the unit of work."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from wallet_api.core.config import Settings
from wallet_api.core.database import Database
from wallet_api.core.errors import AppError
from wallet_api.core.money import MAX_MINOR_UNITS
from wallet_api.wallets import repository
from wallet_api.wallets.coalescer import Coalescer
from wallet_api.wallets.exceptions import BalanceLimitExceeded, InsufficientFunds, WalletNotFound
from wallet_api.wallets.models import OperationType


@dataclass(frozen=True, slots=True)
class Operation:
    """One requested deposit or withdrawal, in minor units."""

    kind: OperationType
    amount: int


#: What one operation came to: the balance right after it, or why it was refused.
Outcome = int | AppError


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """The effect of applying a batch in order to a balance."""

    outcomes: list[Outcome]
    balance: int
    applied: list[tuple[str, int, int]]  # (operation, amount, balance after)


def plan_batch(balance: int, operations: Sequence[Operation]) -> BatchPlan:
    """Apply `operations` one at a time, in order, to `balance`.

    A refused operation leaves the balance as it was, so the operations after it see
    exactly what they would have seen had the refused one never been sent.
    """
    outcomes: list[Outcome] = []
    applied: list[tuple[str, int, int]] = []
    for operation in operations:
        if operation.kind is OperationType.DEPOSIT:
            if balance + operation.amount > MAX_MINOR_UNITS:
                outcomes.append(
                    BalanceLimitExceeded(
                        balance=balance, amount=operation.amount, limit=MAX_MINOR_UNITS
                    )
                )
                continue
            balance += operation.amount
        else:
            if operation.amount > balance:
                outcomes.append(InsufficientFunds(balance=balance, amount=operation.amount))
                continue
            balance -= operation.amount
        outcomes.append(balance)
        applied.append((operation.kind.value, operation.amount, balance))
    return BatchPlan(outcomes=outcomes, balance=balance, applied=applied)


def _ledger_columns(plan: BatchPlan) -> dict[str, Any]:
    """The plan as the repository's column arrays (one entry per applied operation)."""
    operations, amounts, balances_after = zip(*plan.applied, strict=True)
    return {
        "balance": plan.balance,
        "operations": operations,
        "amounts": amounts,
        "balances_after": balances_after,
    }


#: Optimistic writes tried before a batch falls back to a row-locking transaction.
OPTIMISTIC_ATTEMPTS = 3
#: Wallets whose last seen balance a process remembers (a guess, always verified).
KNOWN_BALANCES_LIMIT = 10_000


class WalletService:
    """Creates wallets, reads balances, applies operations (coalesced unless disabled)."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._known_balances: OrderedDict[UUID, int] = OrderedDict()
        self._coalescer: Coalescer[Operation, Outcome] | None = None
        self._reads: Coalescer[None, int | None] | None = None
        if settings.coalescing_enabled:
            self._coalescer = Coalescer(
                self.apply_batch,
                max_batch=settings.coalescing_max_batch,
                queue_limit=settings.coalescing_queue_limit,
                deadline=settings.operation_deadline,
            )
            # Concurrent reads of one wallet share one query (the next one to start).
            self._reads = Coalescer(
                self._read_for_all,
                max_batch=settings.coalescing_max_batch,
                queue_limit=settings.coalescing_queue_limit,
                deadline=settings.operation_deadline,
            )

    async def create_wallet(self) -> UUID:
        wallet_id = uuid.uuid4()
        async with self._database.transaction() as connection:
            await repository.insert_wallet(connection, wallet_id)
        return wallet_id

    async def get_balance(self, wallet_id: UUID) -> int:
        if self._reads is not None:
            balance = await self._reads.submit(wallet_id, None)
        else:
            balance = await self._read_balance(wallet_id)
        if balance is None:
            raise WalletNotFound(wallet_id)
        return balance

    async def _read_balance(self, wallet_id: UUID) -> int | None:
        async with self._database.autocommit() as connection:
            return await repository.read_balance(connection, wallet_id)

    async def _read_for_all(self, wallet_id: UUID, readers: Sequence[None]) -> list[int | None]:
        balance = await self._read_balance(wallet_id)
        return [balance] * len(readers)

    async def apply_operation(self, wallet_id: UUID, operation: Operation) -> int:
        """Apply one operation; return the balance right after it, or raise its refusal."""
        if self._coalescer is not None:
            outcome = await self._coalescer.submit(wallet_id, operation)
        else:
            # The classic way, one row-locking transaction per operation: concurrent
            # operations on one wallet would mostly lose optimistic races against each other.
            (outcome,) = await self._apply_locked(wallet_id, [operation])
        if isinstance(outcome, AppError):
            raise outcome
        return outcome

    async def apply_batch(self, wallet_id: UUID, operations: Sequence[Operation]) -> list[Outcome]:
        """Apply `operations` in order as one transaction; return one outcome each.

        Optimistic first: plan on the balance this process last saw, then write only if
        the balance is still that (one statement, one round trip with its commit). When
        other processes keep changing the wallet, fall back to a row-locking transaction.
        """
        expected = self._known_balances.get(wallet_id)
        for _ in range(OPTIMISTIC_ATTEMPTS):
            if expected is None:
                expected = await self._read_balance(wallet_id)
                if expected is None:
                    return [WalletNotFound(wallet_id) for _ in operations]
            plan = plan_batch(expected, operations)
            if plan.applied:
                async with self._database.autocommit() as connection:
                    applied, seen = await repository.compare_and_apply(
                        connection, wallet_id, expected=expected, **_ledger_columns(plan)
                    )
                if applied:
                    self._remember(wallet_id, plan.balance)
                    return plan.outcomes
            else:
                # Only refusals: they stand if the balance they were judged on is current.
                seen = await self._read_balance(wallet_id)
                if seen == expected:
                    self._remember(wallet_id, expected)
                    return plan.outcomes
            if seen is None:
                return [WalletNotFound(wallet_id) for _ in operations]
            expected = seen
        return await self._apply_locked(wallet_id, operations)

    async def _apply_locked(
        self, wallet_id: UUID, operations: Sequence[Operation]
    ) -> list[Outcome]:
        """Apply `operations` in one transaction that holds the wallet's row lock throughout."""
        async with self._database.transaction() as connection:
            balance = await repository.lock_balance(connection, wallet_id)
            if balance is None:
                return [WalletNotFound(wallet_id) for _ in operations]
            plan = plan_batch(balance, operations)
            if plan.applied:
                await repository.apply_operations(connection, wallet_id, **_ledger_columns(plan))
        self._remember(wallet_id, plan.balance)
        return plan.outcomes

    def _remember(self, wallet_id: UUID, balance: int) -> None:
        self._known_balances[wallet_id] = balance
        self._known_balances.move_to_end(wallet_id)
        if len(self._known_balances) > KNOWN_BALANCES_LIMIT:
            self._known_balances.popitem(last=False)

    async def close(self) -> None:
        """Finish every queued operation (used on shutdown)."""
        for coalescer in (self._coalescer, self._reads):
            if coalescer is not None:
                await coalescer.close()
