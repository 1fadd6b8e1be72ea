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

# One round trip for the whole batch: set the new balance and append every ledger row.
_APPLY_BATCH = text(
    """
    WITH updated AS (
        UPDATE wallets SET balance = :balance WHERE id = :wallet_id
    )
    INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after)
    SELECT :wallet_id, operation, amount, balance_after
    FROM unnest(:operations, :amounts, :balances_after) AS t(operation, amount, balance_after)
    """
).bindparams(
    bindparam("wallet_id", type_=Uuid),
    bindparam("balance", type_=BigInteger),
    bindparam("operations", type_=ARRAY(String)),
    bindparam("amounts", type_=ARRAY(BigInteger)),
    bindparam("balances_after", type_=ARRAY(BigInteger)),
)


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
