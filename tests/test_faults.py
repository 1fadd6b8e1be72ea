"""Faults between the service and PostgreSQL, made on cue (tests/faults.py), and what each
caller is told: a write whose commit was cut off in flight is 500 `outcome_unknown` (and
its Idempotency-Key then replays what landed), never "not applied"; a connection the server
ended is discarded, never reused into a 500; operations queued behind a failed batch still
run; a database that stops answering is answered within DB_CLIENT_TIMEOUT.

The module runs a PostgreSQL of its own (`commits_held` changes a server-wide setting), and
its services reach it through a proxy that can cut, poison or silence their connections.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults import (
    PostgresProxy,
    commits_held,
    terminate_backends,
    wait_for_backends,
)
from tests.support import (
    OPERATION_PATH,
    TestDatabase,
    assert_ledger_consistent,
    is_coalesced,
    launch_service,
    operation,
    private_postgres,
    queued_operations,
    worker_of,
)
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.postgres import RestartableEmbeddedPostgres
from wallet_api.devtools.server import ServiceProcess

#: Servers of its own, whatever server the suite is given.
pytestmark = pytest.mark.own_servers

BATCH = "/api/v1/operations/batch"

#: Operations queued behind a batch give up after this long: short, so that a queue that is
#: never served shows as 503 `wallet_busy` quickly.
DEADLINE_SECONDS = 3


@pytest.fixture(scope="module")
def own_server() -> Iterator[tuple[RestartableEmbeddedPostgres, TestDatabase]]:
    with private_postgres("wallet_api_faults") as server:
        yield server


@pytest.fixture(scope="module")
def own_postgres(
    own_server: tuple[RestartableEmbeddedPostgres, TestDatabase],
) -> RestartableEmbeddedPostgres:
    return own_server[0]


@pytest.fixture(scope="module")
def database(own_server: tuple[RestartableEmbeddedPostgres, TestDatabase]) -> TestDatabase:
    """The module's database, reached directly (the tests' own queries)."""
    return own_server[1]


@pytest.fixture(scope="module")
def proxy(own_postgres: RestartableEmbeddedPostgres) -> Iterator[PostgresProxy]:
    directory = Path(tempfile.mkdtemp(prefix="wallet-api-test-proxy-"))
    try:
        with PostgresProxy(own_postgres.address, directory) as proxy:
            yield proxy
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def start(
    database: TestDatabase, proxy: PostgresProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start the service on the module's database, through the proxy, with `settings`."""
    started: list[ServiceProcess] = []

    def start(**settings: str) -> ServiceProcess:
        log_path = tmp_path_factory.mktemp("faults-service") / "gunicorn.log"
        service = launch_service(proxy.database(database), log_path, settings)
        started.append(service)
        service.wait_until_serving()
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="module", params=["coalesced", "one-transaction-per-operation"])
def one_worker(
    request: pytest.FixtureRequest, start: Callable[..., ServiceProcess]
) -> ServiceProcess:
    """One worker process, so that every request meets the same queues and pool."""
    return start(
        WORKERS_COUNT="1",
        OPERATION_DEADLINE=str(DEADLINE_SECONDS),
        COALESCING_ENABLED=str(request.param == "coalesced").lower(),
    )


def keyed_deposit(
    http: httpx.AsyncClient, wallet: str, amount: int, key: str
) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(
        http.post(
            OPERATION_PATH.format(wallet),
            json=operation("DEPOSIT", amount),
            headers={"Idempotency-Key": key},
        )
    )


def ledger_keys(database: TestDatabase, wallet: str) -> list[str]:
    rows = database.fetch(
        "SELECT idempotency_key FROM wallet_operations WHERE wallet_id = $1 ORDER BY id",
        uuid.UUID(wallet),
    )
    return [row["idempotency_key"] for row in rows]


