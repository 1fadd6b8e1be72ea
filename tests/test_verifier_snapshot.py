"""`wallet-api verify` checks the ledger in one statement, on one snapshot, without the
service's statement timeouts (OPERATIONS §Checking the ledger). Decided by construction:
the test holds a lock the verifier's statement must wait for, and lets go only once the
database shows that statement waiting longer than those timeouts would have let it; in
the same transaction it changes the ledger, so a verifier reading on two snapshots would
count what one of them did not see."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import asyncpg

from tests.support import ROOT, TestDatabase, migrated

#: The service's timeouts, as short as they may be: the verifier must not use them.
SHORT_TIMEOUTS = {
    "DB_STATEMENT_TIMEOUT_MS": "200",
    "DB_LOCK_TIMEOUT_MS": "200",
    "DB_CLIENT_TIMEOUT": "1",
}
#: How long, on the database's clock, the verifier's statement is seen waiting before the
#: test lets go: three times the longest of SHORT_TIMEOUTS.
OUTLIVED = "3 s"


async def _verify_while_locked(
    database: TestDatabase, first: uuid.UUID, verifier: subprocess.Popen[str]
) -> None:
    holder = await asyncpg.connect(database.url())
    # Asked on a connection of its own: a transaction sees pg_stat_activity as it first read it.
    watcher = await asyncpg.connect(database.url())
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE wallet_operations IN ACCESS EXCLUSIVE MODE")
            outlived = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2 "
                "AND wait_event_type = 'Lock' AND state = 'active' "
                f"AND now() - query_start > interval '{OUTLIVED}'"
            )
            deadline = time.monotonic() + 60
            while not await watcher.fetchval(outlived, database.name, holder.get_server_pid()):
                assert verifier.poll() is None, verifier.communicate()
                assert time.monotonic() < deadline, "the verifier's statement never waited"
                await asyncio.sleep(0.1)
            # Meanwhile: a deposit of 50 on the first wallet, and a second wallet.
            await holder.execute("UPDATE wallets SET balance = 150 WHERE id = $1", first)
            await holder.execute(
                "INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after) "
                "VALUES ($1, 'DEPOSIT', 50, 150)",
                first,
            )
            await holder.execute(
                "INSERT INTO wallets (id, currency, currency_exponent, balance)"
                " VALUES ($1, 'USD', 2, 0)",
                uuid.uuid4(),
            )
    finally:
        await watcher.close()
        await holder.close()


def test_verify_is_one_statement_on_one_snapshot_without_the_service_timeouts(
    make_database: Callable[[], TestDatabase],
) -> None:
    database = migrated(make_database())
    first = uuid.uuid4()
    database.fetch(
        "INSERT INTO wallets (id, currency, currency_exponent, balance) VALUES ($1, 'USD', 2, 100)",
        first,
    )
    database.fetch(
        "INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after) "
        "VALUES ($1, 'DEPOSIT', 100, 100)",
        first,
    )
    verifier = subprocess.Popen(
        [sys.executable, "-m", "wallet_api.cli", "verify"],
        cwd=ROOT,
        env={**os.environ, **database.environment(), **SHORT_TIMEOUTS},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        asyncio.run(_verify_while_locked(database, first, verifier))
        out, err = verifier.communicate(timeout=120)
    finally:
        if verifier.poll() is None:
            verifier.kill()
            verifier.wait()
    assert verifier.returncode == 0, out + err
    report = json.loads(out)
    # Everything the test's transaction committed, and nothing from before it: the
    # statement waited for the lock before it took its snapshot, and took one.
    assert report["consistent"] is True, report
    assert (report["wallets"], report["operations"]) == (2, 2), report
