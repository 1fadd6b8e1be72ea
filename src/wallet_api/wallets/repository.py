"""All SQL for wallets. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from wallet_api.core.database import Connection


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


_READ_BALANCE = "SELECT balance FROM wallets WHERE id = $1"
_LOCK_BALANCE = "SELECT balance FROM wallets WHERE id = $1 FOR UPDATE"
# One statement (one round trip, its own commit): the wallet, and with an Idempotency-Key
# ($2) the response to replay for it.
_INSERT_WALLET = """
    WITH created AS (
        INSERT INTO wallets (id) VALUES ($1) RETURNING id
    )
    INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body)
    SELECT $2::text, $3::text, 201, $4::text FROM created WHERE $2::text IS NOT NULL
"""
_WALLET_EXISTS = "SELECT EXISTS (SELECT FROM wallets WHERE id = $1)"

# The writes of a batch, as CTEs that run only when the `updated` CTE changed the wallet.
# Parameters: $1 wallet id, $2 new balance, $3-$6 the ledger rows, $7-$10 the responses
# to keep for their Idempotency-Keys; the statements using it may add more.
_WRITES = """
    inserted AS (
        INSERT INTO wallet_operations
            (wallet_id, operation, amount, balance_after, idempotency_key)
        SELECT $1, operation, amount, balance_after, idempotency_key
        FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::text[])
            AS t(operation, amount, balance_after, idempotency_key)
        WHERE EXISTS (SELECT FROM updated)
    ), remembered AS (
        INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body)
        SELECT key, fingerprint, response_status, response_body
        FROM unnest($7::text[], $8::text[], $9::smallint[], $10::text[])
            AS t(key, fingerprint, response_status, response_body)
        WHERE EXISTS (SELECT FROM updated)
    )
"""

# One statement, so in autocommit mode one round trip that also commits: if the balance is
# still `expected` ($11), set it and write the batch; otherwise change nothing. The row
# lock taken by the UPDATE orders concurrent writers (other processes) on the wallet. A key
# used before, or stored meanwhile by another transaction, fails the statement (unique
# violation of the key's primary key): the index is the check, so a batch of new keys
# pays no look-up.
_COMPARE_AND_APPLY = f"""
    WITH updated AS (
        UPDATE wallets SET balance = $2
        WHERE id = $1 AND balance = $11
        RETURNING id
    ), {_WRITES}
    SELECT EXISTS (SELECT FROM updated) AS applied,
           (SELECT balance FROM wallets WHERE id = $1) AS balance
"""

# The 200 body of an applied operation, in SQL, for the keyed operations of a range write
# (their balance is known only in the statement): `schemas.operation_body` renders the
# same text in Python (`trim_scale` drops the trailing zeros of the cents, as
# `money.format_minor_units` does), and tests/test_idempotency.py compares the two.
_OPERATION_BODY = (
    """'{{"status":"success","balance":' || trim_scale(({balance})::numeric / 100)::text || '}}'"""
)

# One statement for a batch whose balances are not quoted in stored refusals: if the
# balance lies in [$5, $6] (so the batch's decisions hold), add the batch's total ($2) and
# write its ledger rows, each with its balance as an offset ($7) from the balance found,
# and the responses of its keyed operations ($8, $9; a used key fails the statement, as
# above). Returns that balance, or NULL and the balance seen.
_APPLY_WITHIN = f"""
    WITH updated AS (
        UPDATE wallets SET balance = balance + $2
        WHERE id = $1 AND balance BETWEEN $5 AND $6
        RETURNING balance - $2 AS start
    ), inserted AS (
        INSERT INTO wallet_operations
            (wallet_id, operation, amount, balance_after, idempotency_key)
        SELECT $1, operation, amount, (SELECT start FROM updated) + offset_after, key
        FROM unnest($3::text[], $4::bigint[], $7::bigint[], $8::text[])
            AS t(operation, amount, offset_after, key)
        WHERE EXISTS (SELECT FROM updated)
    ), remembered AS (
        INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body)
        SELECT key, fingerprint, 200,
               {_OPERATION_BODY.format(balance="(SELECT start FROM updated) + offset_after")}
        FROM unnest($8::text[], $9::text[], $7::bigint[]) AS t(key, fingerprint, offset_after)
        WHERE key IS NOT NULL AND EXISTS (SELECT FROM updated)
    )
    SELECT (SELECT start FROM updated) AS start,
           (SELECT balance FROM wallets WHERE id = $1) AS balance
"""

# The same writes under the row lock the caller's transaction already holds.
_APPLY_LOCKED = f"""
    WITH updated AS (
        UPDATE wallets SET balance = $2 WHERE id = $1 RETURNING id
    ), {_WRITES}
    SELECT 1
"""

_STORED_RESPONSES = """
    SELECT key, fingerprint, response_status, response_body
    FROM idempotency_keys WHERE key = ANY($1::text[])
"""

_HISTORY = """
    SELECT id, operation, amount, balance_after, created_at, idempotency_key
    FROM wallet_operations
    WHERE wallet_id = $1 AND id < $2
    ORDER BY id DESC
    LIMIT $3
