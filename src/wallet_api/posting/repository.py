"""The SQL of entries (transfers, reversals). Functions take a connection in the caller's
transaction, which holds the wallets' row locks from `lock_wallets` until it ends."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import asyncpg

from wallet_api.core.database import Connection
from wallet_api.core.idempotency import StoredResponse


@dataclass(slots=True)
class EntriesWrite:
    """One statement's writes, as column arrays: each wallet's new balance, the ledger
    rows in the order they were applied, and the responses kept for Idempotency-Keys."""

    wallets: list[UUID] = field(default_factory=list)
    balances: list[int] = field(default_factory=list)
    row_wallets: list[UUID] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    amounts: list[int] = field(default_factory=list)
    balances_after: list[int] = field(default_factory=list)
    row_keys: list[str | None] = field(default_factory=list)
    row_api_keys: list[str | None] = field(default_factory=list)
    transfers: list[UUID | None] = field(default_factory=list)
    counterparties: list[UUID | None] = field(default_factory=list)
    reverses: list[int | None] = field(default_factory=list)
    descriptions: list[str | None] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)


# Rows locked in id order, as every writer locks them (wallets/repository.py), so that
# transactions over overlapping wallets wait for each other, never in a cycle. `now()` is
# the transaction's timestamp: the created_at of the rows it writes.
_LOCK_WALLETS = """
    WITH locked AS (
        SELECT w.id, w.balance FROM unnest($1::uuid[]) AS t(id) JOIN wallets w ON w.id = t.id
        ORDER BY w.id FOR UPDATE OF w
    )
    SELECT now() AS at, array_agg(id) AS ids, array_agg(balance) AS balances FROM locked
"""
# Those of the rows that a reversal compensates already.
_REVERSED = """
    SELECT o.reverses_id FROM unnest($1::bigint[]) AS t(id)
    JOIN wallet_operations o ON o.reverses_id = t.id
"""
_STORED_RESPONSES = """
    SELECT key, fingerprint, response_status, response_body
    FROM unnest($1::text[]) AS t(key) JOIN idempotency_keys USING (key)
"""
# The balances are the exact ones planned under the row locks. Identity values follow
# the ORDER BY: a wallet's rows get ids in the order they were applied.
_WRITE_ENTRIES = """
    WITH moved AS (
        UPDATE wallets w SET balance = m.balance
        FROM unnest($1::uuid[], $2::bigint[]) AS m(id, balance)
        WHERE w.id = m.id
    ), entered AS (
        INSERT INTO wallet_operations (
            wallet_id, operation, amount, balance_after, idempotency_key,
            transfer_id, counterparty_wallet_id, reverses_id, description, api_key_id
        )
        SELECT r.wallet_id, r.kind, r.amount, r.balance_after, r.key,
               r.transfer_id, r.counterparty, r.reverses, r.description, r.api_key
        FROM unnest(
            $3::uuid[], $4::text[], $5::bigint[], $6::bigint[], $7::text[],
            $8::uuid[], $9::uuid[], $10::bigint[], $11::text[], $16::text[]
        ) WITH ORDINALITY AS r(
            wallet_id, kind, amount, balance_after, key,
            transfer_id, counterparty, reverses, description, api_key, n
        )
        ORDER BY r.n
    )
    INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body)
    SELECT * FROM unnest($12::text[], $13::text[], $14::smallint[], $15::text[])
