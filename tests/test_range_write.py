"""The one statement that writes a batch (posting/repository.py `write_range`), against
real PostgreSQL: each part (entries that share wallets) all of it or nothing, on the
balances as they are under the row locks. On a database of its own: its wallets are made
with balances and no ledger rows, which the session's database (checked by `wallet-api
verify`) must not hold."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import pytest

from tests.support import TestDatabase, migrated
from wallet_api.posting.entries import Entry, EntryKind, Leg
from wallet_api.posting.plan import plan
from wallet_api.posting.repository import Found, Locked, RangeWrite, lock_wallets, write_range
from wallet_api.posting.rows import part_write

Written = tuple[dict[UUID, Found], datetime | None]
T = TypeVar("T")


@pytest.fixture(scope="module")
def database(make_database: Callable[[], TestDatabase]) -> TestDatabase:
    return migrated(make_database())


def transfer(source: UUID, destination: UUID, amount: int) -> Entry:
    return Entry(
        legs=(
            Leg(source, EntryKind.TRANSFER_OUT, amount, counterparty=destination),
            Leg(destination, EntryKind.TRANSFER_IN, amount, counterparty=source),
        ),
        transfer_id=uuid.uuid4(),
    )


def withdrawal(wallet: UUID, amount: int) -> Entry:
    return Entry(legs=(Leg(wallet, EntryKind.WITHDRAW, amount),))


def statement(*parts: tuple[Sequence[Entry], dict[UUID, int]]) -> RangeWrite:
    """The statement for `parts`, each planned on the balances given (the guesses)."""
    write = RangeWrite()
    for number, (entries, starts) in enumerate(parts):
        part_write(write, number, entries, starts, plan(starts, entries))
    return write


def wallets(database: TestDatabase, *balances: int) -> list[UUID]:
    made = [uuid.uuid4() for _ in balances]
    for wallet, balance in zip(made, balances, strict=True):
        database.fetch(
            "INSERT INTO wallets (id, currency, currency_exponent, balance)"
            " VALUES ($1, 'USD', 2, $2)",
            wallet,
            balance,
        )
    return made


def state(database: TestDatabase, ids: list[UUID]) -> tuple[dict[UUID, int], int]:
    rows = database.fetch("SELECT id, balance FROM wallets WHERE id = ANY($1)", ids)
    (count,) = database.fetch(
        "SELECT count(*) AS n FROM wallet_operations WHERE wallet_id = ANY($1)", ids
    )
    return {row["id"]: row["balance"] for row in rows}, count["n"]


def write(database: TestDatabase, batch: RangeWrite) -> Written:
    async def run() -> Written:
        connection = await asyncpg.connect(database.url())
        try:
            return await write_range(connection, batch)  # type: ignore[arg-type]
        finally:
            await connection.close()

    return asyncio.run(run())


def starts_of(found: dict[UUID, Found]) -> dict[UUID, int | None]:
    return {wallet: each.start for wallet, each in found.items()}


def test_a_part_that_fits_is_written_whole_in_order(database: TestDatabase) -> None:
    a, b, c = wallets(database, 100, 0, 5)
    entries = [transfer(a, b, 30), transfer(b, c, 20), transfer(a, c, 70)]
    found, at = write(database, statement((entries, {a: 100, b: 0, c: 5})))
    assert starts_of(found) == {a: 100, b: 0, c: 5}
    assert at is not None
    assert state(database, [a, b, c]) == ({a: 0, b: 10, c: 95}, 6)
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


def test_one_wallet_out_of_range_writes_nothing_of_its_part(database: TestDatabase) -> None:
    a, b, c = wallets(database, 100, 10, 0)
    before = state(database, [a, b, c])
    # Planned on b holding 30: b cannot pay 20 from the 15 it has then, though a's
    # transfer alone would fit.
    found, _ = write(
        database, statement(([transfer(a, b, 5), transfer(b, c, 20)], {a: 100, b: 30, c: 0}))
    )
    assert starts_of(found) == {a: None, b: None, c: None}
    assert {w: f.balance for w, f in found.items()} == {a: 100, b: 10, c: 0}
    assert state(database, [a, b, c]) == before


def test_parts_are_written_or_not_each_on_its_own(database: TestDatabase) -> None:
    a, b, c, d = wallets(database, 100, 0, 40, 0)
    found, _ = write(
        database,
        statement(
            ([transfer(a, b, 30)], {a: 100, b: 0}),
            ([transfer(c, d, 50)], {c: 60, d: 0}),  # c holds 40: not written
        ),
    )
    assert starts_of(found) == {a: 100, b: 0, c: None, d: None}
    assert state(database, [a, b, c, d]) == ({a: 70, b: 30, c: 40, d: 0}, 2)


def test_a_missing_wallet_writes_nothing_of_its_part(database: TestDatabase) -> None:
    (a,) = wallets(database, 100)
    gone = uuid.uuid4()
    before = state(database, [a])
    found, _ = write(database, statement(([transfer(a, gone, 5)], {a: 100, gone: 0})))
    assert starts_of(found) == {a: None}
    found, at = write(database, statement(([transfer(gone, uuid.uuid4(), 5)], {gone: 5})))
    assert (found, at) == ({}, None)
    assert state(database, [a]) == before


async def _waits_for_a_lock(connection: asyncpg.Connection, pid: int) -> None:
    """Return once the backend `pid` waits for a row lock: what it does next is then
    certain, not a guess at timing."""
    deadline = time.monotonic() + 30
    while not await connection.fetchval(
        "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock')",
        pid,
    ):
        assert time.monotonic() < deadline, "the statement never waited for the row"
        await asyncio.sleep(0.01)


def _behind_a_commit_of(
    database: TestDatabase,
    changes: Sequence[tuple[Any, ...]],
    act: Callable[[asyncpg.Connection], Coroutine[Any, Any, T]],
) -> T:
    """Run `act` on a connection of its own while another transaction holds what
    `changes` (each a statement and its arguments) wrote; commit that transaction once
    `act` waits for a row lock. What `act` returns."""

    async def run() -> T:
        holder = await asyncpg.connect(database.url())
        other = await asyncpg.connect(database.url())
        try:
            transaction = holder.transaction()
            await transaction.start()
            for statement_, *arguments in changes:
                await holder.execute(statement_, *arguments)
            pending = asyncio.create_task(act(other))
            await _waits_for_a_lock(holder, other.get_server_pid())
            await transaction.commit()
            return await pending
        finally:
            await holder.close()
            await other.close()

    return asyncio.run(run())


def _behind_a_commit(database: TestDatabase, balance: int, batch: RangeWrite) -> list[Written]:
    """Run `batch` while another transaction holds its first wallet's row, having set its
    balance to `balance`; commit that transaction once the statement waits for the row,
    then run `batch` again."""

    async def twice(writer: asyncpg.Connection) -> list[Written]:
        first = await write_range(writer, batch)  # type: ignore[arg-type]
        return [first, await write_range(writer, batch)]  # type: ignore[arg-type]

    change = ("UPDATE wallets SET balance = $2 WHERE id = $1", batch.wallets[0][0], balance)
    return _behind_a_commit_of(database, [change], twice)


def test_the_balance_is_judged_as_a_concurrent_commit_left_it(database: TestDatabase) -> None:
    """A transfer that waits for a row lock is judged on, and added to, the balance the
    other transaction committed, never the one its statement started with: 100 became
    60 meanwhile, a transfer of 50 leaves 10; another of 50 then does not fit."""
    a, b = wallets(database, 100, 0)
    first, second = _behind_a_commit(
        database, 60, statement(([transfer(a, b, 50)], {a: 100, b: 0}))
    )
    assert starts_of(first[0]) == {a: 60, b: 0}
    assert starts_of(second[0]) == {a: None, b: None}
    assert state(database, [a, b]) == ({a: 10, b: 50}, 2)


def test_a_debit_the_snapshot_could_not_bear_is_written_on_the_balance_it_waited_for(
    database: TestDatabase,
) -> None:
    """The statement's snapshot holds 100; the commit it waited for left 1,000: a
    withdrawal of 900 fits, and is written on 1,000 (computed on the snapshot's 100, the
    new row would break the balance's check constraint and fail the statement)."""
    (a,) = wallets(database, 100)
    first, second = _behind_a_commit(database, 1000, statement(([withdrawal(a, 900)], {a: 1000})))
    assert starts_of(first[0]) == {a: 1000}
    assert starts_of(second[0]) == {a: None}
    assert state(database, [a]) == ({a: 100}, 1)


def hold(wallet: UUID, amount: int, seconds: int) -> Entry:
    return Entry(legs=(Leg(wallet, EntryKind.HOLD, amount, hold=uuid.uuid4()),), expires_in=seconds)


def test_a_hold_is_opened_with_its_part_and_only_then(database: TestDatabase) -> None:
    """A written part's new holds are opened with it: the hold's row, its ledger row (the
    balance unchanged, the hold named), the wallet's `held` and first expiry (the earliest
    of its holds); a part not written opens none."""
    a, b = wallets(database, 100, 40)
    first, later, unwritten = hold(a, 30, 60), hold(a, 20, 3600), hold(b, 50, 60)
    found, at = write(
        database,
        statement(([first, later], {a: 100}), ([unwritten], {b: 100})),  # b has 40, not 100
    )
    assert at is not None
    assert starts_of(found) == {a: 100, b: None}
    assert found[a].held == 0  # what its holds set aside when it was locked
    (wallet_a,) = database.fetch(
        "SELECT balance, held, holds_expire_at FROM wallets WHERE id = $1", a
    )
    assert (wallet_a["balance"], wallet_a["held"]) == (100, 50)
    opened = database.fetch(
        "SELECT id, amount, remaining, status, expires_at - created_at AS lasts, "
        "expires_at FROM holds WHERE wallet_id = ANY($1) ORDER BY amount DESC",
        [a, b],
    )
    assert [(r["id"], r["amount"], r["remaining"], r["status"]) for r in opened] == [
        (first.legs[0].hold, 30, 30, "active"),
        (later.legs[0].hold, 20, 20, "active"),
    ]
    assert [r["lasts"].total_seconds() for r in opened] == [60, 3600]
    assert wallet_a["holds_expire_at"] == opened[0]["expires_at"]
    rows = database.fetch(
        "SELECT operation, amount, balance_after, hold_id FROM wallet_operations "
        "WHERE wallet_id = ANY($1) ORDER BY id",
        [a, b],
    )
    assert [tuple(r) for r in rows] == [
        ("HOLD", 30, 100, first.legs[0].hold),
        ("HOLD", 20, 100, later.legs[0].hold),
    ]
    (wallet_b,) = database.fetch("SELECT held, holds_expire_at FROM wallets WHERE id = $1", b)
    assert (wallet_b["held"], wallet_b["holds_expire_at"]) == (0, None)


def with_an_expired_hold(database: TestDatabase, wallet: UUID, amount: int) -> None:
    """An active hold of `amount` on `wallet` that expired a minute ago, its release not
    written (the sweep off): its wallet's stored `held` still counts it."""
    database.fetch(
        "INSERT INTO holds (id, wallet_id, amount, remaining, status, expires_at, created_at) "
        "VALUES ($1, $2, $3, $3, 'active', now() - interval '1 minute', "
        "now() - interval '2 minutes')",
        uuid.uuid4(),
        wallet,
        amount,
    )
    database.fetch(
        "UPDATE wallets SET held = held + $2, holds_expire_at = now() - interval '1 minute' "
        "WHERE id = $1",
        wallet,
        amount,
    )


def test_a_wallet_with_an_expired_hold_is_left_to_the_locks(database: TestDatabase) -> None:
    """What such a wallet's holds set aside is a sum over its holds, which a statement
    that waited for the wallet's row reads as they were when it began: the one statement
    never writes it (it says so: `due`), whatever its plan; the locking transaction does."""
    (a,) = wallets(database, 100)
    with_an_expired_hold(database, a, 10)
    before = state(database, [a])
    found, _ = write(database, statement(([hold(a, 60, 3600)], {a: 100})))
    assert starts_of(found) == {a: None}
    assert found[a].due
    assert found[a].held == 0  # the expired hold counts no more
    assert state(database, [a]) == before


def test_the_locks_sum_the_holds_another_transaction_committed(database: TestDatabase) -> None:
    """A wallet with an expired hold of 10 (stored `held` 10), and another transaction
    that holds its row while it opens a hold of 60 (stored 70). The locking transaction
    that waited for the row sees what is held now: 60 (the new hold; the expired one no
    more), not the 0 its first statement's snapshot holds, nor the stored 70. By
    construction: the other transaction commits once the lock is seen awaited."""
    (a,) = wallets(database, 100)
    with_an_expired_hold(database, a, 10)

    async def lock(locker: asyncpg.Connection) -> Locked:
        async with locker.transaction():
            return await lock_wallets(locker, [a])  # type: ignore[arg-type]

    opening = [
        (
            "UPDATE wallets SET held = held + 60, holds_expire_at = now() - "
            "interval '1 minute' WHERE id = $1",
            a,
        ),
        (
            "INSERT INTO holds (id, wallet_id, amount, remaining, status, expires_at) "
            "VALUES ($1, $2, 60, 60, 'active', now() + interval '1 hour')",
            uuid.uuid4(),
            a,
        ),
    ]
    locked = _behind_a_commit_of(database, opening, lock)
    assert locked.stored_held == {a: 70}
    assert locked.held == {a: 60}
