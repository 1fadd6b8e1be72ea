"""Fixtures: a PostgreSQL server, a migrated database, and the service running on it."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import TestDatabase, launch_service, migrated
from wallet_api.devtools.postgres import (
    PostgresAddress,
    drop_database,
    embedded_postgres,
    ensure_database,
)
from wallet_api.devtools.server import ServiceProcess


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresAddress]:
    """The server named by TEST_DATABASE_URL, or a private embedded one for this session."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield PostgresAddress.from_url(url)
        return
    with embedded_postgres(
        Path(tempfile.mkdtemp(prefix="wallet-api-test-pg-")), keep_data=False
    ) as address:
        yield address


@pytest.fixture(scope="session")
def make_database(postgres: PostgresAddress) -> Iterator[Callable[[], TestDatabase]]:
    """Create fresh, empty databases; every one is dropped when the session ends."""
    created: list[TestDatabase] = []

    def make() -> TestDatabase:
        database = TestDatabase(postgres, f"wallet_api_test_{uuid.uuid4().hex[:12]}")
        ensure_database(postgres, database.name)
        created.append(database)
        return database

    yield make
    for database in created:
        drop_database(postgres, database.name)


@pytest.fixture(scope="session")
def database(make_database: Callable[[], TestDatabase]) -> TestDatabase:
    """The session's database, its schema built by `alembic upgrade head`."""
    return migrated(make_database())


@pytest.fixture(scope="module")
def start_service(
    database: TestDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start the service (2 workers) with extra settings; stopped when the module ends. A
    service already started in the module with the same settings is reused (fewer
    connections held at once), unless `fresh` asks for a new one."""
    started: dict[tuple[tuple[str, str], ...], ServiceProcess] = {}
    replaced: list[ServiceProcess] = []

    def start(
        wait_path: str = "/health/ready", *, fresh: bool = False, **settings: str
    ) -> ServiceProcess:
        key = tuple(sorted(settings.items()))
        if not fresh and key in started and started[key].process.poll() is None:
            return started[key]
        log_path = tmp_path_factory.mktemp("service") / "gunicorn.log"
        service = launch_service(database, log_path, settings)
        if key in started:
            replaced.append(started[key])
        started[key] = service
        service.wait_until_serving(wait_path)
        return service

    yield start
    for service in [*replaced, *started.values()]:
        service.stop()


@pytest.fixture(scope="session")
def service(
    database: TestDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """The service with default settings: 2 workers, coalescing on."""
    log_path = tmp_path_factory.mktemp("service") / "gunicorn.log"
    with launch_service(database, log_path, {}).serving() as service:
        yield service


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def wallet(client: httpx.Client) -> str:
    """A new wallet's id."""
    response = client.post("/api/v1/wallets/create_wallet")
    assert response.status_code == 201
    return str(response.json()["wallet_uuid"])


@pytest.fixture(params=["coalesced", "one-transaction-per-operation"], scope="module")
def any_service(
    request: pytest.FixtureRequest,
    service: ServiceProcess,
    start_service: Callable[..., ServiceProcess],
) -> ServiceProcess:
    """The service with coalescing on (the session's), then with it off (its own)."""
    if request.param == "coalesced":
        return service
    return start_service(COALESCING_ENABLED="false")


#: Modules whose outcome does not depend on which PostgreSQL serves them (its version, its
#: settings): the pure modules, and HTTP behaviour decided before or beside the SQL (keys,
#: limits, validation, the document, the command line, the process). CI's second run, on
#: the machine's PostgreSQL 15, leaves them out (`-m 'not server_agnostic'`) and repeats
#: the modules whose SQL, locking and transactions the server decides.
SERVER_AGNOSTIC = frozenset(
    {
        "tests/unit",
        "tests/test_auth.py",
        "tests/test_client.py",  # the client's behaviour: the service's answers, not its SQL
        "tests/test_client_retries.py",
        "tests/test_command_line.py",
        "tests/test_database_waits.py",  # the client's and the pool's waits, not the SQL's
        "tests/test_docs_pages.py",
        "tests/test_fast_path.py",  # two code paths' answers compared, the same SQL behind
        "tests/test_entrypoint.py",
        "tests/test_limits_redis.py",
        "tests/test_listening.py",
        "tests/test_openapi.py",
        "tests/test_operability.py",
        "tests/test_owner_change.py",
        "tests/test_owners.py",  # who may touch what: decided before any SQL of the write
        "tests/test_rate_limit_leases.py",
        "tests/test_rate_limits.py",
        "tests/test_shutdown.py",
        "tests/test_validation.py",
        # The sender's HTTP behaviour (signatures, retries, time-outs, leases); its SQL is
        # row locking that every supported server decides alike.
        "tests/test_webhooks.py",
    }
)


#: Modules that run alone, after the others (`make test` runs the rest in several processes
#: at once, pytest-xdist): they share something the others would disturb. The feed's and
#: webhooks' waits follow every write transaction of the PostgreSQL server (docs/EVENTS.md:
#: another process's test holding a row lock holds them back); the rate limits share the
#: one Redis.
SERIAL = frozenset(
    {
        "tests/test_events.py",
        "tests/test_webhooks.py",
        "tests/test_balance_monitors.py",
        "tests/test_rate_limits.py",
        "tests/test_limits_redis.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.nodeid.partition("::")[0]
        if module in SERVER_AGNOSTIC or module.rpartition("/")[0] in SERVER_AGNOSTIC:
            item.add_marker(pytest.mark.server_agnostic)
        if module in SERIAL:
            item.add_marker(pytest.mark.serial)
