"""The Python client's target under real faults (clients/python): 1,000 deposits sent
through it with its default settings, from several threads, while a worker process is
killed, every session of the service is terminated while commits are held in flight
(durable, not yet acknowledged: those deposits applied, and their callers hear
`outcome_unknown`), and the database is stopped as a crash stops it and started again.
Each deposit applies exactly once: the ledger holds one row for every call, no more; and
every call returned its result (a call that raised would have to say that its outcome is
settled, and count as not applied).

On a PostgreSQL and a service of its own (the session's server must stay up for the
others). The fault suite on a Patroni cluster (chaos/) adds failovers; the client's rules
themselves: tests/unit/test_client_retry.py, tests/test_client_retries.py."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from tests.faults import commits_held, wait_for_backends
from tests.support import TestDatabase, launch_service, private_postgres
from wallet_api.devtools.postgres import RestartableEmbeddedPostgres
from wallet_api.devtools.server import ServiceProcess
from wallet_api_client import Client, errors

pytestmark = pytest.mark.own_servers

DEPOSITS = 1000
WALLETS = 10
THREADS = 8
#: The run's pace: the faults strike while deposits are in flight, not after them.
SECONDS = 8.0
#: When each fault strikes, in seconds from the start.
KILL_A_WORKER_AT = 1.5
TERMINATE_SESSIONS_AT = 3.5
RESTART_DATABASE_AT = 5.5
#: How long the database stays down.
DOWN_SECONDS = 1.0
#: Outages answered quickly (503s that the client retries), as in test_resilience.py.
SETTINGS = {
    "DB_CONNECT_TIMEOUT": "1",
    "DB_POOL_TIMEOUT": "2",
    "DB_STATEMENT_TIMEOUT_MS": "2000",
    "OPERATION_DEADLINE": "2",
}


@pytest.fixture(scope="module")
def own_server() -> Iterator[tuple[RestartableEmbeddedPostgres, TestDatabase]]:
    with private_postgres("wallet_api_client_faults") as server:
        yield server


@pytest.fixture(scope="module")
def own_service(
    own_server: tuple[RestartableEmbeddedPostgres, TestDatabase],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    log_path = tmp_path_factory.mktemp("client-faults") / "gunicorn.log"
    with launch_service(own_server[1], log_path, SETTINGS).serving() as service:
        yield service


def workers_of(service: ServiceProcess) -> list[int]:
    children = f"/proc/{service.process.pid}/task/{service.process.pid}/children"
    with open(children) as listed:
        return [int(pid) for pid in listed.read().split()]


def test_a_thousand_deposits_through_faults_apply_exactly_once(
    own_server: tuple[RestartableEmbeddedPostgres, TestDatabase],
    own_service: ServiceProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, database = own_server
    with Client(own_service.base_url) as setup:
        wallets = [str(setup.create_wallet().wallet_uuid) for _ in range(WALLETS)]
    started = time.monotonic()
    failures: list[errors.WalletApiError] = []
    lock = threading.Lock()

    def deposit(number: int) -> Decimal | None:
        # Paced: deposit `number` is sent at its share of SECONDS.
        time.sleep(max(0.0, started + SECONDS * number / DEPOSITS - time.monotonic()))
        with Client(own_service.base_url) as client:
            try:
                return client.deposit(wallets[number % WALLETS], "0.01").balance
            except errors.WalletApiError as error:
                with lock:
                    failures.append(error)
                return None

    async def terminate_sessions_behind_held_commits() -> str:
        # Commits wait (durable, unacknowledged) while every session of the service is
        # terminated: those deposits applied, and their callers hear `outcome_unknown`.
        async with commits_held(database):
            await asyncio.to_thread(wait_for_backends, database, wait_event="SyncRep")
            await asyncio.sleep(0.3)  # more of them behind
            terminated = await asyncio.to_thread(
                database.fetch,
                "SELECT pid, wait_event, pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'wallet-api' AND datname = current_database()",
            )
        committing = sum(row["wait_event"] == "SyncRep" for row in terminated)
        return f"{len(terminated)} sessions terminated, {committing} in their commit"

    def faults() -> list[str]:
        done = []
        time.sleep(KILL_A_WORKER_AT)
        os.kill(workers_of(own_service)[0], signal.SIGKILL)
        done.append("a worker killed")
        time.sleep(TERMINATE_SESSIONS_AT - KILL_A_WORKER_AT)
        done.append(asyncio.run(terminate_sessions_behind_held_commits()))
        time.sleep(RESTART_DATABASE_AT - TERMINATE_SESSIONS_AT)
        server.stop("immediate")
        time.sleep(DOWN_SECONDS)
        server.start()
        done.append("the database restarted")
        return done

    with (
        caplog.at_level(logging.WARNING, "wallet_api_client"),
        ThreadPoolExecutor(THREADS + 1) as pool,
    ):
        struck = pool.submit(faults)
        balances = list(pool.map(deposit, range(DEPOSITS)))
        struck_by = struck.result()
    assert struck_by[0] == "a worker killed"
    assert "in their commit" in struck_by[1]
    assert not struck_by[1].endswith(", 0 in their commit")
    assert struck_by[2] == "the database restarted"

    retried = [r for r in caplog.records if r.name == "wallet_api_client"]
    assert retried, "no call met a fault: the faults struck nothing"
    unsettled = [error for error in failures if not error.settled]
    assert unsettled == [], "a call ended without knowing whether it applied"
    rows = database.fetch(
        "SELECT count(*) AS n, coalesce(sum(amount), 0) AS total FROM wallet_operations"
        " WHERE wallet_id = ANY($1::uuid[]) AND operation = 'DEPOSIT'",
        wallets,
    )
    applied = DEPOSITS - len(failures)
    assert (rows[0]["n"], rows[0]["total"]) == (applied, applied)  # one row of 1 cent each
    assert failures == [], f"{len(failures)} calls refused: {failures[:3]}"
    assert sum(balance is not None for balance in balances) == DEPOSITS
