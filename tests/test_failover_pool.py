"""What a failover leaves a worker's pool holding: one connection cut under a statement in
flight, and the others stale (their server is gone, their sockets not closed yet).

When asyncpg sees a socket close under a statement, it closes the connection and gives its
slot back to the pool itself, before the caller hears of it. The caller is still told the
connection was lost, and the worker still replaces the stale others, as it does when it
notices the loss first: otherwise each of them fails a request of its own (asyncpg's
"cannot switch to state"), a 503 per connection.

The service reaches the suite's server through a proxy (tests/faults.py) that can deliver
the FATAL error of a terminated session to every connection and hold their sockets open.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults import PostgresProxy, terminate_backends, wait_for_backends
from tests.support import OPERATION_PATH, TestDatabase, launch_service, migrated, operation
from tests.test_faults import burst, every_kind
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.postgres import PostgresAddress
from wallet_api.devtools.server import ServiceProcess

#: The worker's pool: this many connections, all opened with the pool.
POOL_SIZE = 3
#: How long the stale connections' sockets stay open after their FATAL error.
HOLD_SECONDS = 8.0


@pytest.fixture(scope="module")
def own_database(make_database: Callable[[], TestDatabase]) -> TestDatabase:
    """A database of the module's own: only its service's sessions are on it."""
    return migrated(make_database())


@pytest.fixture(scope="module")
def proxy(postgres: PostgresAddress) -> Iterator[PostgresProxy]:
    directory = Path(tempfile.mkdtemp(prefix="wallet-api-test-proxy-"))
    try:
        with PostgresProxy(postgres, directory) as proxy:
            yield proxy
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def one_worker(
    own_database: TestDatabase, proxy: PostgresProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """One worker, so that every request meets the same pool; its connections through the
    proxy, and nothing else's."""
    log_path = tmp_path_factory.mktemp("failover-pool-service") / "gunicorn.log"
    settings = {
        "WORKERS_COUNT": "1",
        "DB_POOL_SIZE": str(POOL_SIZE),
        "DB_MAX_OVERFLOW": "0",
    }
    with launch_service(proxy.database(own_database), log_path, settings).serving() as service:
        yield service


def test_a_connection_cut_under_a_statement_is_reported_lost_and_the_stale_pool_is_replaced(
    one_worker: ServiceProcess, own_database: TestDatabase, proxy: PostgresProxy
) -> None:
    """A deposit waits on a row lock when every connection of the pool gets the FATAL error
    of a terminated session, sockets held open (what a failover does to idle connections
    before their sockets close), and then the deposit's session is terminated (its socket
    closes under the statement). The deposit's caller is told its outcome is unknown, for
    the connection loss itself; and the requests after it all succeed, on new connections,
    although the pool's other connections are still stale."""
    with httpx.Client(base_url=one_worker.base_url, timeout=30) as client:
        wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
        deposited = client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 10))
        assert deposited.status_code == 200, deposited.text
    assert proxy.connections() == POOL_SIZE  # the worker's pool, full

    async def scenario() -> tuple[httpx.Response, float]:
        async with (
            httpx.AsyncClient(base_url=one_worker.base_url, timeout=30) as http,
            own_database.row_locked(wallet),
        ):
            deposit = asyncio.create_task(
                http.post(
                    OPERATION_PATH.format(wallet),
                    json=operation("DEPOSIT", 5),
                    headers={"Idempotency-Key": f"cut-{uuid.uuid4()}"},
                )
            )
            (pid,) = await asyncio.to_thread(
                wait_for_backends, own_database, wait_event_type="Lock"
            )
            poisoned_at = time.monotonic()
            assert proxy.terminate_and_hold(HOLD_SECONDS) == POOL_SIZE
            await asyncio.to_thread(terminate_backends, own_database, [pid])
            return await deposit, poisoned_at

    cut, poisoned_at = asyncio.run(scenario())
    # (a) The loss itself is what the caller's answer and the log are about.
    assert_problem(cut, 500, "outcome_unknown")
    (logged,) = errors_logged(one_worker, "commit outcome unknown")
    assert logged.splitlines()[-1].startswith(
        "asyncpg.exceptions.ConnectionDoesNotExistError: connection was closed in the middle"
    ), logged
    assert "released back to the pool" not in one_worker.log_text()

    # (b) The two stale connections were expired with the lost one: the next requests, sent
    # at once (one at a time, they would all meet the one connection asyncpg restored in the
    # lost one's place) while the stale sockets are still open, each get a new connection.
    requests = every_kind(wallet) * 2
    answers = asyncio.run(burst(one_worker, requests))
    assert time.monotonic() - poisoned_at < HOLD_SECONDS, "too slow: the stale sockets closed"
    assert [answer.status_code for answer in answers] == [
        201 if path.endswith("create_wallet") else 200 for _, path, _, _ in requests
    ], [answer.text for answer in answers if answer.status_code >= 300]
    # No request met a stale connection's protocol state. (A background task may, when its
    # turn falls in the stale window: the hold sweep logs a warning and tries again.)
    lines = [json.loads(line) for line in one_worker.log_text().splitlines() if line[:1] == "{"]
    assert not [
        line for line in lines if line["level"] == "error" and "cannot switch to state" in str(line)
    ]


def errors_logged(service: ServiceProcess, message: str) -> list[str]:
    """The exceptions (tracebacks) of the service's ERROR lines saying `message`."""
    lines = (json.loads(line) for line in service.log_text().splitlines() if line.startswith("{"))
    return [
        str(line.get("error", ""))
        for line in lines
        if line["level"] == "error" and line["message"] == message
    ]