def test_a_commit_cut_off_in_flight_is_outcome_unknown_and_the_queue_behind_it_still_runs(
    one_worker: ServiceProcess, database: TestDatabase
) -> None:
    """The first deposit's commit is durable but unanswered (its standby is away) when an
    administrator terminates its session. Its caller cannot be told "not applied": it did
    land. The deposits sent after it, waiting behind it, are applied on top of it."""
    with httpx.Client(base_url=one_worker.base_url) as client:
        wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
        assert client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 10)).json() == {
            "status": "success",
            "balance": 10,
        }
    first_key = f"cut-{uuid.uuid4()}"
    later_keys = [f"later-{uuid.uuid4()}" for _ in range(3)]

    async def scenario() -> tuple[httpx.Response, list[httpx.Response]]:
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=one_worker.base_url, timeout=30, limits=limits
        ) as http:
            async with commits_held(database):
                first = keyed_deposit(http, wallet, 1, first_key)
                (pid,) = await asyncio.to_thread(wait_for_backends, database, wait_event="SyncRep")
                later = [keyed_deposit(http, wallet, 2, key) for key in later_keys]
                await asyncio.to_thread(wait_until_behind, one_worker, database, len(later))
                await asyncio.to_thread(terminate_backends, database, [pid])
                cut = await first
                # The deposits behind it commit (and wait for the standby) before the
                # block ends and lets every commit complete.
                await asyncio.to_thread(
                    wait_for_backends, database, wait_event="SyncRep", other_than=[pid]
                )
            return cut, list(await asyncio.gather(*later))

    cut, later = asyncio.run(scenario())
    assert_problem(cut, 500, "outcome_unknown")
    assert [response.status_code for response in later] == [200] * 3, [r.text for r in later]
    balances = sorted(response.json()["balance"] for response in later)
    assert balances == [13, 15, 17]  # each on top of the deposit whose outcome was unknown
    keys = ledger_keys(database, wallet)
    assert keys[:2] == [None, first_key]  # it landed, before the ones behind it
    assert sorted(keys[2:]) == sorted(later_keys)
    assert_ledger_consistent(database, wallet)

    with httpx.Client(base_url=one_worker.base_url) as client:
        retry = client.post(
            OPERATION_PATH.format(wallet),
            json=operation("DEPOSIT", 1),
            headers={"Idempotency-Key": first_key},
        )
    assert retry.status_code == 200
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == {"status": "success", "balance": 11}
    assert database.stored_balance(wallet) == 1700
    assert errors_logged(one_worker) <= {"commit outcome unknown", "outcome_unknown"}


def wait_until_behind(service: ServiceProcess, database: TestDatabase, count: int) -> None:
    """Wait until `count` operations wait behind the one in flight: in its wallet's queue
    (coalescing), or on its row lock (one transaction per operation)."""
    if not is_coalesced(service):
        wait_for_backends(database, wait_event_type="Lock", count=count)
        return
    deadline = time.monotonic() + 10
    while queued_operations(service) < count:
        assert time.monotonic() < deadline, "the operations did not queue"
        time.sleep(0.1)


def test_a_commit_whose_connection_is_cut_is_outcome_unknown_and_the_service_recovers(
    one_worker: ServiceProcess, database: TestDatabase, proxy: PostgresProxy
) -> None:
    with httpx.Client(base_url=one_worker.base_url) as client:
        wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
    key = f"severed-{uuid.uuid4()}"

    async def scenario() -> httpx.Response:
        async with (
            httpx.AsyncClient(base_url=one_worker.base_url, timeout=30) as http,
            commits_held(database),
        ):
            deposit = keyed_deposit(http, wallet, 5, key)
            await asyncio.to_thread(wait_for_backends, database, wait_event="SyncRep")
            assert proxy.sever() >= 1
            return await deposit

    assert_problem(asyncio.run(scenario()), 500, "outcome_unknown")
    assert ledger_keys(database, wallet) == [key]  # it landed
    with httpx.Client(base_url=one_worker.base_url) as client:
        for amount in (1, 2):
            response = client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", amount))
            assert response.status_code == 200, response.text
        assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 8}


def test_create_wallet_cut_off_in_flight_is_outcome_unknown_and_its_key_finds_the_wallet(
    start: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    service = start(WORKERS_COUNT="1")
    key = f"create-{uuid.uuid4()}"

    async def scenario() -> httpx.Response:
        async with (
            httpx.AsyncClient(base_url=service.base_url, timeout=30) as http,
            commits_held(database),
        ):
            created = asyncio.create_task(
                http.post("/api/v1/wallets/create_wallet", headers={"Idempotency-Key": key})
            )
            (pid,) = await asyncio.to_thread(wait_for_backends, database, wait_event="SyncRep")
            await asyncio.to_thread(terminate_backends, database, [pid])
            return await created

    assert_problem(asyncio.run(scenario()), 500, "outcome_unknown")
    with httpx.Client(base_url=service.base_url) as client:
        retry = client.post("/api/v1/wallets/create_wallet", headers={"Idempotency-Key": key})
        assert retry.status_code == 201
        assert retry.headers["idempotent-replayed"] == "true"
        wallet = retry.json()["wallet_uuid"]
        assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 0}


