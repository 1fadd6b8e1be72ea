"""How long the service waits for its database, and how long it keeps a connection
(OPERATIONS §Limits, §Sizing; CONFIGURATION): the client timeout when the server has none,
the readiness probe against a database that never answers, DB_POOL_RECYCLE. Decided by
construction (a lock the test holds, a listener that never answers, backends counted in
pg_stat_activity), with a time bound only as a lower one, or far past the promise."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager

import asyncpg
import httpx

from tests.support import TestDatabase, migrated
from tests.test_wallet_contract import assert_problem
from wallet_api.core.config import Settings
from wallet_api.core.database import Database
from wallet_api.devtools.server import ServiceProcess

WALLETS = "/api/v1/wallets"


@contextmanager
def silent_database() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that accepts every connection and never says a word: a
    database that hangs (or a network that drops its answers). Yields its port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(connection)  # kept open, never read, never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stopping.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


def test_ready_answers_503_within_its_2_seconds_when_the_database_never_answers(
    start_service: Callable[..., ServiceProcess],
) -> None:
    """README §API: `/health/ready` answers within 2 s, also when the database accepts the
    connection and then says nothing (the 503 of a refused connection is another test's).
    Every other wait is set far longer (connecting, a pool slot: 120 s), so only the
    probe's own 2 s can answer; the bound checked is 10 s, against 120 s without it."""
    with silent_database() as port:
        service = start_service(
            "/health/live",
            fresh=True,
            DB_HOST="127.0.0.1",
            DB_PORT=str(port),
            DB_CONNECT_TIMEOUT="120",
            DB_POOL_TIMEOUT="120",
        )
        with httpx.Client(base_url=service.base_url, timeout=20) as http:
            for _ in range(3):  # the first probe of a worker, and the ones behind it
                started = time.monotonic()
                answer = http.get("/health/ready")
                elapsed = time.monotonic() - started
                assert_problem(answer, 503, "database_unavailable")
                assert answer.json()["detail"] == "The database did not answer within 2 s."
                assert answer.headers["retry-after"]
                assert elapsed < 10, elapsed
            assert http.get("/health/live").status_code == 200
        service.stop()


def backends(database: TestDatabase) -> set[int]:
    """The service's connections to `database`, by backend pid."""
    rows = database.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'wallet-api'",
        database.name,
    )
    return {int(row["pid"]) for row in rows}


def test_db_pool_recycle_replaces_each_connection_that_often(
    make_database: Callable[[], TestDatabase], start_service: Callable[..., ServiceProcess]
) -> None:
    """CONFIGURATION, OPERATIONS §Sizing: every DB_POOL_RECYCLE seconds each connection is
    replaced. One worker with a pool of exactly one connection (no overflow), recycled
    every second: the backend serving it is seen to change, again and again, while the
    pool never holds more than its one. Polled with a deadline, nothing timed: without
    recycling the one connection lives past the deadline (20 s, five times what four
    recyclings take on a loaded machine)."""
    database = migrated(make_database())
    service = start_service(
        fresh=True,
        DB_NAME=database.name,
        WORKERS_COUNT="1",
        DB_POOL_SIZE="1",
        DB_MAX_OVERFLOW="0",
        DB_POOL_RECYCLE="1",
    )
    seen: list[int] = []
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=service.base_url, timeout=30) as http:
        while len(seen) < 4:
            assert time.monotonic() < deadline, f"backends seen in 20 s: {seen}"
            assert http.get("/health/ready").status_code == 200
            now = backends(database)
            assert len(now) <= 1, now  # replaced, not added to
            seen += [pid for pid in now if pid not in seen]
            time.sleep(0.1)
    service.stop()


async def _hold_the_wallets_table(
    database: TestDatabase, service: ServiceProcess, wallet: str
) -> tuple[httpx.Response, float]:
    """Hold an ACCESS EXCLUSIVE lock on `wallets` while the service reads the wallet's
    balance: its statement waits for the lock (seen in pg_stat_activity), and only the
    client's timeout can end the wait. Returns the answer, which comes with the lock still
    held, and how long it took."""
    holder = await asyncpg.connect(database.url())
    # Asked on a connection of its own: a transaction sees pg_stat_activity as it first read it.
    watcher = await asyncpg.connect(database.url())
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE wallets IN ACCESS EXCLUSIVE MODE")
            async with httpx.AsyncClient(base_url=service.base_url, timeout=120) as http:
                started = time.monotonic()
                read = asyncio.create_task(http.get(f"{WALLETS}/{wallet}"))
                waiting = (
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                    "AND application_name = 'wallet-api' AND wait_event_type = 'Lock'"
                )
                deadline = time.monotonic() + 30
                while not await watcher.fetchval(waiting, database.name):
                    assert not read.done(), read.result().text
                    assert time.monotonic() < deadline, "the read never waited for the lock"
                    await asyncio.sleep(0.05)
                answer = await read
                elapsed = time.monotonic() - started
    finally:
        await watcher.close()
        await holder.close()
    return answer, elapsed


