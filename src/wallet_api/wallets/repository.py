"""All SQL for wallets. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Integer,
    SmallInteger,
    String,
    Text,
    Uuid,
    bindparam,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from wallet_api.wallets.models import idempotency_keys, wallet_operations, wallets


@dataclass(frozen=True, slots=True)
class LedgerRows:
    """A batch's writes: the wallet's new balance, its ledger rows, the responses to keep."""

    balance: int
    operations: Sequence[str]
    amounts: Sequence[int]
    balances_after: Sequence[int]
    operation_keys: Sequence[str | None]
    keys: Sequence[str] = ()
    fingerprints: Sequence[str] = ()
    statuses: Sequence[int] = ()
    bodies: Sequence[str] = ()

    def parameters(self) -> dict[str, object]:
        return {
            "balance": self.balance,
            "operations": list(self.operations),
            "amounts": list(self.amounts),
            "balances_after": list(self.balances_after),
            "operation_keys": list(self.operation_keys),
            "keys": list(self.keys),
            "fingerprints": list(self.fingerprints),
            "statuses": list(self.statuses),
            "bodies": list(self.bodies),
        }


@dataclass(frozen=True, slots=True)
class StoredResponse:
    fingerprint: str
    status: int
    body: str


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    operation: str
    amount: int
    balance_after: int
    created_at: datetime
    idempotency_key: str | None


_READ_BALANCE = select(wallets.c.balance).where(wallets.c.id == bindparam("wallet_id"))
_LOCK_BALANCE = _READ_BALANCE.with_for_update()

_BATCH_PARAMETERS = (
    bindparam("wallet_id", type_=Uuid),
    bindparam("balance", type_=BigInteger),
    bindparam("operations", type_=ARRAY(String)),
    bindparam("amounts", type_=ARRAY(BigInteger)),
    bindparam("balances_after", type_=ARRAY(BigInteger)),
    bindparam("operation_keys", type_=ARRAY(String)),
    bindparam("keys", type_=ARRAY(String)),
    bindparam("fingerprints", type_=ARRAY(String)),
    bindparam("statuses", type_=ARRAY(SmallInteger)),
    bindparam("bodies", type_=ARRAY(Text)),
)

# The writes of a batch, as CTEs that run only when the `updated` CTE changed the wallet.
_WRITES = """
    inserted AS (
        INSERT INTO wallet_operations
            (wallet_id, operation, amount, balance_after, idempotency_key)
        SELECT :wallet_id, operation, amount, balance_after, idempotency_key
        FROM unnest(:operations, :amounts, :balances_after, :operation_keys)
            AS t(operation, amount, balance_after, idempotency_key)
        WHERE EXISTS (SELECT FROM updated)
    ), remembered AS (
        INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body)
        SELECT key, fingerprint, response_status, response_body
        FROM unnest(:keys, :fingerprints, :statuses, :bodies)
            AS t(key, fingerprint, response_status, response_body)
        WHERE EXISTS (SELECT FROM updated)
    )
