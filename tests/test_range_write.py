"""The one-statement write of a batch of transfers (posting/repository.py), against real
PostgreSQL: all of it or nothing, on the balances as they are under the row locks. On a
database of its own: its wallets are made with balances and no ledger rows, which the
session's database (checked by `wallet-api verify`) must not hold."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from uuid import UUID

import asyncpg
import pytest

from tests.support import TestDatabase, migrated
from wallet_api.posting import engine
from wallet_api.posting.entries import Entry, EntryKind, Leg, plan_in_range
from wallet_api.posting.repository import RangeWrite, write_entries_in_range


@pytest.fixture(scope="module")
def database(make_database: Callable[[], TestDatabase]) -> TestDatabase:
    return migrated(make_database())


def transfer(source: UUID, destination: UUID, amount: int) -> Entry:
    return Entry(
        legs=(
            Leg(source, EntryKind.TRANSFER_OUT, amount, counterparty=destination),
            Leg(destination, EntryKind.TRANSFER_IN, amount, counterparty=source),
        ),
        render=lambda _: (201, ""),
        transfer_id=uuid.uuid4(),
    )


def range_write(entries: list[Entry]) -> RangeWrite:
    plan = plan_in_range(entries)
    assert plan is not None
    return engine.range_write(entries, plan)


def wallets(database: TestDatabase, *balances: int) -> list[UUID]:
    made = [uuid.uuid4() for _ in balances]
    for wallet, balance in zip(made, balances, strict=True):
        database.fetch("INSERT INTO wallets (id, balance) VALUES ($1, $2)", wallet, balance)
    return made


def state(database: TestDatabase, ids: list[UUID]) -> tuple[list[int], int]:
    rows = database.fetch("SELECT balance FROM wallets WHERE id = ANY($1) ORDER BY id", ids)
    (count,) = database.fetch(
        "SELECT count(*) AS n FROM wallet_operations WHERE wallet_id = ANY($1)", ids
    )
    return [row["balance"] for row in rows], count["n"]


def write(database: TestDatabase, entries: list[Entry]) -> tuple[dict[UUID, int], object] | None:
    async def run() -> tuple[dict[UUID, int], object] | None:
        connection = await asyncpg.connect(database.url())
        try:
            return await write_entries_in_range(connection, range_write(entries))  # type: ignore[arg-type]
        finally:
            await connection.close()

    return asyncio.run(run())


def test_a_batch_that_fits_is_written_whole_in_order(database: TestDatabase) -> None:
    a, b, c = wallets(database, 100, 0, 5)
    found = write(database, [transfer(a, b, 30), transfer(b, c, 20), transfer(a, c, 70)])
    assert found is not None
    starts, _ = found
    assert starts == {a: 100, b: 0, c: 5}
    assert state(database, [a, b, c]) == (
        [dict(zip((a, b, c), (0, 10, 95), strict=True))[w] for w in sorted((a, b, c))],
        6,
    )
    rows = database.fetch(
        "SELECT wallet_id, balance_after FROM wallet_operations "
        "WHERE wallet_id = ANY($1) ORDER BY id",
        [a, b, c],
    )
    assert [(r["wallet_id"], r["balance_after"]) for r in rows] == [
        (a, 70),
        (b, 30),
        (b, 10),
        (c, 25),
        (a, 0),
        (c, 95),
    ]


def test_one_wallet_out_of_range_writes_nothing(database: TestDatabase) -> None:
    a, b, c = wallets(database, 100, 10, 0)
    before = state(database, [a, b, c])
    # b cannot pay 20 (it holds 10), though a's transfer alone would fit.
    assert write(database, [transfer(a, b, 5), transfer(b, c, 20)]) is None
    assert state(database, [a, b, c]) == before


def test_a_missing_wallet_writes_nothing(database: TestDatabase) -> None:
    (a,) = wallets(database, 100)
    before = state(database, [a])
    assert write(database, [transfer(a, uuid.uuid4(), 5)]) is None
    assert write(database, [transfer(uuid.uuid4(), uuid.uuid4(), 5)]) is None
    assert state(database, [a]) == before


def test_the_balance_is_judged_as_a_concurrent_commit_left_it(database: TestDatabase) -> None:
    """A transfer that waits for a row lock is judged on, and added to, the balance the
    other transaction committed, never the one its statement started with: 100 became
    60 meanwhile, a transfer of 50 leaves 10; another of 50 then does not fit."""
    a, b = wallets(database, 100, 0)

    async def run() -> list[tuple[dict[UUID, int], object] | None]:
        holder = await asyncpg.connect(database.url())
        writer = await asyncpg.connect(database.url())
        try:
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("UPDATE wallets SET balance = 60 WHERE id = $1", a)
            pending = asyncio.create_task(
                write_entries_in_range(writer, range_write([transfer(a, b, 50)]))  # type: ignore[arg-type]
            )
            await asyncio.sleep(0.3)  # the write now waits for a's row
            await transaction.commit()
            first = await pending
            second = await write_entries_in_range(writer, range_write([transfer(a, b, 50)]))  # type: ignore[arg-type]
            return [first, second]
        finally:
            await holder.close()
            await writer.close()

    first, second = asyncio.run(run())
    assert first is not None
    assert first[0] == {a: 60, b: 0}
    assert second is None
    balances = {
        row["id"]: row["balance"]
        for row in database.fetch("SELECT id, balance FROM wallets WHERE id = ANY($1)", [a, b])
    }
    assert balances == {a: 10, b: 50}
