"""All SQL for wallets. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import BigInteger, String, Uuid, bindparam, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from wallet_api.wallets.models import wallets

_LOCK_BALANCE = (
    select(wallets.c.balance).where(wallets.c.id == bindparam("wallet_id")).with_for_update()
)
_READ_BALANCE = select(wallets.c.balance).where(wallets.c.id == bindparam("wallet_id"))

_LEDGER_ARRAYS = (
    bindparam("wallet_id", type_=Uuid),
    bindparam("balance", type_=BigInteger),
    bindparam("operations", type_=ARRAY(String)),
    bindparam("amounts", type_=ARRAY(BigInteger)),
    bindparam("balances_after", type_=ARRAY(BigInteger)),
)

# One statement, so in autocommit mode one round trip that also commits: if the balance is
# still `expected`, set it and append the ledger rows; otherwise change nothing. The row
# lock taken by the UPDATE orders concurrent writers (other processes) on the wallet.
_COMPARE_AND_APPLY = text(
    """
    WITH updated AS (
        UPDATE wallets SET balance = :balance
        WHERE id = :wallet_id AND balance = :expected
        RETURNING id
    ), inserted AS (
        INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after)
        SELECT :wallet_id, operation, amount, balance_after
        FROM unnest(:operations, :amounts, :balances_after) AS t(operation, amount, balance_after)
        WHERE EXISTS (SELECT FROM updated)
    )
    SELECT EXISTS (SELECT FROM updated) AS applied,
           (SELECT balance FROM wallets WHERE id = :wallet_id) AS balance
    """
).bindparams(*_LEDGER_ARRAYS, bindparam("expected", type_=BigInteger))

# The same write under a lock already held by the caller's transaction.
_APPLY_BATCH = text(
    """
    WITH updated AS (
        UPDATE wallets SET balance = :balance WHERE id = :wallet_id
    )
    INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after)
    SELECT :wallet_id, operation, amount, balance_after
    FROM unnest(:operations, :amounts, :balances_after) AS t(operation, amount, balance_after)
    """
).bindparams(*_LEDGER_ARRAYS)


async def insert_wallet(connection: AsyncConnection, wallet_id: UUID) -> None:
    await connection.execute(insert(wallets).values(id=wallet_id))


async def read_balance(connection: AsyncConnection, wallet_id: UUID) -> int | None:
    """The wallet's balance in minor units, or None if there is no such wallet."""
    result = await connection.execute(_READ_BALANCE, {"wallet_id": wallet_id})
    return result.scalar_one_or_none()


async def lock_balance(connection: AsyncConnection, wallet_id: UUID) -> int | None:
    """Lock the wallet's row until the transaction ends and return its balance."""
    result = await connection.execute(_LOCK_BALANCE, {"wallet_id": wallet_id})
    return result.scalar_one_or_none()


async def compare_and_apply(
    connection: AsyncConnection,
    wallet_id: UUID,
    *,
    expected: int,
    balance: int,
    operations: Sequence[str],
    amounts: Sequence[int],
    balances_after: Sequence[int],
) -> tuple[bool, int | None]:
    """Apply the batch if the wallet's balance is still `expected`.

    Returns (True, None) when applied; otherwise (False, the balance this statement saw),
    which may already be outdated when another writer committed meanwhile, or None when
    there is no such wallet.
    """
    result = await connection.execute(
        _COMPARE_AND_APPLY,
        {
            "wallet_id": wallet_id,
            "expected": expected,
            "balance": balance,
            "operations": list(operations),
            "amounts": list(amounts),
            "balances_after": list(balances_after),
        },
    )
    applied, seen = result.one()
    return (True, None) if applied else (False, seen)


async def apply_operations(
    connection: AsyncConnection,
    wallet_id: UUID,
    *,
    balance: int,
    operations: Sequence[str],
    amounts: Sequence[int],
    balances_after: Sequence[int],
) -> None:
    """Store the wallet's new balance and its ledger rows, in the caller's transaction."""
    await connection.execute(
        _APPLY_BATCH,
        {
            "wallet_id": wallet_id,
            "balance": balance,
            "operations": list(operations),
            "amounts": list(amounts),
            "balances_after": list(balances_after),
        },
    )