def test_a_batch_cut_after_claiming_its_key_is_applied_by_its_retry_not_replayed(
    start: Callable[..., ServiceProcess], database: TestDatabase, proxy: PostgresProxy
) -> None:
    """A keyed non-atomic batch claims its key (a commit of its own), then its write waits
    for a row lock the test holds, and the connection is cut under it: 503, nothing
    applied, but the key is stored. Its retry applies every operation for the first time:
    that answer is not a replay and must not say so. Only the next retry, which changes
    nothing, is `Idempotent-Replayed: true`, with the same results."""
    # One transaction per request: the write waits for the lock before anything is sent,
    # so the cut is "not applied" (503), never an unknown outcome.
    service = start(WORKERS_COUNT="1", COALESCING_ENABLED="false")
    with httpx.Client(base_url=service.base_url, timeout=30) as client:
        first, second = (
            str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
            for _ in range(2)
        )
    key = f"batch-cut-{uuid.uuid4()}"
    body = {
        "operations": [
            {"wallet_uuid": first, **operation("DEPOSIT", 5)},
            {"wallet_uuid": second, **operation("DEPOSIT", 7)},
            {"wallet_uuid": first, **operation("WITHDRAW", 2)},
        ]
    }

    async def scenario() -> httpx.Response:
        async with (
            httpx.AsyncClient(base_url=service.base_url, timeout=30) as http,
            database.row_locked(first),
        ):
            batch = asyncio.create_task(
                http.post(BATCH, json=body, headers={"Idempotency-Key": key})
            )
            await asyncio.to_thread(wait_for_backends, database, wait_event_type="Lock")
            assert proxy.sever() >= 1
            return await batch

    assert_problem(asyncio.run(scenario()), 503, "database_unavailable")
    claimed = database.fetch("SELECT response_status FROM idempotency_keys WHERE key = $1", key)
    assert [row["response_status"] for row in claimed] == [202]  # the claim, and nothing else
    assert database.ledger(first) == database.ledger(second) == []

    with httpx.Client(base_url=service.base_url, timeout=30) as client:
        retry = client.post(BATCH, json=body, headers={"Idempotency-Key": key})
        again = client.post(BATCH, json=body, headers={"Idempotency-Key": key})
    assert retry.status_code == 200, retry.text
    assert "idempotent-replayed" not in retry.headers  # applied now, for the first time
    assert [result["body"] for result in retry.json()["results"]] == [
        {"status": "success", "balance": 5},
        {"status": "success", "balance": 7},
        {"status": "success", "balance": 3},
    ]
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == retry.json()
    assert ledger_keys(database, first) == [f"{key} #0", f"{key} #2"]
    assert ledger_keys(database, second) == [f"{key} #1"]


def test_a_fatal_error_on_idle_connections_is_never_a_500_and_they_are_all_replaced(
    start: Callable[..., ServiceProcess], database: TestDatabase, proxy: PostgresProxy
) -> None:
    """Every backend terminated at once: each pooled connection gets PostgreSQL's FATAL
    error while idle, and its socket closes only seconds later. A request that meets such
    a connection is told 503 (or `outcome_unknown` for a write in flight), never 500
    `internal_error`; and once a worker has met one, it replaces all of them: the next
    requests, still before the sockets close, all succeed."""
    service = start(DB_POOL_SIZE="4", DB_MAX_OVERFLOW="0")
    with httpx.Client(base_url=service.base_url) as client:
        wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
        client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 100))
    _, warm = on_both_workers(
        service, lambda: [("GET", f"/api/v1/wallets/{wallet}", None, None)] * 16
    )
    assert [response.status_code for response in warm] == [200] * len(warm)
    assert proxy.connections() >= 8  # both workers' pools, full (and other services')

    hold = 10.0
    cut_at = time.monotonic()
    assert proxy.terminate_and_hold(hold) >= 8
    # One request at a time, until each worker has met a poisoned connection: each then
    # holds 3 more it has not touched, which only a pool-wide replacement can spare the
    # next requests.
    sent: list[Request] = []
    answers: list[httpx.Response] = []
    failed_on: set[str] = set()
    kinds = itertools.cycle(range(len(every_kind(wallet))))
    with httpx.Client(base_url=service.base_url, timeout=30) as client:
        while len(failed_on) < 2:
            # Which worker accepts a connection is the kernel's choice: on a loaded machine a
            # long run of them can go to one.
            assert len(sent) < 600, f"only {failed_on} met the fault"
            method, path, body, key = every_kind(wallet)[next(kinds)]
            answer = client.request(
                method,
                path,
                json=body,
                headers={"Idempotency-Key": key, "Connection": "close"}
                if key
                else {"Connection": "close"},
            )
            sent.append((method, path, body, key))
            answers.append(answer)
            if answer.status_code >= 500:
                failed_on.add(worker_of(answer))
    for (method, path, _, key), answer in zip(sent, answers, strict=True):
        where = f"{method} {path}: {answer.text}"
        if answer.status_code >= 500:
            code = answer.json()["code"]
            assert code in {"database_unavailable", "outcome_unknown"}, where
            assert code != "outcome_unknown" or method == "POST", where
            if code == "database_unavailable" and key is not None:
                assert key not in ledger_keys(database, wallet), "answered not applied, applied"
        else:
            assert answer.status_code in {200, 201}, where

    requests = mixed(wallet, 6)
    after = asyncio.run(burst(service, requests))
    assert time.monotonic() - cut_at < hold, "too slow: the poisoned sockets closed meanwhile"
    assert [answer.status_code for answer in after] == [
        201 if path.endswith("create_wallet") else 200 for _, path, _, _ in requests
    ], [answer.text for answer in after if answer.status_code >= 300]
    assert_ledger_consistent(database, wallet)
    assert "internal_error" not in service.log_text()