def test_without_a_statement_timeout_the_client_waits_12_seconds(
    make_database: Callable[[], TestDatabase], start_service: Callable[..., ServiceProcess]
) -> None:
    """CONFIGURATION, OPERATIONS §Limits: DB_CLIENT_TIMEOUT unset and
    DB_STATEMENT_TIMEOUT_MS=0 (the server cancels nothing): the service waits 12 s for an
    answer, then gives up and answers 503. A read waits on a table
    lock the test holds (no lock timeout either, no queue deadline before it); so it
    cannot be answered before the client's 12 s, and the answer comes with the lock
    still held. The only bound on time is a lower one, which a slow machine cannot miss;
    2 s (DB_STATEMENT_TIMEOUT_MS + 2 s read as 0 + 2) would come in a sixth of it."""
    database = migrated(make_database())
    service = start_service(
        fresh=True,
        DB_NAME=database.name,
        DB_STATEMENT_TIMEOUT_MS="0",
        DB_LOCK_TIMEOUT_MS="0",
        OPERATION_DEADLINE="120",
    )
    created = httpx.post(f"{service.base_url}{WALLETS}/create_wallet", timeout=30)
    assert created.status_code == 201, created.text
    wallet = str(created.json()["wallet_uuid"])
    answer, elapsed = asyncio.run(_hold_the_wallets_table(database, service, wallet))
    assert_problem(answer, 503, "database_unavailable")
    assert elapsed >= 11.9, elapsed
    service.stop()


class _ShiftedLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock the test moves forward: its timers (asyncpg's idle
    connection timer among them) come due when the clock says so, not after a real wait."""

    shift = 0.0

    def time(self) -> float:
        return super().time() + self.shift


async def _overflow_after(database: TestDatabase, loop: _ShiftedLoop) -> tuple[int, int, int]:
    """The service's pool (DB_POOL_SIZE 2, DB_MAX_OVERFLOW 2) made to open all 4, all put
    back unused; its connections counted then, 299 s later, and once the pool has settled
    after 301 s (polled, on the database's side)."""
    settings = Settings.model_validate(
        {key.lower(): value for key, value in database.environment().items()}
        | {"db_pool_size": 2, "db_max_overflow": 2}
    )
    pool = Database(settings)
    counter = await asyncpg.connect(database.url())
    count = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = $1 AND application_name = 'wallet-api'"
    )
    try:
        async with AsyncExitStack() as held:
            for _ in range(4):
                connection = await held.enter_async_context(pool.autocommit())
                await connection.execute("SELECT 1")
        opened = int(await counter.fetchval(count, database.name))
        loop.shift += 299
        await asyncio.sleep(0.2)  # every timer due by then has run: none is, yet
        before = int(await counter.fetchval(count, database.name))
        loop.shift += 2
        deadline = time.monotonic() + 30
        after = opened
        while after > 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            after = int(await counter.fetchval(count, database.name))
        return opened, before, after
    finally:
        await counter.close()
        await pool.dispose()


def test_overflow_connections_close_after_5_minutes_unused(
    make_database: Callable[[], TestDatabase],
) -> None:
    """OPERATIONS §Sizing: a worker keeps its DB_POOL_SIZE connections; those above it
    are closed after 5 minutes unused. The service's own pool (`core.database.Database`,
    in this process, on a real PostgreSQL) on an event loop whose clock the test moves
    forward: at 4 min 59 s all 4 are still open, past 5 min the 2 of overflow are closed
    and the 2 of the pool kept. No real wait: the clock is moved, not waited for."""
    database = make_database()
    with asyncio.Runner(loop_factory=_ShiftedLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, _ShiftedLoop)
        opened, before, after = runner.run(_overflow_after(database, loop))
    assert (opened, before, after) == (4, 4, 2)
