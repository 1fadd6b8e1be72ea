"""Test harness: a migrated database and the real service under Gunicorn, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx

from wallet_api.devtools.postgres import (
    PostgresAddress,
    RestartableEmbeddedPostgres,
    ensure_database,
)
from wallet_api.devtools.server import ServiceProcess, run_alembic
from wallet_api.posting.entries import CREDIT_KINDS

ROOT = Path(__file__).resolve().parent.parent


def alembic(database: TestDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `alembic` command line against `database`."""
    return run_alembic(ROOT, database.environment(), *args)


def migrated(database: TestDatabase) -> TestDatabase:
    """`database` with its schema built by `alembic upgrade head`."""
    result = alembic(database, "upgrade", "head")
    assert result.returncode == 0, result.stderr
    return database


@dataclass(frozen=True)
class TestDatabase:
    """A database of its own on the test server, for one test session or one test."""

    __test__ = False  # not a test class, whatever its name

    address: PostgresAddress
    name: str

    def environment(self) -> dict[str, str]:
        return self.address.environment(self.name)

    def url(self) -> str:
        return self.address.url(self.name)

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one query on a connection of its own, outside the service."""

        async def run() -> list[asyncpg.Record]:
            connection = await asyncpg.connect(self.url())
            try:
                return await connection.fetch(sql, *args)
            finally:
                await connection.close()

        return asyncio.run(run())

    def ledger(self, wallet_id: str) -> list[asyncpg.Record]:
        """The wallet's ledger rows in the order they were applied."""
        return self.fetch(
            "SELECT operation, amount, balance_after, xmin::text::bigint AS txid "
            "FROM wallet_operations WHERE wallet_id = $1 ORDER BY id",
            UUID(wallet_id),
        )

    @asynccontextmanager
    async def row_locked(self, wallet_id: str) -> AsyncIterator[None]:
        """Hold the wallet's row lock in a transaction of our own for the block."""
        connection = await asyncpg.connect(self.url())
        try:
            async with connection.transaction():
                await connection.execute(
                    "SELECT 1 FROM wallets WHERE id = $1 FOR UPDATE", UUID(wallet_id)
                )
                yield
        finally:
            await connection.close()

    def stored_balance(self, wallet_id: str) -> int:
        (row,) = self.fetch("SELECT balance FROM wallets WHERE id = $1", UUID(wallet_id))
        return int(row["balance"])


@contextmanager
def private_postgres(name: str) -> Iterator[tuple[RestartableEmbeddedPostgres, TestDatabase]]:
    """A PostgreSQL of the caller's own (to stop, freeze or reconfigure without disturbing
    the session's server) and a migrated database `name` on it; deleted afterwards."""
    parent = Path(tempfile.mkdtemp(prefix=f"wallet-api-test-{name}-"))
    try:
        with RestartableEmbeddedPostgres(parent / "pgdata") as server:
            database = TestDatabase(server.address, name)
            ensure_database(server.address, database.name)
            yield server, migrated(database)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def launch_service(
    database: TestDatabase, log_path: Path, settings: Mapping[str, str]
) -> ServiceProcess:
    """The service on `database` with 2 workers and `settings` on top.

    Pools are kept small (at most 2 x 8 connections a service) so that the services a
    test module runs at once stay well inside PostgreSQL's default max_connections (100).
    """
    defaults = {
        "LOG_LEVEL": "info",
        "DB_POOL_SIZE": "4",
        "DB_MAX_OVERFLOW": "4",
        # Tests hold row locks for seconds on purpose (to pile requests up): the service
        # waits for them. test_coalescing.py tests the production lock timeout's split.
        "DB_LOCK_TIMEOUT_MS": "30000",
    }
    return ServiceProcess(ROOT, {**database.environment(), **defaults, **settings}, log_path)