def test_without_a_statement_timeout_a_silent_database_is_answered_within_the_client_timeout(
    start: Callable[..., ServiceProcess], proxy: PostgresProxy
) -> None:
    """DB_STATEMENT_TIMEOUT_MS=0 lifts the server's limit, not the client's: a database that
    stops answering gets a 503 after DB_CLIENT_TIMEOUT, not a request that waits for ever."""
    service = start(DB_STATEMENT_TIMEOUT_MS="0", DB_CLIENT_TIMEOUT="1.5")
    with httpx.Client(base_url=service.base_url, timeout=30) as client:
        wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
        assert client.get(f"/api/v1/wallets/{wallet}").status_code == 200  # a pool is open
        with proxy.dropping_packets():
            started = time.monotonic()
            response = client.get(f"/api/v1/wallets/{wallet}", timeout=10)
            elapsed = time.monotonic() - started
        assert_problem(response, 503, "database_unavailable")
        assert elapsed < 5, elapsed
        assert client.get(f"/api/v1/wallets/{wallet}").status_code == 200


def errors_logged(service: ServiceProcess) -> set[str]:
    """The messages of the service's ERROR lines (up to the first colon)."""
    lines = (json.loads(line) for line in service.log_text().splitlines() if line.startswith("{"))
    return {line["message"].split(":")[0] for line in lines if line["level"] == "error"}


#: (method, path, JSON body or None, Idempotency-Key or None)
Request = tuple[str, str, dict[str, object] | None, str | None]


def mixed(wallet: str, times: int) -> list[Request]:
    """`times` requests of each kind, each keyed deposit with a key of its own."""
    return [request for _ in range(times) for request in every_kind(wallet)]


def every_kind(wallet: str) -> list[Request]:
    """One request of each kind; each call makes new Idempotency-Keys."""
    return [
        ("POST", "/api/v1/wallets/create_wallet", None, None),
        ("GET", f"/api/v1/wallets/{wallet}", None, None),
        ("POST", OPERATION_PATH.format(wallet), operation("DEPOSIT", 5), f"k-{uuid.uuid4()}"),
        ("POST", OPERATION_PATH.format(wallet), operation("WITHDRAW", 1), None),
        ("GET", f"/api/v1/wallets/{wallet}/operations", None, None),
    ]


def on_both_workers(
    service: ServiceProcess, requests: Callable[[], list[Request]]
) -> tuple[list[Request], list[httpx.Response]]:
    """Send a burst of `requests()`, again until both worker processes have answered some;
    every request sent and its response, in order."""
    sent: list[Request] = []
    responses: list[httpx.Response] = []
    for _ in range(20):
        batch = requests()
        sent += batch
        responses += asyncio.run(burst(service, batch))
        if len({worker_of(response) for response in responses}) == 2:
            return sent, responses
    raise AssertionError("one worker answered every request")


async def burst(service: ServiceProcess, requests: list[Request]) -> list[httpx.Response]:
    """Send every request at once, one connection each (so both workers serve them)."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=service.base_url, limits=limits, timeout=30) as http:
        return await asyncio.gather(
            *(
                http.request(
                    method,
                    path,
                    json=body,
                    headers={"Idempotency-Key": key} if key else None,
                )
                for method, path, body, key in requests
            )
        )
