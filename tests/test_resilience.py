"""A database outage: while PostgreSQL is down every request is a quick 503
`database_unavailable` with Retry-After (no hang, no 500), and once it is back the service
recovers by itself, with nothing acknowledged before the outage lost.

The test runs a PostgreSQL of its own (the session's server must stay up for the others)
and stops it as a crash would (`pg_ctl stop -m immediate`), then starts it again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Sequence

import httpx
import pytest

from tests.support import (
    OPERATION_PATH,
    TestDatabase,
    assert_ledger_consistent,
    launch_service,
    money,
    operation,
    private_postgres,
    send_concurrently,
)
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.postgres import RestartableEmbeddedPostgres
from wallet_api.devtools.server import ServiceProcess

#: Servers of its own, whatever server the suite is given.
pytestmark = pytest.mark.own_servers

#: Settings under test: give up on a connection attempt after 1 s, on a pool slot after 2 s.
# Short bounds, so that an outage shows within the test's patience: the client gives up on
# a statement 2 s after DB_STATEMENT_TIMEOUT_MS, a queued operation after OPERATION_DEADLINE.
OUTAGE_SETTINGS = {
    "DB_CONNECT_TIMEOUT": "1",
    "DB_POOL_TIMEOUT": "2",
    "DB_STATEMENT_TIMEOUT_MS": "500",
    "OPERATION_DEADLINE": "1",
}
#: The longest a request may take while the database is down ("quickly, no hang").
MAX_SECONDS_WHILE_DOWN = 4.0
#: The same for a database that stops answering: the client's statement timeout (0.5 s +
#: 2 s), then the rollback of that transaction, bounded the same way.
MAX_SECONDS_WHILE_FROZEN = 8.0
#: The longest the service may take to be ready again once the database is back.
MAX_SECONDS_TO_RECOVER = 30.0
#: Concurrent requests of a burst: enough to reach both worker processes.
BURST = 24


@pytest.fixture(scope="module")
def own_server() -> Iterator[tuple[RestartableEmbeddedPostgres, TestDatabase]]:
    with private_postgres("wallet_api_outage") as server:
        yield server


@pytest.fixture(scope="module")
def own_postgres(
    own_server: tuple[RestartableEmbeddedPostgres, TestDatabase],
) -> RestartableEmbeddedPostgres:
    return own_server[0]


@pytest.fixture(scope="module")
def own_database(own_server: tuple[RestartableEmbeddedPostgres, TestDatabase]) -> TestDatabase:
    return own_server[1]


@pytest.fixture(scope="module")
def own_service(
    own_database: TestDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    log_path = tmp_path_factory.mktemp("outage-service") / "gunicorn.log"
    with launch_service(own_database, log_path, OUTAGE_SETTINGS).serving() as service:
        yield service


def new_client(service: ServiceProcess) -> httpx.Client:
    """A client that opens a connection per request, so requests reach both workers."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.Client(base_url=service.base_url, timeout=15, limits=limits)


#: (method, path, JSON body or None)
Request = tuple[str, str, dict[str, object] | None]


def requests_of_every_kind(wallet: str) -> list[Request]:
    return [
        ("POST", "/api/v1/wallets/create_wallet", None),
        ("GET", f"/api/v1/wallets/{wallet}", None),
        ("POST", OPERATION_PATH.format(wallet), operation("DEPOSIT", 5)),
        ("POST", OPERATION_PATH.format(wallet), operation("WITHDRAW", 1)),
        ("GET", f"/api/v1/wallets/{wallet}/operations", None),
    ]


def assert_unavailable(response: httpx.Response) -> None:
    assert_problem(response, 503, "database_unavailable")
    assert int(response.headers["retry-after"]) >= 1


def assert_failed(path: str, response: httpx.Response) -> None:
    """A 503 "not applied": `database_unavailable`, or `wallet_busy` for a write or a
    balance read that waited past OPERATION_DEADLINE behind its wallet's stuck batch
    (both coalesce). A write (an operation, a wallet's creation) may instead get 500
    `outcome_unknown` (its commit was in flight, or its pooled connection had been dropped
    by the server)."""
    if path.endswith(("/operation", "/create_wallet")) and response.status_code == 500:
        assert_problem(response, 500, "outcome_unknown")
    elif response.json().get("code") == "wallet_busy":
        assert_problem(response, 503, "wallet_busy")
        assert int(response.headers["retry-after"]) >= 1
    else:
        assert_unavailable(response)


