"""Reads that must not grow with what lies behind them. The write path's reads of a
wallet's holds go through the index of its active holds
(`ix_holds_active_wallet_id_expires_at`): what one wallet's write costs must not grow with
the holds it closed long ago, nor with other wallets' active holds. Read from the plans
PostgreSQL chooses on a table that holds many of both. On a database of its own: its
wallets are made with balances and no ledger rows, which the session's database (checked
by `wallet-api verify`) must not hold."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.support import TestDatabase, migrated
from wallet_api.core.database import _INDEX_ORDER
from wallet_api.events.repository import _ALL_PAGE
from wallet_api.posting.repository import (
    _HELD_NOW,
    _NOTE_HOLD_EXPIRIES,
    RangeWrite,
    range_statement,
)
from wallet_api.statements.repository import _BALANCES, _json
from wallet_api.wallets.repository import _BALANCE_AT, _HISTORY, _HISTORY_BY_METADATA
from wallet_api.webhooks.repository import _FAN_OUT

INDEX = "ix_holds_active_wallet_id_expires_at"
#: Closed holds of the wallet read, and active holds of other wallets, beside its one active
#: hold: enough that reading through them would cost the planner more than the index.
CLOSED_HOLDS = 5000
OTHER_WALLETS = 500
OTHER_ACTIVE_HOLDS = 5000


@pytest.fixture(scope="module")
def wallet(make_database: Callable[[], TestDatabase]) -> tuple[TestDatabase, uuid.UUID]:
    """A database whose wallet has one active hold, which has expired (so that the sum of
    its holds is read, not the stored figure), many closed ones, and other wallets with
    many active ones."""
    database = migrated(make_database())
    wallet = uuid.uuid4()
    others = [uuid.uuid4() for _ in range(OTHER_WALLETS)]
    database.fetch(
        "INSERT INTO wallets (id, currency, currency_exponent, balance, held, holds_expire_at)"
        " SELECT id, 'USD', 2, 1000000, 1, now() - interval '1 second'"
        " FROM unnest($1::uuid[]) AS t(id)",
        [wallet, *others],
    )
    database.fetch(
        "INSERT INTO holds (id, wallet_id, amount, remaining, captured, status, expires_at,"
        " closed_at) SELECT gen_random_uuid(), $1, 1, 0, 1, 'captured', now() + interval '1 day',"
        " now() FROM generate_series(1, $2)",
        wallet,
        CLOSED_HOLDS,
    )
    database.fetch(
        "INSERT INTO holds (id, wallet_id, amount, remaining, status, expires_at)"
        " SELECT gen_random_uuid(), ($1::uuid[])[1 + i % cardinality($1::uuid[])], 1, 1,"
        " 'active', now() + i * interval '1 second' FROM generate_series(1, $2) AS i",
        others,
        OTHER_ACTIVE_HOLDS,
    )
    database.fetch(
        "INSERT INTO holds (id, wallet_id, amount, remaining, status, expires_at)"
        " VALUES (gen_random_uuid(), $1, 1, 1, 'active', now() - interval '1 second')",
        wallet,
    )
    database.fetch("ANALYZE holds")
    return database, wallet


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def reads_of_holds(database: TestDatabase, sql: str, wallet: uuid.UUID) -> list[str]:
    """How the statement's plan reads the holds table: the index of each index scan of it,
    or the type of a scan that uses none (a bitmap's heap scan reads through the index its
    own child scan names)."""
    indexes = {
        row["indexname"]
        for row in database.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'holds'")
    }
    (row,) = database.fetch(f"EXPLAIN (FORMAT JSON) {sql}", [wallet])
    (document,) = json.loads(row[0])
    reads = []
    for node in nodes(document["Plan"]):
        if node.get("Index Name") in indexes:
            reads.append(node["Index Name"])
        elif node.get("Relation Name") == "holds" and node["Node Type"] != "Bitmap Heap Scan":
            reads.append(node["Node Type"])
    return reads


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(_HELD_NOW, id="what-its-holds-set-aside-now"),
        pytest.param(_NOTE_HOLD_EXPIRIES, id="its-first-expiry-after-a-change"),
    ],
)
def test_a_wallets_active_holds_are_read_through_their_index(
    wallet: tuple[TestDatabase, uuid.UUID], statement: str
) -> None:
    database, wallet_id = wallet
    reads = reads_of_holds(database, statement, wallet_id)
    assert reads, "the statement reads no holds: this test no longer tests it"
    assert set(reads) == {INDEX}, reads


@pytest.fixture(scope="module")
def feed(make_database: Callable[[], TestDatabase]) -> TestDatabase:
    """A database whose feed holds 20,000 events, and whose fan-out has passed all but the
    last 10."""
    database = migrated(make_database())
    wallet = uuid.uuid4()
    database.fetch(
        "INSERT INTO wallets (id, currency, currency_exponent) VALUES ($1, 'USD', 2)", wallet
    )
    for _ in range(4):  # 4 transactions: 4 transaction ids
        database.fetch(
            "INSERT INTO events (type, wallet_id) SELECT 'operation.applied', $1"
            " FROM generate_series(1, 5000)",
            wallet,
        )
    database.fetch(
        "UPDATE webhook_feed SET (xid, event_id) ="
        " (SELECT xid, id FROM events ORDER BY xid DESC, id DESC OFFSET 10 LIMIT 1)"
    )
    database.fetch("ANALYZE events")
    return database


def events_read(database: TestDatabase, sql: str, *args: Any) -> int:
    return rows_read(database, "events", sql, *args)


def rows_read(
    database: TestDatabase, table: str, sql: str, *args: Any, index_order: bool = False
) -> int:
    """The rows the statement's plan reads from `table`, run as the service runs it (a
    generic plan; with `index_order`, in a transaction of `Database.in_index_order`), in a
    transaction rolled back."""

    async def run() -> int:
        connection = await asyncpg.connect(
            database.url(), server_settings={"plan_cache_mode": "force_generic_plan"}
        )
        try:
            transaction = connection.transaction()
            await transaction.start()
            try:
                if index_order:
                    await connection.execute(_INDEX_ORDER)
                row = await connection.fetchrow(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
            finally:
                await transaction.rollback()
        finally:
            await connection.close()
        assert row is not None
        (document,) = json.loads(row[0])
        # What each scan of the table returned, and what it read and threw away.
        reads = [
            (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
            for node in nodes(document["Plan"])
            if node.get("Relation Name") == table
        ]
        assert reads, f"the statement reads no {table}: this test no longer tests it"
        return sum(reads)

    return asyncio.run(run())


def test_the_feed_and_the_fan_out_read_only_what_follows_their_position(
    feed: TestDatabase,
) -> None:
    """A page after a position near the feed's end, and the fan-out after its position,
    read the events after it, not the feed from its start (the fan-out's read of the whole
    feed made webhooks seconds late under load)."""
    (last,) = feed.fetch(
        "SELECT xid::text, id FROM events ORDER BY xid DESC, id DESC OFFSET 10 LIMIT 1"
    )
    assert events_read(feed, _ALL_PAGE, last[0], last[1], None, None, 100) <= 12
    assert events_read(feed, _FAN_OUT, 1000) <= 12


#: Entries of the long wallet, a second apart from LEDGER_START, every 10th a withdrawal.
ENTRIES = 50_000
LEDGER_START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ledger(make_database: Callable[[], TestDatabase]) -> tuple[TestDatabase, uuid.UUID]:
    """A database with 10 wallets of ENTRIES entries each, their rows interleaved (as
    wallets written at once leave them): a scan that is not the wallet's own reads the
    others' rows too. Every tenth row has metadata, an order id that each wallet has once."""
    database = migrated(make_database())
    wallets = [uuid.uuid4() for _ in range(10)]
    database.fetch(
        "INSERT INTO wallets (id, currency, currency_exponent, balance)"
        " SELECT id, 'USD', 2, 0 FROM unnest($1::uuid[]) AS t(id)",
        wallets,
    )
    database.fetch(
        "INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after,"
        " created_at, seq, metadata) SELECT w.id,"
        " CASE WHEN g % 10 = 0 THEN 'WITHDRAW' ELSE 'DEPOSIT' END, 100,"
        " 100 * (g - 2 * (g / 10)), $2::timestamptz + g * interval '1 second', g,"
        " CASE WHEN g % 10 = 5 THEN jsonb_build_object('order_id', (g / 10)::text) END"
        " FROM generate_series(1, $3::bigint) AS g, unnest($1::uuid[]) AS w(id)"
        " ORDER BY g, w.id",
        wallets,
        LEDGER_START,
        ENTRIES,
    )
    database.fetch("ANALYZE wallet_operations")
    return database, wallets[0]