"""

# One statement, so in autocommit mode one round trip that also commits: if the balance is
# still `expected`, set it and write the batch; otherwise change nothing. The row lock
# taken by the UPDATE orders concurrent writers (other processes) on the wallet. A key
# stored meanwhile by another transaction fails the statement (unique violation).
_COMPARE_AND_APPLY = text(
    f"""
    WITH updated AS (
        UPDATE wallets SET balance = :balance
        WHERE id = :wallet_id AND balance = :expected
        RETURNING id
    ), {_WRITES}
    SELECT EXISTS (SELECT FROM updated) AS applied,
           (SELECT balance FROM wallets WHERE id = :wallet_id) AS balance
    """
).bindparams(*_BATCH_PARAMETERS, bindparam("expected", type_=BigInteger))

# The same writes under the row lock the caller's transaction already holds.
_APPLY_LOCKED = text(
    f"""
    WITH updated AS (
        UPDATE wallets SET balance = :balance WHERE id = :wallet_id RETURNING id
    ), {_WRITES}
    SELECT 1
    """
).bindparams(*_BATCH_PARAMETERS)

_STORED_RESPONSES = select(
    idempotency_keys.c.key,
    idempotency_keys.c.fingerprint,
    idempotency_keys.c.response_status,
    idempotency_keys.c.response_body,
).where(idempotency_keys.c.key == bindparam("keys", type_=ARRAY(String)).any_())

_HISTORY = (
    select(
        wallet_operations.c.id,
        wallet_operations.c.operation,
        wallet_operations.c.amount,
        wallet_operations.c.balance_after,
        wallet_operations.c.created_at,
        wallet_operations.c.idempotency_key,
    )
    .where(
        wallet_operations.c.wallet_id == bindparam("wallet_id"),
        wallet_operations.c.id < bindparam("before_id", type_=BigInteger),
    )
    .order_by(wallet_operations.c.id.desc())
    .limit(bindparam("limit", type_=Integer))
)

_WALLET_EXISTS = select(wallets.c.id).where(wallets.c.id == bindparam("wallet_id"))

# Oldest first, a bounded number at a time, skipping rows another purge holds: short
# statements that never wait on each other or on traffic.
_PURGE_KEYS = text(
    """
    DELETE FROM idempotency_keys WHERE key IN (
        SELECT key FROM idempotency_keys
        WHERE created_at < now() - make_interval(secs => :older_than_seconds)
        ORDER BY created_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    """
).bindparams(bindparam("older_than_seconds", type_=BigInteger), bindparam("batch", type_=Integer))


async def insert_wallet(connection: AsyncConnection, wallet_id: UUID) -> None:
    await connection.execute(insert(wallets).values(id=wallet_id))


async def wallet_exists(connection: AsyncConnection, wallet_id: UUID) -> bool:
    result = await connection.execute(_WALLET_EXISTS, {"wallet_id": wallet_id})
    return result.first() is not None


async def read_balance(connection: AsyncConnection, wallet_id: UUID) -> int | None:
    """The wallet's balance in minor units, or None if there is no such wallet."""
    result = await connection.execute(_READ_BALANCE, {"wallet_id": wallet_id})
    return result.scalar_one_or_none()


async def lock_balance(connection: AsyncConnection, wallet_id: UUID) -> int | None:
    """Lock the wallet's row until the transaction ends and return its balance."""
    result = await connection.execute(_LOCK_BALANCE, {"wallet_id": wallet_id})
    return result.scalar_one_or_none()


async def compare_and_apply(
    connection: AsyncConnection, wallet_id: UUID, *, expected: int, rows: LedgerRows
) -> tuple[bool, int | None]:
    """Write the batch if the wallet's balance is still `expected`.

    Returns (True, None) when written; otherwise (False, the balance this statement saw),
    which may already be outdated when another writer committed meanwhile, or None when
    there is no such wallet.
    """
    result = await connection.execute(
        _COMPARE_AND_APPLY, {"wallet_id": wallet_id, "expected": expected, **rows.parameters()}
    )
    applied, seen = result.one()
    return (True, None) if applied else (False, seen)


async def apply_locked(connection: AsyncConnection, wallet_id: UUID, rows: LedgerRows) -> None:
    """Write the batch, in a transaction that holds the wallet's row lock."""
    await connection.execute(_APPLY_LOCKED, {"wallet_id": wallet_id, **rows.parameters()})


async def remember_response(
    connection: AsyncConnection, *, key: str, fingerprint: str, status: int, body: str
) -> None:
    """Keep the response to a keyed request, in the caller's transaction."""
    await connection.execute(
        insert(idempotency_keys).values(
            key=key, fingerprint=fingerprint, response_status=status, response_body=body
        )
    )


async def stored_responses(
    connection: AsyncConnection, keys: Collection[str]
) -> dict[str, StoredResponse]:
    """The responses kept for those of `keys` that were used before."""
    result = await connection.execute(_STORED_RESPONSES, {"keys": list(keys)})
    return {row.key: StoredResponse(*row[1:]) for row in result}


async def history(
    connection: AsyncConnection, wallet_id: UUID, *, before_id: int, limit: int
) -> list[LedgerEntry]:
    """The wallet's ledger rows with an id below `before_id`, newest first."""
    result = await connection.execute(
        _HISTORY, {"wallet_id": wallet_id, "before_id": before_id, "limit": limit}
    )
    return [LedgerEntry(*row) for row in result]


async def purge_idempotency_keys(
    connection: AsyncConnection, *, older_than_seconds: int, batch: int
) -> int:
    """Delete up to `batch` keys older than the retention; return how many went."""
    result = await connection.execute(
        _PURGE_KEYS, {"older_than_seconds": older_than_seconds, "batch": batch}
    )
    return result.rowcount


@dataclass(frozen=True, slots=True)
class LedgerReport:
    wallets: int
    operations: int
    balance_mismatches: int
    chain_breaks: int
    negative_balances: int
    wallets_to_inspect: list[UUID]

    @property
    def consistent(self) -> bool:
        return not (self.balance_mismatches or self.chain_breaks or self.negative_balances)


# One statement (one snapshot, consistent while traffic goes on), set-based: it scales
# with PostgreSQL's aggregation and sorting, not with a Python loop over rows.
_VERIFY_LEDGER = text(
    """
    WITH signed AS (
        SELECT wallet_id, id, balance_after,
               CASE operation WHEN 'DEPOSIT' THEN amount ELSE -amount END AS delta
        FROM wallet_operations
    ), sums AS (
        SELECT wallet_id, count(*) AS n, sum(delta) AS total FROM signed GROUP BY wallet_id
    ), mismatched AS (
        SELECT w.id FROM wallets w LEFT JOIN sums s ON s.wallet_id = w.id
        WHERE w.balance <> coalesce(s.total, 0)
    ), breaks AS (
        SELECT wallet_id FROM (
            SELECT wallet_id, balance_after,
                   coalesce(lag(balance_after) OVER (PARTITION BY wallet_id ORDER BY id), 0)
                   + delta AS expected
            FROM signed
        ) chained
        WHERE balance_after <> expected
    ), negative AS (
        SELECT id FROM wallets WHERE balance < 0
        UNION SELECT wallet_id FROM wallet_operations WHERE balance_after < 0
    )
    SELECT (SELECT count(*) FROM wallets) AS wallets,
           (SELECT coalesce(sum(n), 0) FROM sums) AS operations,
           (SELECT count(*) FROM mismatched) AS balance_mismatches,
           (SELECT count(*) FROM breaks) AS chain_breaks,
           (SELECT count(*) FROM negative) AS negative_balances,
           ARRAY(
               SELECT id FROM (
                   SELECT id FROM mismatched UNION SELECT wallet_id FROM breaks
                   UNION SELECT id FROM negative
               ) bad ORDER BY id LIMIT 20
           ) AS wallets_to_inspect
    """
)


async def verify_ledger(connection: AsyncConnection) -> LedgerReport:
    """Check every wallet: balance = sum of its ledger, each row's balance_after = the one
    before plus its signed amount, nothing negative."""
    row = (await connection.execute(_VERIFY_LEDGER)).one()
    return LedgerReport(
        wallets=row.wallets,
        operations=int(row.operations),
        balance_mismatches=row.balance_mismatches,
        chain_breaks=row.chain_breaks,
        negative_balances=row.negative_balances,
        wallets_to_inspect=list(row.wallets_to_inspect),
    )