#: The service's settings, and what this process's own tools set (make's variables, a
#: virtualenv's, Python's path), none of which a newcomer's shell has.
_SETTINGS_AND_TOOLS = re.compile(
    r"^(DB_|TEST_DATABASE_URL|WALLET_|AUTH_|RATE_LIMIT|REDIS_URL|COALESCING_|LOG_|HOST$|PORT$|"
    r"EVENTS_|WEBHOOK_|"
    r"WORKERS_COUNT|THREADS_COUNT|PROMETHEUS_|"
    r"MAKEFLAGS$|MAKELEVEL$|MFLAGS$|VIRTUAL_ENV$|PYTHONPATH$|PYTHONHOME$)"
)


def plain_environment() -> dict[str, str]:
    """This process's environment without any of the service's settings or its tools'
    variables: what a command typed in a fresh shell starts from."""
    return {key: value for key, value in os.environ.items() if not _SETTINGS_AND_TOOLS.match(key)}


OPERATION_PATH = "/api/v1/wallets/{}/operation"


def operation(kind: str, amount: object) -> dict[str, object]:
    return {"operation": kind, "amount": amount}


async def send_concurrently(
    base_url: str,
    requests: Sequence[tuple[str, Mapping[str, object]]],
    *,
    while_locked: tuple[TestDatabase, str] | None = None,
) -> list[httpx.Response]:
    """POST every (wallet, body) to its operation endpoint at once, one connection each.

    With `while_locked=(database, wallet)`, that wallet's row is held locked by another
    transaction while the requests go out, then released: the service's first transaction
    blocks, so the requests behind it pile up in the wallet's queue and form a batch.
    """
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        posts = [OPERATION_PATH.format(wallet) for wallet, _ in requests]
        if while_locked is None:
            return await asyncio.gather(
                *(
                    client.post(path, json=body)
                    for path, (_, body) in zip(posts, requests, strict=True)
                )
            )
        database, locked_wallet = while_locked
        async with database.row_locked(locked_wallet):
            tasks = [
                asyncio.create_task(client.post(path, json=body))
                for path, (_, body) in zip(posts, requests, strict=True)
            ]
            await asyncio.sleep(LOCK_HOLD_SECONDS)
        return await asyncio.gather(*tasks)


#: How long `send_concurrently(while_locked=...)` holds the row: long enough for every
#: request to reach the service, short of the default operation deadline (5 s).
LOCK_HOLD_SECONDS = 1.5


def assert_ledger_consistent(database: TestDatabase, wallet_id: str, start: int = 0) -> list[int]:
    """Replay the wallet's ledger: each row's balance_after follows from the one before it,
    none is negative, and the last equals the stored balance. Returns the balances after."""
    balance = start
    balances = []
    for row in database.ledger(wallet_id):
        balance += row["amount"] if row["operation"] in CREDIT_KINDS else -row["amount"]
        assert balance >= 0
        assert row["balance_after"] == balance
        balances.append(balance)
    assert database.stored_balance(wallet_id) == balance
    return balances