def test_the_ledger_in_time_reads_only_what_it_answers(
    ledger: tuple[TestDatabase, uuid.UUID],
) -> None:
    """A balance at a time, a history page bounded by time (and filtered by kind), a
    statement's balances and its entries, in the middle of a long ledger: each reads what
    it answers (through the index of the wallet's rows by time), never the ledger up to
    there."""
    database, wallet = ledger
    middle = LEDGER_START + timedelta(seconds=ENTRIES // 2)
    hour = middle + timedelta(hours=1)
    newest = 2**63 - 1

    def read(sql: str, *args: Any) -> int:
        return rows_read(database, "wallet_operations", sql, *args, index_order=True)

    assert read(_BALANCE_AT, wallet, middle) <= 3
    # A page of 51 of an hour's 3,600 entries; a page of 51 of six hours' withdrawals
    # (21,600 entries), having examined at most 2,000 (the page's filter passes over them
    # again: counted twice).
    six_hours = middle + timedelta(hours=6)
    assert read(_HISTORY, wallet, newest, None, middle, hour, 51, 51) <= 51 + 4
    assert read(_HISTORY, wallet, newest, ["WITHDRAW"], middle, six_hours, 2000, 51) <= 4004
    # A kind the ledger lacks, up to a time (half the ledger before it): 2,000 examined.
    assert read(_HISTORY, wallet, newest, ["REVERSAL_IN"], None, middle, 2000, 51) <= 4004
    assert read(_BALANCES, wallet, middle, hour) <= 4
    assert read(_BALANCES, wallet, middle, None) <= 4
    assert read(_json(2), wallet, middle, hour) <= 3600 + 4


def test_the_metadata_filter_reads_the_rows_with_that_key_and_value(
    ledger: tuple[TestDatabase, uuid.UUID],
) -> None:
    """A history page filtered by an order id (one row in each of the 10 wallets, with the
    same key and value) reads the wallet's own row through the metadata's index: not the
    wallet's 50,000 in time order, nor the other wallets' rows with that order id."""
    database, wallet = ledger
    order = json.dumps({"order_id": str(ENTRIES // 20)})
    newest, every = 2**63 - 1, 2**63 - 1
    read = rows_read(
        database,
        "wallet_operations",
        _HISTORY_BY_METADATA,
        wallet,
        newest,
        None,
        None,
        None,
        every,
        51,
        order,
    )
    assert read <= 1 + 1 + 4


#: A batch as the batch endpoint writes it: one row on each of this many wallets.
BATCH = 800


def test_a_batch_is_written_by_a_plan_without_loops_over_its_own_rows(
    make_database: Callable[[], TestDatabase],
) -> None:
    """The range write of a batch of 800 deposits, each on a wallet of its own, with its
    events, planned as the service plans it (a generic plan: `force_generic_plan`, which
    takes an array parameter for 10 elements) and run: no join in it compares each of the
    batch's rows with each other (a join filter that removes more rows than the batch
    has). Two such joins (a wallet's rows counted, an event's ledger ids found) once cost
    the batch endpoint three quarters of its rate (docs/PERFORMANCE.md)."""
    database = migrated(make_database())
    wallets = [uuid.uuid4() for _ in range(BATCH)]
    database.fetch(
        "INSERT INTO wallets (id, currency, currency_exponent, balance)"
        " SELECT id, 'USD', 2, 0 FROM unnest($1::uuid[]) AS t(id)",
        wallets,
    )
    write = RangeWrite(
        wallets=[(w, 100, 0, 0, n, 1, 0, 0) for n, w in enumerate(wallets, 1)],
        rows=[
            (w, "DEPOSIT", 100, 100, None, None, None, None, None, None, n, None)
            for n, w in enumerate(wallets, 1)
        ],
        events=["operation.applied"] * BATCH,
    )
    statement, arguments = range_statement(write)

    async def explained() -> dict[str, Any]:
        connection = await asyncpg.connect(database.url())
        try:
            await connection.execute("SET plan_cache_mode = force_generic_plan")
            await connection.execute(f"PREPARE batch AS {statement}")
            prepared = await connection.prepare(statement)
            literals = [
                await connection.fetchval(
                    f"SELECT quote_literal($1::{kind.name}::text) || '::{kind.name}'", argument
                )
                for kind, argument in zip(prepared.get_parameters(), arguments, strict=True)
            ]
            text = await connection.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE batch({', '.join(literals)})"
            )
            (document,) = json.loads(text)
            return dict(document["Plan"])
        finally:
            await connection.close()

    plan = asyncio.run(explained())
    assert database.fetch("SELECT count(*) AS n FROM wallet_operations")[0]["n"] == BATCH
    assert database.fetch("SELECT count(*) AS n FROM events")[0]["n"] == BATCH
    removed = {
        node["Node Type"]: node["Rows Removed by Join Filter"]
        for node in nodes(plan)
        if node.get("Rows Removed by Join Filter", 0) > BATCH
    }
    assert removed == {}, f"joins that compare the batch's rows with each other: {removed}"