"""

# Oldest first, a bounded number at a time, skipping rows another purge holds: short
# statements that never wait on each other or on traffic.
_PURGE_KEYS = """
    WITH purged AS (
        DELETE FROM idempotency_keys WHERE key IN (
            SELECT key FROM idempotency_keys
            WHERE created_at < now() - make_interval(secs => $1)
            ORDER BY created_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    )
    SELECT count(*) FROM purged
"""


def _batch_arguments(wallet_id: UUID, rows: LedgerRows) -> tuple[object, ...]:
    return (
        wallet_id,
        rows.balance,
        rows.operations,
        rows.amounts,
        rows.balances_after,
        rows.operation_keys,
        rows.keys,
        rows.fingerprints,
        rows.statuses,
        rows.bodies,
    )


async def insert_wallet(
    connection: Connection, wallet_id: UUID, *, key: str | None, fingerprint: str, body: str
) -> None:
    """Insert a wallet, and the response to keep for its Idempotency-Key if it has one."""
    await connection.execute(_INSERT_WALLET, wallet_id, key, fingerprint, body)


async def wallet_exists(connection: Connection, wallet_id: UUID) -> bool:
    return bool(await connection.fetchval(_WALLET_EXISTS, wallet_id))


async def read_balance(connection: Connection, wallet_id: UUID) -> int | None:
    """The wallet's balance in minor units, or None if there is no such wallet."""
    balance: int | None = await connection.fetchval(_READ_BALANCE, wallet_id)
    return balance


async def lock_balance(connection: Connection, wallet_id: UUID) -> int | None:
    """Lock the wallet's row until the transaction ends and return its balance."""
    balance: int | None = await connection.fetchval(_LOCK_BALANCE, wallet_id)
    return balance


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a conditional batch write found: `start`, the balance it started from, when
    it wrote; else None and the balance it saw (None: no such wallet)."""

    start: int | None
    balance: int | None


async def compare_and_apply(
    connection: Connection, wallet_id: UUID, *, expected: int, rows: LedgerRows
) -> WriteResult:
    """Write the batch if the wallet's balance is still `expected`. The balance seen may
    already be outdated when another writer committed meanwhile."""
    row = await connection.fetchrow(
        _COMPARE_AND_APPLY, *_batch_arguments(wallet_id, rows), expected
    )
    assert row is not None
    if row["applied"]:
        return WriteResult(start=expected, balance=rows.balance)
    return WriteResult(start=None, balance=row["balance"])


async def apply_within(
    connection: Connection,
    wallet_id: UUID,
    *,
    delta: int,
    lowest: int,
    highest: int,
    operations: Sequence[str],
    amounts: Sequence[int],
    offsets: Sequence[int],
    keys: Sequence[str | None],
    fingerprints: Sequence[str],
) -> WriteResult:
    """Add `delta` and write the ledger rows (and the 200 responses of the keyed ones) if
    the balance is in [lowest, highest]."""
    row = await connection.fetchrow(
        _APPLY_WITHIN,
        wallet_id,
        delta,
        operations,
        amounts,
        lowest,
        highest,
        offsets,
        keys,
        fingerprints,
    )
    assert row is not None
    return WriteResult(start=row["start"], balance=row["balance"])


async def apply_locked(connection: Connection, wallet_id: UUID, rows: LedgerRows) -> None:
    """Write the batch, in a transaction that holds the wallet's row lock."""
    await connection.execute(_APPLY_LOCKED, *_batch_arguments(wallet_id, rows))


async def stored_responses(
    connection: Connection, keys: Collection[str]
) -> dict[str, StoredResponse]:
    """The responses kept for those of `keys` that were used before."""
    rows = await connection.fetch(_STORED_RESPONSES, list(keys))
    return {
        row["key"]: StoredResponse(row["fingerprint"], row["response_status"], row["response_body"])
        for row in rows
    }


async def history(
    connection: Connection, wallet_id: UUID, *, before_id: int, limit: int
) -> list[LedgerEntry]:
    """The wallet's ledger rows with an id below `before_id`, newest first."""
    rows = await connection.fetch(_HISTORY, wallet_id, before_id, limit)
    return [LedgerEntry(*row) for row in rows]


async def purge_idempotency_keys(
    connection: Connection, *, older_than_seconds: int, batch: int
) -> int:
    """Delete up to `batch` keys older than the retention; return how many went."""
    purged: int = await connection.fetchval(_PURGE_KEYS, float(older_than_seconds), batch)
    return purged


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
_VERIFY_LEDGER = """
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


async def verify_ledger(connection: Connection) -> LedgerReport:
    """Check every wallet: balance = sum of its ledger, each row's balance_after = the one
    before plus its signed amount, nothing negative."""
    row = await connection.fetchrow(_VERIFY_LEDGER)
    assert row is not None
    return LedgerReport(
        wallets=row["wallets"],
        operations=int(row["operations"]),
        balance_mismatches=row["balance_mismatches"],
        chain_breaks=row["chain_breaks"],
        negative_balances=row["negative_balances"],
        wallets_to_inspect=[UUID(str(wallet)) for wallet in row["wallets_to_inspect"]],
    )
