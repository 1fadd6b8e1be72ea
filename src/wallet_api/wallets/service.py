"""Wallet business rules: overdraft and limit checks, batching, the unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from wallet_api.core.config import Settings
from wallet_api.core.database import Database
from wallet_api.core.errors import AppError
from wallet_api.core.money import MAX_MINOR_UNITS
from wallet_api.wallets import repository
from wallet_api.wallets.coalescer import WriteCoalescer
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


class WalletService:
    """Creates wallets, reads balances, applies operations (coalesced unless disabled)."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._coalescer: WriteCoalescer[Operation, Outcome] | None = None
        if settings.coalescing_enabled:
            self._coalescer = WriteCoalescer(
                self.apply_batch,
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
        async with self._database.reader() as connection:
            balance = await repository.read_balance(connection, wallet_id)
        if balance is None:
            raise WalletNotFound(wallet_id)
        return balance

    async def apply_operation(self, wallet_id: UUID, operation: Operation) -> int:
        """Apply one operation; return the balance right after it, or raise its refusal."""
        if self._coalescer is not None:
            outcome = await self._coalescer.submit(wallet_id, operation)
        else:
            (outcome,) = await self.apply_batch(wallet_id, [operation])
        if isinstance(outcome, AppError):
            raise outcome
        return outcome

    async def apply_batch(self, wallet_id: UUID, operations: Sequence[Operation]) -> list[Outcome]:
        """Apply `operations` in order in one transaction, under the wallet's row lock."""
        async with self._database.transaction() as connection:
            balance = await repository.lock_balance(connection, wallet_id)
            if balance is None:
                return [WalletNotFound(wallet_id) for _ in operations]
            plan = plan_batch(balance, operations)
            if plan.applied:
                operation_names, amounts, balances_after = zip(*plan.applied, strict=True)
                await repository.apply_operations(
                    connection,
                    wallet_id,
                    balance=plan.balance,
                    operations=operation_names,
                    amounts=amounts,
                    balances_after=balances_after,
                )
        return plan.outcomes

    async def close(self) -> None:
        """Finish every queued operation (used on shutdown)."""
        if self._coalescer is not None:
            await self._coalescer.close()