async def burst(
    service: ServiceProcess, requests: Sequence[Request], answer_within: float = 15
) -> list[tuple[httpx.Response | None, float]]:
    """Send every request at once, one connection each; each response (None if none came
    within `answer_within` seconds) with its duration."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=service.base_url, limits=limits, timeout=answer_within
    ) as http:

        async def timed(
            method: str, path: str, body: object
        ) -> tuple[httpx.Response | None, float]:
            started = time.monotonic()
            try:
                response: httpx.Response | None = await http.request(method, path, json=body)
            except httpx.TimeoutException:
                response = None
            return response, time.monotonic() - started

        return await asyncio.gather(*(timed(*request) for request in requests))


def balance(client: httpx.Client, wallet: str) -> int:
    """The wallet's balance in cents, read through the service."""
    response = client.get(f"/api/v1/wallets/{wallet}")
    assert response.status_code == 200, response.text
    return int(money(response.json()["balance"]) * 100)


def wait_until_ready(service: ServiceProcess, timeout: float) -> float:
    """Poll /health/ready until 200; the seconds it took. Every other answer must be a 503."""
    started = time.monotonic()
    with new_client(service) as client:
        while True:
            response = client.get("/health/ready")
            if response.status_code == 200:
                return time.monotonic() - started
            assert_unavailable(response)
            assert time.monotonic() - started < timeout, (
                f"not ready {timeout}s after the database came back:\n{service.log_text()}"
            )
            time.sleep(0.2)


