"""Per-wallet write coalescing: each caller gets exactly its own answer, nothing is
acknowledged before its commit, one failing operation does not fail the others, and
the queue and deadline bounds give 503 rather than an unbounded wait."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
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
    # wrote the rows of many wallets. The batch over 19 wallets failed on the poisoned one
    # and was retried in halves of whole wallets (9 and 10, in arrival order): the half
    # without the poisoned wallet committed at once, so one transaction wrote at least 9.
    transactions = Counter(row["txid"] for wallet in wallets[1:] for row in database.ledger(wallet))
    wallets_per_transaction = Counter(
        row["txid"]
        for wallet in wallets[1:]
        for row in {r["txid"]: r for r in database.ledger(wallet)}.values()
    )
    assert max(wallets_per_transaction.values()) >= 9, wallets_per_transaction
    assert sum(transactions.values()) == 57
    assert "retrying it in halves" in one_batch_at_a_time.log_text()


def test_a_wallet_committed_in_an_earlier_round_is_not_written_again_when_a_later_one_fails(
    one_batch_at_a_time: ServiceProcess, database: TestDatabase, client: httpx.Client
) -> None:
    """A batch can commit in rounds: the wallets whose balance moved are written again in a
    round of their own. Here the second round fails (a retried request's key was stored
    before), and the batch is tried again: the wallet the first round committed must keep
    its one deposit, and its caller the answer of that commit."""
    payee, retried, blocker = (
        str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"]) for _ in range(3)
    )
    key = {"Idempotency-Key": f"retried-{uuid.uuid4()}"}
    with httpx.Client(base_url=one_batch_at_a_time.base_url, timeout=30) as http:
        # The worker sees the retried wallet at 5, and a keyed withdrawal of 10 refused.
        http.post(f"/api/v1/wallets/{retried}/operation", json=operation("DEPOSIT", 5))
        first = http.post(
            f"/api/v1/wallets/{retried}/operation", json=operation("WITHDRAW", 10), headers=key
        )
        assert_problem(first, 400, "insufficient_funds")
    # Behind the worker's back the wallet receives 95 (a consistent ledger row with it):
    # its plan on 5 (a stored refusal, written only on exactly 5) misses the first round.
    database.fetch(
        "WITH moved AS (UPDATE wallets SET balance = 10000 WHERE id = $1 RETURNING id) "
        "INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after) "
        "SELECT id, 'DEPOSIT', 9500, 10000 FROM moved",
        uuid.UUID(retried),
    )

    async def scenario() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=3)
        async with httpx.AsyncClient(
            base_url=one_batch_at_a_time.base_url, limits=limits, timeout=30
        ) as http:
            async with database.row_locked(blocker):
                held = asyncio.create_task(
                    http.post(f"/api/v1/wallets/{blocker}/operation", json=operation("DEPOSIT", 1))
                )
                await asyncio.sleep(0.5)  # the blocker's batch is in flight, held
                together = [
                    asyncio.create_task(
                        http.post(
                            f"/api/v1/wallets/{payee}/operation", json=operation("DEPOSIT", 10)
                        )
                    ),
                    asyncio.create_task(
                        http.post(
                            f"/api/v1/wallets/{retried}/operation",
                            json=operation("WITHDRAW", 10),
                            headers=key,
                        )
                    ),
                ]
                await asyncio.sleep(0.5)  # both queued: they form the next batch
            return [await held, *await asyncio.gather(*together)]

    _, deposit, retry = asyncio.run(scenario())
    assert deposit.json() == {"status": "success", "balance": 10}
    assert database.stored_balance(payee) == 1000
    assert len(assert_ledger_consistent(database, payee)) == 1
    assert retry.status_code == 400  # the stored refusal, replayed: the key applies once
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.text == first.text.replace(f',"request_id":"{first.json()["request_id"]}"', "")
    assert database.stored_balance(retried) == 10000


@pytest.fixture(scope="module")
def impatient_for_locks(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service(WORKERS_COUNT="1", COALESCING_MAX_IN_FLIGHT="1", DB_LOCK_TIMEOUT_MS="500")


def test_a_wallet_held_by_another_transaction_does_not_hold_up_the_others_in_its_batch(
    impatient_for_locks: ServiceProcess, database: TestDatabase, client: httpx.Client
) -> None:
    """Another transaction holds one wallet's row for seconds. The batch that includes it
    gives up on that lock after DB_LOCK_TIMEOUT_MS and is split: the other wallets'
    operations are applied, the held one's is answered 503 `wallet_busy`, not applied."""
    held, blocker, *others = (
        str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"]) for _ in range(5)
    )

    async def scenario() -> tuple[list[httpx.Response], float]:
        limits = httpx.Limits(max_connections=5)
        async with httpx.AsyncClient(
            base_url=impatient_for_locks.base_url, limits=limits, timeout=30
        ) as http:

            def deposit(wallet: str) -> asyncio.Task[httpx.Response]:
                path = f"/api/v1/wallets/{wallet}/operation"
                return asyncio.create_task(http.post(path, json=operation("DEPOSIT", 1)))

            async with database.row_locked(held):
                async with database.row_locked(blocker):
                    first = deposit(blocker)
                    await asyncio.sleep(0.3)
                    together = [deposit(held), *(deposit(wallet) for wallet in others)]
                    await asyncio.sleep(0.3)  # queued behind the blocker: the next batch
                started = time.monotonic()
                answers = await asyncio.gather(*together)
                elapsed = time.monotonic() - started
                await first
            return answers, elapsed

    (held_answer, *other_answers), elapsed = asyncio.run(scenario())
    assert [r.json() for r in other_answers] == [{"status": "success", "balance": 1}] * 3
    problem = assert_problem(held_answer, 503, "wallet_busy")
    assert "Another transaction holds the wallet" in str(problem["detail"])
    assert elapsed < 5  # not the whole statement timeout, let alone the 30 s lock above
    assert database.ledger(held) == []
    assert "retrying it in halves" in impatient_for_locks.log_text()