"""


@dataclass(slots=True)
class RangeWrite:
    """A batch of entries written in one statement (entries.RangePlan): each wallet moved
    by its total if its balance lies in [low, high], the ledger rows at start + offset;
    nothing at all if any wallet is missing or out of its range."""

    wallets: list[UUID] = field(default_factory=list)
    lows: list[int] = field(default_factory=list)
    highs: list[int] = field(default_factory=list)
    deltas: list[int] = field(default_factory=list)
    row_wallets: list[UUID] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    amounts: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    transfers: list[UUID | None] = field(default_factory=list)
    counterparties: list[UUID | None] = field(default_factory=list)
    descriptions: list[str | None] = field(default_factory=list)
    row_api_keys: list[str | None] = field(default_factory=list)


# One statement, its own commit: the rows locked in id order (as every writer locks them),
# each wallet moved by its total if its balance lies in its range (the UPDATE checks and
# adds to the current row version: a row a concurrent commit changed is judged as it is
# now), and the ledger rows written (identity values in the rows' order; `now()` their
# created_at). If no wallet moved (one missing, or out of range), nothing was written. If
# some moved and others did not, the last line divides by zero, once: the statement fails
# and writes nothing, rather than half a batch.
_WRITE_ENTRIES_IN_RANGE = """
    WITH locked AS (
        SELECT w.id, i.low, i.high, i.delta
        FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[])
            AS i(id, low, high, delta)
        JOIN wallets w ON w.id = i.id
        ORDER BY w.id FOR UPDATE OF w
    ), moved AS (
        UPDATE wallets w SET balance = w.balance + l.delta
        FROM locked l
        WHERE w.id = l.id AND w.balance BETWEEN l.low AND l.high
        RETURNING w.id, w.balance - l.delta AS start
    ), entered AS (
        INSERT INTO wallet_operations (
            wallet_id, operation, amount, balance_after,
            transfer_id, counterparty_wallet_id, description, api_key_id
        )
        SELECT r.wallet_id, r.kind, r.amount, m.start + r.offset_after,
               r.transfer_id, r.counterparty, r.description, r.api_key
        FROM unnest(
            $5::uuid[], $6::text[], $7::bigint[], $8::bigint[],
            $9::uuid[], $10::uuid[], $11::text[], $12::text[]
        ) WITH ORDINALITY AS r(
            wallet_id, kind, amount, offset_after,
            transfer_id, counterparty, description, api_key, n
        )
        JOIN moved m ON m.id = r.wallet_id
        ORDER BY r.n
    )
    SELECT now() AS at, array_agg(id) AS ids, array_agg(start) AS starts,
           1 / (count(*) IN (0, cardinality($1::uuid[])))::int AS whole
    FROM moved
"""


async def write_entries_in_range(
    connection: Connection, write: RangeWrite
) -> tuple[dict[UUID, int], datetime] | None:
    """Write the batch if every wallet fits its range: each wallet's start balance, and
    the transaction's timestamp; None (nothing written) otherwise."""
    try:
        row = await _fetch_in_range(connection, write)
    except asyncpg.DivisionByZeroError:  # some wallets fit, others not: nothing written
        return None
    assert row is not None
    if row["ids"] is None:  # no wallet fits (or exists): nothing was written
        return None
    return dict(zip(row["ids"], row["starts"], strict=True)), row["at"]


async def _fetch_in_range(connection: Connection, write: RangeWrite) -> asyncpg.Record | None:
    return await connection.fetchrow(
        _WRITE_ENTRIES_IN_RANGE,
        write.wallets,
        write.lows,
        write.highs,
        write.deltas,
        write.row_wallets,
        write.kinds,
        write.amounts,
        write.offsets,
        write.transfers,
        write.counterparties,
        write.descriptions,
        write.row_api_keys,
    )


async def lock_wallets(
    connection: Connection, wallet_ids: Sequence[UUID]
) -> tuple[dict[UUID, int], datetime]:
    """Lock the rows of those of `wallet_ids` that exist until the transaction ends;
    their balances, and the transaction's timestamp."""
    row = await connection.fetchrow(_LOCK_WALLETS, wallet_ids)
    assert row is not None
    balances = dict(zip(row["ids"] or (), row["balances"] or (), strict=True))
    return balances, row["at"]


async def reversed_rows(connection: Connection, row_ids: Collection[int]) -> set[int]:
    """Those of the ledger rows `row_ids` that a reversal compensates already."""
    return {row[0] for row in await connection.fetch(_REVERSED, list(row_ids))}


async def stored_responses(
    connection: Connection, keys: Collection[str]
) -> dict[str, StoredResponse]:
    """The responses kept for those of `keys` that were used before."""
    rows = await connection.fetch(_STORED_RESPONSES, list(keys))
    return {
        row["key"]: StoredResponse(row["fingerprint"], row["response_status"], row["response_body"])
        for row in rows
    }


async def write_entries(connection: Connection, write: EntriesWrite) -> None:
    """Write the balances, the ledger rows and the kept responses in one statement."""
    await connection.execute(
        _WRITE_ENTRIES,
        write.wallets,
        write.balances,
        write.row_wallets,
        write.kinds,
        write.amounts,
        write.balances_after,
        write.row_keys,
        write.transfers,
        write.counterparties,
        write.reverses,
        write.descriptions,
        write.keys,
        write.fingerprints,
        write.statuses,
        write.bodies,
        write.row_api_keys,
    )