def test_a_database_outage_is_a_quick_503_and_the_service_recovers_by_itself(
    own_postgres: RestartableEmbeddedPostgres,
    own_service: ServiceProcess,
    own_database: TestDatabase,
) -> None:
    with new_client(own_service) as client:
        # Before: work acknowledged on a few wallets, some of it concurrent.
        wallets = [
            str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
            for _ in range(4)
        ]
        expected = dict.fromkeys(wallets, 0)  # cents
        acknowledged = dict.fromkeys(wallets, 0)  # ledger rows
        for wallet in wallets:
            deposit = client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 100))
            assert deposit.json() == {"status": "success", "balance": 100}
            withdraw = client.post(OPERATION_PATH.format(wallet), json=operation("WITHDRAW", 0.25))
            assert withdraw.json() == {"status": "success", "balance": 99.75}
            expected[wallet] += 9975
            acknowledged[wallet] += 2
        deposits = [(wallet, operation("DEPOSIT", 1)) for wallet in wallets] * 10
        responses = asyncio.run(send_concurrently(own_service.base_url, deposits))
        assert [r.status_code for r in responses] == [200] * len(deposits)
        for wallet in wallets:
            expected[wallet] += 1000
            acknowledged[wallet] += 10
            assert balance(client, wallet) == expected[wallet]

        # Down: every kind of request is a 503 database_unavailable, quickly.
        own_postgres.stop(mode="immediate")
        assert not own_postgres.is_running()
        for _ in range(2):
            for method, path, body in requests_of_every_kind(wallets[0]):
                started = time.monotonic()
                response = client.request(method, path, json=body)
                elapsed = time.monotonic() - started
                assert_failed(path, response)
                assert elapsed < MAX_SECONDS_WHILE_DOWN, f"{method} {path} took {elapsed:.1f}s"
            assert_unavailable(client.get("/health/ready"))
        kinds = requests_of_every_kind(wallets[1])
        answers = asyncio.run(burst(own_service, [kinds[i % len(kinds)] for i in range(BURST)]))
        for answer, elapsed in answers:
            assert answer is not None, "no answer"
            assert_failed(answer.request.url.path, answer)
            assert elapsed < MAX_SECONDS_WHILE_DOWN, f"{answer.request.url} took {elapsed:.1f}s"
        assert client.get("/health/live").status_code == 200

        # Back: ready again within a bounded time, without a restart of the service.
        own_postgres.start()
        assert own_postgres.is_running()
        wait_until_ready(own_service, MAX_SECONDS_TO_RECOVER)
        # Every worker serves again: a burst of operations and reads all succeed.
        work = [(wallet, operation("DEPOSIT", 2)) for wallet in wallets] * (BURST // 4)
        responses = asyncio.run(send_concurrently(own_service.base_url, work))
        assert [r.status_code for r in responses] == [200] * len(work), [
            r.text for r in responses if r.status_code != 200
        ]
        for wallet in wallets:
            expected[wallet] += 200 * (BURST // 4)
            acknowledged[wallet] += BURST // 4
        reads = asyncio.run(
            burst(own_service, [("GET", f"/api/v1/wallets/{w}", None) for w in wallets] * 6)
        )
        assert [answer.status_code if answer else None for answer, _ in reads] == [200] * 24
        assert client.post("/api/v1/wallets/create_wallet").status_code == 201

        # Nothing acknowledged was lost, nothing refused was applied (and no write whose
        # outcome was unknown landed: the server was down before any was sent).
        for wallet in wallets:
            assert balance(client, wallet) == expected[wallet]
            assert len(assert_ledger_consistent(own_database, wallet)) == acknowledged[wallet]


def test_a_database_that_stops_answering_is_answered_within_a_bounded_time(
    own_postgres: RestartableEmbeddedPostgres,
    own_service: ServiceProcess,
    own_database: TestDatabase,
) -> None:
    """A hung server or a network that drops packets: connections stay open, no answer.

    Reads and refusals get 503 `database_unavailable` (nothing applied). A write whose
    commit was in flight gets 500 `outcome_unknown`: the database may still commit it
    when it wakes up, so the service must not call it "not applied". Which is which is
    checked through each deposit's Idempotency-Key in the ledger afterwards.
    """
    with new_client(own_service) as client:
        wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
        deposits = [(wallet, operation("DEPOSIT", 1))] * 8
        responses = asyncio.run(send_concurrently(own_service.base_url, deposits))
        assert [r.status_code for r in responses] == [200] * 8  # both workers hold connections

        kinds = requests_of_every_kind(wallet)
        keys = [f"frozen-{uuid.uuid4()}" for _ in range(10)]
        with own_postgres.frozen():
            answers, keyed = asyncio.run(
                frozen_traffic(own_service, kinds * 2, wallet, keys, MAX_SECONDS_WHILE_FROZEN + 4)
            )
        outcomes = [
            (method, path, answer.status_code if answer else "no answer", round(elapsed, 1))
            for (method, path, _), (answer, elapsed) in zip(kinds * 2, answers, strict=True)
        ]
        wait_until_ready(own_service, MAX_SECONDS_TO_RECOVER)
        assert_ledger_consistent(own_database, wallet)
        for (_, path, _), (answer, elapsed) in zip(kinds * 2, answers, strict=True):
            assert answer is not None, f"no answer within {elapsed:.1f}s: {outcomes}"
            assert elapsed < MAX_SECONDS_WHILE_FROZEN, outcomes
            assert_failed(path, answer)

        stored = {
            row["idempotency_key"]
            for row in own_database.fetch(
                "SELECT idempotency_key FROM wallet_operations WHERE wallet_id = $1",
                uuid.UUID(wallet),
            )
        }
        for key, (answer, elapsed) in zip(keys, keyed, strict=True):
            assert answer is not None, f"no answer within {elapsed:.1f}s"
            assert elapsed < MAX_SECONDS_WHILE_FROZEN
            assert_failed(OPERATION_PATH, answer)
            if answer.status_code == 503:
                assert key not in stored, "a deposit answered 'not applied' was applied"


async def frozen_traffic(
    service: ServiceProcess,
    requests: Sequence[Request],
    wallet: str,
    keys: Sequence[str],
    answer_within: float,
) -> tuple[list[tuple[httpx.Response | None, float]], list[tuple[httpx.Response | None, float]]]:
    """`requests` (see `burst`) and, at the same time, one keyed deposit of 5 per key."""

    async def keyed(key: str) -> tuple[httpx.Response | None, float]:
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=service.base_url, timeout=answer_within) as http:
            try:
                response: httpx.Response | None = await http.post(
                    OPERATION_PATH.format(wallet),
                    json=operation("DEPOSIT", 5),
                    headers={"Idempotency-Key": key},
                )
            except httpx.TimeoutException:
                response = None
        return response, time.monotonic() - started

    answers, keyed_answers = await asyncio.gather(
        burst(service, requests, answer_within), asyncio.gather(*(keyed(key) for key in keys))
    )
    return answers, list(keyed_answers)
