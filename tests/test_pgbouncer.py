"""Behind PgBouncer in transaction mode (`DB_PGBOUNCER=true`): the same concurrency
guarantees as with a direct connection, and an Idempotency-Key still applies once.

The scenarios are those of test_concurrency.py and test_idempotency.py, run on a service
whose DB_HOST/DB_PORT name a private PgBouncer in front of the session's server (the
schema was migrated directly on the server; the ledger checks read it directly too).
PgBouncer before 1.21 (Debian 12 ships 1.18) sends each message batch of a client to
whichever server connection is free when no transaction is open; with `DB_PGBOUNCER` the
service runs every statement inside a transaction, which keeps it on one connection.
Without `pgbouncer` installed these tests are skipped, except in CI (the CI environment
variable set), where that is a failure: CI installs it (`make pgbouncer`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests import test_concurrency, test_idempotency
from tests.support import TestDatabase
from wallet_api.devtools.pgbouncer import (
    find_pgbouncer,
    pgbouncer,
)
from wallet_api.devtools.postgres import PostgresAddress
from wallet_api.devtools.server import ServiceProcess


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def bouncer(postgres: PostgresAddress) -> Iterator[PostgresAddress]:
    """A PgBouncer (transaction pooling) in front of the session's PostgreSQL server."""
    if find_pgbouncer() is None:
        reason = "pgbouncer is not installed: `make pgbouncer` installs Debian's package"
        if in_ci():
            pytest.fail(f"{reason} (CI is set, and CI must install it)", pytrace=False)
        pytest.skip(reason)
    with pgbouncer(postgres, pool_mode="transaction") as address:
        yield address


@pytest.fixture(params=["coalesced", "one-transaction-per-operation"], scope="module")
def bounced_service(
    request: pytest.FixtureRequest,
    bouncer: PostgresAddress,
    start_service: Callable[..., ServiceProcess],
) -> ServiceProcess:
    """The service (2 workers) connected through PgBouncer, coalescing on and off."""
    settings = {
        "DB_HOST": bouncer.host,
        "DB_PORT": str(bouncer.port),
        "DB_PGBOUNCER": "true",
    }
    if request.param == "one-transaction-per-operation":
        settings["COALESCING_ENABLED"] = "false"
    return start_service(**settings)


@pytest.fixture
def bounced_client(bounced_service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bounced_service.base_url, timeout=30) as client:
        yield client


#: Every test of test_concurrency.py; each takes (any_service, any_client, database).
CONCURRENCY_SCENARIOS = [
    function
    for name, function in inspect.getmembers(test_concurrency, inspect.isfunction)
    if name.startswith("test_") and function.__module__ == test_concurrency.__name__
]


@pytest.mark.parametrize(
    "scenario", CONCURRENCY_SCENARIOS, ids=[f.__name__ for f in CONCURRENCY_SCENARIOS]
)
def test_concurrency_through_pgbouncer(
    scenario: Callable[..., None],
    bounced_service: ServiceProcess,
    bounced_client: httpx.Client,
    database: TestDatabase,
) -> None:
    scenario(any_service=bounced_service, any_client=bounced_client, database=database)


def test_fifty_concurrent_requests_with_one_key_apply_once_through_pgbouncer(
    bounced_service: ServiceProcess, bounced_client: httpx.Client, database: TestDatabase
) -> None:
    test_idempotency.test_fifty_concurrent_requests_with_one_key_apply_once(
        any_service=bounced_service, client=bounced_client, database=database
    )