def queued_operations(service: ServiceProcess) -> int:
    """Operations waiting in the service's write queues, summed over its workers (the
    gauge each worker samples every second)."""
    text = httpx.get(service.base_url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('wallet_coalescing_queue_depth{kind="write"} '):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def is_coalesced(service: ServiceProcess) -> bool:
    return service.settings.get("COALESCING_ENABLED", "true") == "true"


def worker_of(response: httpx.Response) -> str:
    """Which worker process answered: its request ids share a per-process prefix (a
    generated id is 12 hex digits of prefix, then a counter)."""
    return response.headers["x-request-id"][:12]


_REFUSAL = re.compile(r"Cannot withdraw ([0-9.]+): the balance is ([0-9.]+)\.")


def assert_refusals_justified(
    database: TestDatabase, wallet_id: str, refusals: Sequence[httpx.Response], start: int = 0
) -> None:
    """Each `insufficient_funds` refusal was judged on a balance the wallet really held (its
    opening balance `start` or one its ledger records) and that balance was short of the
    amount: the serial history of the wallet justifies it."""
    held = {start} | {row["balance_after"] for row in database.ledger(wallet_id)}
    for response in refusals:
        body = response.json()
        assert body["code"] == "insufficient_funds", response.text
        match = _REFUSAL.fullmatch(body["detail"])
        assert match is not None, body["detail"]
        amount, balance = (int(Decimal(group) * 100) for group in match.groups())
        assert balance < amount, body["detail"]
        assert balance in held, f"{body['detail']}: the wallet never held that balance"


def money(value: object) -> Decimal:
    """A JSON money value as an exact Decimal (tests compare money exactly, never as floats)."""
    return Decimal(str(value))


#: Every scope a key can have: `keys create` gives read and write unless asked.
EVERY_SCOPE = ("--scope", "read", "--scope", "write", "--scope", "deposit")


def keys_cli(database: TestDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    """`wallet-api keys ...` as the operator runs it, on `database`."""
    return subprocess.run(
        [sys.executable, "-m", "wallet_api.cli", "keys", *args],
        env={**os.environ, **database.environment()},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@dataclass(frozen=True)
class Key:
    """An API key made with the CLI: the whole key (shown once), its id, its owner."""

    token: str
    id: str
    owner: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def create_key(database: TestDatabase, owner: str, *options: str) -> Key:
    result = keys_cli(database, "create", "--owner", owner, *options)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    return Key(shown["key"], shown["id"], owner)


def created_wallet(client: httpx.Client, deposit: object = 0) -> str:
    """A new wallet's id (with a first deposit, if any)."""
    response = client.post("/api/v1/wallets/create_wallet")
    assert response.status_code == 201, response.text
    wallet = str(response.json()["wallet_uuid"])
    if deposit:
        ok = client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", deposit))
        assert ok.status_code == 200, ok.text
    return wallet


def deposit_many(client: httpx.Client, wallet: str, thousands: int) -> None:
    """`thousands` batches of 1,000 deposits of 1 to the wallet."""
    for _ in range(thousands):
        batch = [{"wallet_uuid": wallet, "operation": "DEPOSIT", "amount": 1}] * 1000
        answer = client.post("/api/v1/operations/batch", json={"operations": batch})
        assert answer.status_code == 200, answer.text


async def batch_made_to_wait(
    client: httpx.Client,
    database: TestDatabase,
    wallets: tuple[str, str, str],
    meanwhile: Callable[[], None],
) -> httpx.Response:
    """An atomic batch of a deposit to each of `wallets` (A < B < X: one transaction,
    locks in id order) made to wait: B's row is locked from outside, the batch locks A
    (and gets its transaction id) and waits for B; `meanwhile` runs, then B is released.
    The batch's answer."""
    a, b, x = wallets
    assert a < b < x
    holder = await asyncpg.connect(database.url())
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT FROM wallets WHERE id = $1 FOR UPDATE", UUID(b))
        body = {
            "atomic": True,
            "operations": [
                {"wallet_uuid": w, "operation": "DEPOSIT", "amount": 1} for w in wallets
            ],
        }
        batch = asyncio.create_task(
            asyncio.to_thread(client.post, "/api/v1/operations/batch", json=body)
        )
        deadline = time.monotonic() + 30
        while not await holder.fetchval(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
            " AND transactionid::text::bigint = pg_current_xact_id()::text::bigint"
        ):
            assert time.monotonic() < deadline, "the batch never waited"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(meanwhile)
        await transaction.rollback()
        return await batch
    finally:
        await holder.close()


@contextmanager
def two_owners(
    service: ServiceProcess, database: TestDatabase
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Clients of two new owners' keys (every scope) on a service with keys: the owner
    whose wallets a test makes, and another."""
    alice = create_key(database, f"alice-{uuid4().hex[:8]}", *EVERY_SCOPE)
    mallory = create_key(database, f"mallory-{uuid4().hex[:8]}", *EVERY_SCOPE)
    with (
        httpx.Client(base_url=service.base_url, headers=alice.headers) as owner,
        httpx.Client(base_url=service.base_url, headers=mallory.headers) as other,
    ):
        yield owner, other
