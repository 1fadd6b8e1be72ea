"""The SQL of statements: a period's opening and closing balances, and its entries as CSV
lines (PostgreSQL's own `COPY`) or JSON objects.

A wallet's rows are in time order in id order (revision f3c1a9e57b20), so a period
[`from`, `to`) is a stretch of the wallet's index by time
(ix_wallet_operations_wallet_id_created_at), read in order, and its balances are the
rows just before each end. The caller reads all of it in one snapshot (a read-only,
repeatable-read transaction): the balances and the entries agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from wallet_api.core.database import Connection
from wallet_api.core.money import Currency
from wallet_api.posting.entries import CREDIT_KINDS, UNMOVING_KINDS

#: JSON rows fetched from the server at a time.
PREFETCH = 2_000


def _kinds(kinds: frozenset[str]) -> str:
    return ", ".join(f"'{kind}'" for kind in sorted(kinds))


# The wallet's balance after its last row dated before `$2` (the opening; None: none)
# and before `$3` (the closing; `$3` None: its last row). Each bound is a value, so that
# it bounds the index scan under a generic plan (an `IS NULL OR` would be a filter).
_BALANCES = """
    SELECT (SELECT o.balance_after FROM wallet_operations o
            WHERE o.wallet_id = $1 AND o.created_at < $2
            ORDER BY o.created_at DESC, o.id DESC LIMIT 1) AS opening,
           (SELECT o.balance_after FROM wallet_operations o
            WHERE o.wallet_id = $1
              AND o.created_at < coalesce($3::timestamptz, 'infinity'::timestamptz)
            ORDER BY o.created_at DESC, o.id DESC LIMIT 1) AS closing
"""
# The period's rows, oldest first: those dated in [`$2`, `$3`) (None: unbounded), from the
# wallet's index by time (its rows are in time order in id order: revision f3c1a9e57b20).
_PERIOD = """
    FROM wallet_operations o
    WHERE o.wallet_id = $1
      AND o.created_at >= coalesce($2::timestamptz, '-infinity'::timestamptz)
      AND o.created_at < coalesce($3::timestamptz, 'infinity'::timestamptz)
    ORDER BY o.created_at, o.id
"""
_CHANGE = (
    f"CASE WHEN o.operation IN ({_kinds(CREDIT_KINDS)}) THEN o.amount"
    f" WHEN o.operation IN ({_kinds(UNMOVING_KINDS)}) THEN 0 ELSE -o.amount END"
)
_TIME = """to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _decimal(minor: str, exponent: int) -> str:
    """SQL: minor units as a decimal with the currency's fraction digits (`12.50`)."""
    return f"(({minor})::numeric / {10**exponent})::numeric(20, {exponent})"


def _number(minor: str, exponent: int) -> str:
    """SQL: minor units as the API's JSON numbers write them (`12.5`)."""
    return f"trim_scale(({minor})::numeric / {10**exponent})"


#: The CSV's columns, one line per entry (core of `_CSV`'s SELECT, in this order).
CSV_COLUMNS = (
    "entry_id",
    "seq",
    "created_at",
    "operation",
    "change",
    "amount",
    "balance_after",
    "transfer_id",
    "counterparty_wallet_uuid",
    "hold_id",
    "reverses_entry_id",
    "description",
    "metadata",
    "currency",
)


# A description that a spreadsheet would take for a formula (=, +, -, @, a tab, a carriage
# return first: CSV injection) is written after a single quote.
# The amounts in the wallet's currency's digits (`exponent`); its code is `$4`.
@cache
def _csv(exponent: int) -> str:
    return f"""
    SELECT o.id, o.seq, {_TIME}, o.operation, {_decimal(_CHANGE, exponent)},
           {_decimal("o.amount", exponent)}, {_decimal("o.balance_after", exponent)},
           o.transfer_id, o.counterparty_wallet_id, o.hold_id,
           o.reverses_id,
           CASE WHEN o.description ~ '^[=+@\\t\\r-]' THEN '''' || o.description
                ELSE o.description END,
           o.metadata, $4::text
    {_PERIOD}
"""


@cache
def _json(exponent: int) -> str:
    return f"""
    SELECT json_strip_nulls(json_build_object(
        'id', o.id, 'seq', o.seq, 'created_at', {_TIME}, 'operation', o.operation,
        'change', {_number(_CHANGE, exponent)}, 'amount', {_number("o.amount", exponent)},
        'balance_after', {_number("o.balance_after", exponent)}, 'transfer_id', o.transfer_id,
        'counterparty_wallet_uuid', o.counterparty_wallet_id, 'hold_id', o.hold_id,
        'reverses_entry_id', o.reverses_id, 'description', o.description,
        'metadata', o.metadata
    ))::text
    {_PERIOD}
"""


async def balances(
    connection: Connection, wallet_id: UUID, since: datetime | None, until: datetime | None
) -> tuple[int, int]:
    """The wallet's balances at the start and at the end of the period (0 before its
    first row)."""
    row = await connection.fetchrow(_BALANCES, wallet_id, since, until)
    assert row is not None
    return row["opening"] or 0, row["closing"] or 0


async def copy_csv(
    connection: Connection,
    wallet_id: UUID,
    since: datetime | None,
    until: datetime | None,
    output: Callable[[bytes], Coroutine[Any, Any, None]],
    *,
    currency: Currency,
    seconds: float,
) -> None:
    """The period's entries as CSV lines (no header), written by the server, handed to
    `output` as they arrive, within `seconds` (the whole copy, its reader's pace
    included: asyncpg's own limit, beside the statement timeout of the transaction)."""
    await connection.copy_from_query(
        _csv(currency.exponent),
        wallet_id,
        since,
        until,
        currency.code,
        output=output,
        format="csv",
        timeout=seconds,
    )


async def json_entries(
    connection: Connection,
    wallet_id: UUID,
    since: datetime | None,
    until: datetime | None,
    *,
    exponent: int,
) -> AsyncIterator[str]:
    """The period's entries, each a JSON object rendered by the server, oldest first (a
    server-side cursor: PREFETCH rows in memory at a time)."""
    query = _json(exponent)
    async for row in connection.cursor(query, wallet_id, since, until, prefetch=PREFETCH):
        yield row[0]
