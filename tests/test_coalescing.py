"""Per-wallet write coalescing: each caller gets exactly its own answer, nothing is
acknowledged before its commit, one failing operation does not fail the others, and
the queue and deadline bounds give 503 rather than an unbounded wait."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import pytest

from tests.support import (
    TestDatabase,
    assert_ledger_consistent,
    assert_refusals_justified,
    is_coalesced,
    money,
    operation,
    send_concurrently,
)
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess

POISON_AMOUNT = "1313.13"  # the trigger below fails any commit that stores this amount


@pytest.fixture
def hot_wallet(client: httpx.Client) -> str:
    return str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])


def transactions_of(database: TestDatabase, wallet: str) -> Counter[int]:
    """How many ledger rows each committing transaction wrote."""
    return Counter(row["txid"] for row in database.ledger(wallet))


def test_queued_operations_are_applied_together_in_one_transaction(
    service: ServiceProcess, database: TestDatabase, hot_wallet: str
) -> None:
    responses = asyncio.run(
        send_concurrently(
            service.base_url,
            [(hot_wallet, operation("DEPOSIT", 1))] * 100,
            while_locked=(database, hot_wallet),
        )
    )
    assert sorted(r.json()["balance"] for r in responses) == list(range(1, 101))
    batch_sizes = transactions_of(database, hot_wallet)
    assert sum(batch_sizes.values()) == 100
    assert max(batch_sizes.values()) > 10, batch_sizes


def test_refusals_inside_a_batch_leave_the_others_their_exact_answers(
    service: ServiceProcess, database: TestDatabase, client: httpx.Client, hot_wallet: str
) -> None:
    client.post(f"/api/v1/wallets/{hot_wallet}/operation", json=operation("DEPOSIT", 10))
    pattern = [
        operation("WITHDRAW", 1000),  # always refused: the balance never gets near it
        operation("WITHDRAW", 3),  # refused once the balance runs low
        operation("DEPOSIT", "0.5"),
    ]
    bodies = list(itertools.islice(itertools.cycle(pattern), 150))
    responses = asyncio.run(
        send_concurrently(
            service.base_url,
            [(hot_wallet, body) for body in bodies],
            while_locked=(database, hot_wallet),
        )
    )
    for body, response in zip(bodies, responses, strict=True):
        if body["amount"] == 1000 or (
            body["operation"] == "WITHDRAW" and response.status_code != 200
        ):
            assert_problem(response, 400, "insufficient_funds")
        else:
            assert response.status_code == 200, response.text
    ledger_balances = assert_ledger_consistent(database, hot_wallet)[1:]  # after the first deposit
    acknowledged = [
        int(money(r.json()["balance"]) * 100) for r in responses if r.status_code == 200
    ]
    # Each acknowledged balance is exactly the one its own ledger row recorded, and each
    # refusal was judged on a balance the wallet held at its turn.
    assert sorted(acknowledged) == sorted(ledger_balances)
    refused = [r for r in responses if r.status_code == 400]
    assert_refusals_justified(database, hot_wallet, refused)
    refused_small = [r for r in refused if "withdraw 3:" in r.json()["detail"]]
    assert refused_small, "no refusal happened mid-batch"
    assert max(transactions_of(database, hot_wallet).values()) > 10


@pytest.fixture
def poisoned_commits(database: TestDatabase) -> Iterator[None]:
    """A deferred constraint trigger that makes the commit fail for one ledger amount."""
    database.fetch(
        """
        CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.amount = 131313 THEN
                RAISE EXCEPTION 'poisoned ledger row %', NEW.id;
            END IF;
            RETURN NULL;
        END $$
        """
    )
    database.fetch(
        "CREATE CONSTRAINT TRIGGER test_poison AFTER INSERT ON wallet_operations "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_poison()"
    )
    yield
    database.fetch("DROP TRIGGER test_poison ON wallet_operations")
    database.fetch("DROP FUNCTION test_poison()")


@pytest.mark.usefixtures("poisoned_commits")
def test_a_commit_that_fails_fails_only_the_operation_that_broke_it(
    any_service: ServiceProcess, database: TestDatabase, client: httpx.Client, hot_wallet: str
) -> None:
    """The commit fails after every statement succeeded (a deferred constraint): nothing is
    acknowledged before the commit, so its caller gets a 500 and no one else does."""
    bodies = [operation("DEPOSIT", 1)] * 60
    bodies.insert(30, operation("DEPOSIT", POISON_AMOUNT))
    responses = asyncio.run(
        send_concurrently(
            any_service.base_url,
            [(hot_wallet, body) for body in bodies],
            while_locked=(database, hot_wallet),
        )
    )
    poisoned = responses[30]
    problem = assert_problem(poisoned, 500, "internal_error")
    assert "poison" not in poisoned.text.lower()
    assert "trigger" not in poisoned.text.lower()
    others = responses[:30] + responses[31:]
    assert sorted(r.json()["balance"] for r in others) == list(range(1, 61))
    assert client.get(f"/api/v1/wallets/{hot_wallet}").json() == {"balance": 60}
    assert len(assert_ledger_consistent(database, hot_wallet)) == 60

    log = any_service.log_text()
    if is_coalesced(any_service):
        assert "retrying it in halves" in log
    failure_lines = [line for line in log.splitlines() if str(problem["request_id"]) in line]
    assert failure_lines, "the failure is logged with the request id"
    assert "poisoned ledger row" in log


@pytest.fixture(scope="module")
def tightly_bounded_service(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    # One worker, so that which request waits where is certain.
    return start_service(WORKERS_COUNT="1", COALESCING_QUEUE_LIMIT="1", OPERATION_DEADLINE="2")


def test_past_the_queue_limit_or_the_deadline_callers_get_503_and_nothing_is_applied(
    tightly_bounded_service: ServiceProcess, database: TestDatabase, hot_wallet: str
) -> None:
    async def scenario() -> tuple[httpx.Response, httpx.Response, list[httpx.Response]]:
        limits = httpx.Limits(max_connections=10)
        async with httpx.AsyncClient(
            base_url=tightly_bounded_service.base_url, limits=limits, timeout=30
        ) as client:

            def post() -> asyncio.Task[httpx.Response]:
                path = f"/api/v1/wallets/{hot_wallet}/operation"
                return asyncio.create_task(client.post(path, json=operation("DEPOSIT", 1)))

            async with database.row_locked(hot_wallet):
                in_flight = post()  # taken into a batch, then blocked on the row lock
                await asyncio.sleep(1.0)  # generous: a loaded machine is slow to connect
                queued = post()  # waits in the wallet's queue (limit 1)
                await asyncio.sleep(0.5)
                overflow = await asyncio.gather(*(post() for _ in range(5)))  # queue full
                expired = await queued  # its 2 s deadline passes while the lock is held
            return await in_flight, expired, overflow

    applied, expired, overflow = asyncio.run(scenario())
    assert applied.json() == {"status": "success", "balance": 1}
    assert "waited too long" in str(assert_problem(expired, 503, "wallet_busy")["detail"])
    for response in [expired, *overflow]:
        assert int(response.headers["retry-after"]) >= 1
    for response in overflow:
        assert "Too many operations" in str(assert_problem(response, 503, "wallet_busy")["detail"])
    assert len(assert_ledger_consistent(database, hot_wallet)) == 1


def test_with_coalescing_off_every_operation_commits_on_its_own(
    start_service: Callable[..., ServiceProcess], database: TestDatabase, client: httpx.Client
) -> None:
    uncoalesced = start_service(COALESCING_ENABLED="false")
    wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
    responses = asyncio.run(
        send_concurrently(
            uncoalesced.base_url,
            [(wallet, operation("DEPOSIT", 1))] * 100,
            while_locked=(database, wallet),
        )
    )
    assert sorted(r.json()["balance"] for r in responses) == list(range(1, 101))
    assert set(transactions_of(database, wallet).values()) == {1}


def test_a_read_sees_every_write_acknowledged_before_it_was_sent(
    service: ServiceProcess, hot_wallet: str
) -> None:
    # Many clients at once, each depositing then reading: reads of one wallet share
    # queries, but never a query that started before the read was sent.
    async def client_loop(client: httpx.AsyncClient) -> list[tuple[Decimal, Decimal]]:
        seen = []
        for _ in range(15):
            deposit = await client.post(
                f"/api/v1/wallets/{hot_wallet}/operation", json=operation("DEPOSIT", 1)
            )
            read = await client.get(f"/api/v1/wallets/{hot_wallet}")
            seen.append((money(deposit.json()["balance"]), money(read.json()["balance"])))
        return seen

    async def scenario() -> list[tuple[Decimal, Decimal]]:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=service.base_url, limits=limits) as client:
            results = await asyncio.gather(*(client_loop(client) for _ in range(40)))
        return [pair for pairs in results for pair in pairs]

    pairs = asyncio.run(scenario())
    assert len(pairs) == 600
    assert all(read >= acknowledged for acknowledged, read in pairs)
    assert max(read for _, read in pairs) == 600


@pytest.fixture(scope="module")
def one_batch_at_a_time(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    """One worker, one batch in flight: everything that arrives while it is held up by a
    row lock forms the next batch, over every wallet it touches."""
    return start_service(WORKERS_COUNT="1", COALESCING_MAX_IN_FLIGHT="1")


def test_operations_on_many_wallets_commit_together_and_a_poisoned_one_fails_alone(
    one_batch_at_a_time: ServiceProcess,
    database: TestDatabase,
    client: httpx.Client,
    poisoned_commits: None,
) -> None:
    wallets = [
        str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"]) for _ in range(20)
    ]
    blocker = wallets[0]
    bodies = [(wallets[n % 19 + 1], operation("DEPOSIT", 1)) for n in range(57)]
    bodies.insert(30, (wallets[5], operation("DEPOSIT", POISON_AMOUNT)))
    refusals = [(wallets[n + 1], operation("WITHDRAW", 100)) for n in range(5)]
    requests = [(blocker, operation("DEPOSIT", 1)), *bodies, *refusals]
    responses = asyncio.run(
        send_concurrently(one_batch_at_a_time.base_url, requests, while_locked=(database, blocker))
    )
    poisoned = responses[31]
    assert_problem(poisoned, 500, "internal_error")
    others = [r for n, r in enumerate(responses) if n != 31]
    assert [r.status_code for r in others] == [200] * 58 + [400] * 5
    for wallet in wallets:
        assert_ledger_consistent(database, wallet)
    assert sum(len(database.ledger(wallet)) for wallet in wallets) == 58
    # The requests that waited behind the blocker were committed together: one transaction
    # wrote the rows of many wallets.
    transactions = Counter(row["txid"] for wallet in wallets[1:] for row in database.ledger(wallet))
    wallets_per_transaction = Counter(
        row["txid"]
        for wallet in wallets[1:]
        for row in {r["txid"]: r for r in database.ledger(wallet)}.values()
    )
    assert max(wallets_per_transaction.values()) >= 10, wallets_per_transaction
    assert sum(transactions.values()) == 57
    assert "retrying it in halves" in one_batch_at_a_time.log_text()
