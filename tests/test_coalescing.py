"""Per-wallet write coalescing: each caller gets exactly its own answer, nothing is
acknowledged before its commit, one failing operation does not fail the others, and
the queue and deadline bounds give 503 rather than an unbounded wait."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from decimal import Decimal

import asyncpg
import httpx
import pytest

from tests.support import (
    OPERATION_PATH,
    TestDatabase,
    assert_ledger_consistent,
    assert_refusals_justified,
    is_coalesced,
    money,
    operation,
    queued_operations,
    send_concurrently,
    worker_of,
)
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess

POISON_AMOUNT = "1313.13"  # the trigger below fails any commit that stores this amount

#: How long a test waits for what it arranged to come about (a statement of the service
#: waiting on the test's lock, requests waiting in the queue): far longer than a loaded
#: machine needs, so that only a broken arrangement runs out of it.
ARRANGED_WITHIN = 60.0
#: For the services whose batches a test holds up: no timeout of the service (the
#: statement's, the row lock's, the queue's deadline) can end a hold before the test
#: releases it, however long a loaded machine takes to arrange what comes behind it.
HELD_AS_LONG_AS_NEEDED = {
    "DB_STATEMENT_TIMEOUT_MS": "120000",
    "DB_LOCK_TIMEOUT_MS": "120000",
    "OPERATION_DEADLINE": "120",
}
ROW_LOCK = "SELECT 1 FROM wallets WHERE id = $1 FOR UPDATE"


class Hold:
    """A lock held by a transaction of the test's own, and the service's sessions that
    wait for a lock (the test's, or one that such a session holds) meanwhile."""

    def __init__(self, observer: asyncpg.Connection) -> None:
        self._observer = observer

    async def waiting(self) -> int:
        """How many of the service's sessions on this database wait for a lock now."""
        count: int = await self._observer.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wallet-api' "
            "AND datname = current_database() AND wait_event_type = 'Lock'"
        )
        return count

    async def blocked(self, count: int = 1) -> None:
        """Return once `count` of the service's sessions wait: what the service does next
        is then certain, not a guess at timing."""
        deadline = time.monotonic() + ARRANGED_WITHIN
        while (waiting := await self.waiting()) < count:
            assert time.monotonic() < deadline, f"{waiting} of {count} sessions wait"
            await asyncio.sleep(0.02)


@asynccontextmanager
async def holding(database: TestDatabase, lock: str, *args: object) -> AsyncIterator[Hold]:
    """Take a lock (the statement `lock`) in a transaction of the test's own and hold it
    for the block."""
    holder = await asyncpg.connect(database.url())
    observer = await asyncpg.connect(database.url())
    try:
        async with holder.transaction():
            await holder.execute(lock, *args)
            yield Hold(observer)
    finally:
        await observer.close()
        await holder.close()


async def queued(service: ServiceProcess, count: int) -> None:
    """Return once `count` operations wait in the service's write queues (the gauge its
    workers sample every second). Call `nothing_queued` before sending them: a worker's
    sample may be a second old, and once each has shown an empty queue, every later one
    counts only these operations (none leaves a queue while the test holds its lock), so
    the total reaches `count` only when each worker's sample is its whole share."""
    deadline = time.monotonic() + ARRANGED_WITHIN
    while (depth := await asyncio.to_thread(queued_operations, service)) < count:
        assert time.monotonic() < deadline, f"{depth} of {count} operations queued"
        await asyncio.sleep(0.1)
    assert depth == count, f"{depth} operations queued, not {count}"


async def nothing_queued(service: ServiceProcess) -> None:
    """Return once every worker's last sample of its queues is empty (the last test's
    requests, all answered, may still be in a sample up to a second old)."""
    deadline = time.monotonic() + ARRANGED_WITHIN
    while depth := await asyncio.to_thread(queued_operations, service):
        assert time.monotonic() < deadline, f"{depth} operations still queued"
        await asyncio.sleep(0.1)


async def send_while_held(
    service: ServiceProcess,
    database: TestDatabase,
    wallet: str,
    bodies: Sequence[dict[str, object]],
) -> list[httpx.Response]:
    """POST every body to the wallet's operation endpoint at once, while the test holds
    the wallet's row; answers in the order of `bodies`.

    By construction, not by a guess at how long the requests take to arrive: the first
    two bodies are sent one to each worker (on a kept-alive connection to each), whose
    batch on the wallet then waits for the row (seen in pg_stat_activity); the others,
    each on a connection of its own, arrive behind them and wait in the queues (seen in
    the queue's gauge); the row is released only then. So every request past the first
    two is in its worker's next batch (the service's deadlines are longer than the test
    waits), however the two workers shared them and however slowly they came."""
    pinned: dict[str, httpx.AsyncClient] = {}
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    path = OPERATION_PATH.format(wallet)
    await nothing_queued(service)
    async with AsyncExitStack() as stack:
        for _ in range(200):
            if len(pinned) == 2:
                break
            probe = await stack.enter_async_context(
                httpx.AsyncClient(base_url=service.base_url, timeout=120)
            )
            pinned.setdefault(worker_of(await probe.get("/health/live")), probe)
        assert len(pinned) == 2, "every connection went to one worker"
        fresh = await stack.enter_async_context(
            httpx.AsyncClient(base_url=service.base_url, limits=limits, timeout=120)
        )
        async with holding(database, ROW_LOCK, uuid.UUID(wallet)) as hold:
            first = [
                asyncio.create_task(http.post(path, json=body))
                for http, body in zip(pinned.values(), bodies[:2], strict=True)
            ]
            await hold.blocked(2)  # a batch of one request in each worker, held
            rest = [asyncio.create_task(fresh.post(path, json=body)) for body in bodies[2:]]
            await queued(service, len(rest))
        return await asyncio.gather(*first, *rest)


@pytest.fixture(scope="module")
def held_service(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    """The service as the session's (two workers, coalescing on), but for the timeouts
    that could end a hold of the test's before it releases it."""
    return start_service(**HELD_AS_LONG_AS_NEEDED)


@pytest.fixture
def hot_wallet(client: httpx.Client) -> str:
    return str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])


def transactions_of(database: TestDatabase, wallet: str) -> Counter[int]:
    """How many ledger rows each committing transaction wrote."""
    return Counter(row["txid"] for row in database.ledger(wallet))


def test_queued_operations_are_applied_together_in_one_transaction(
    held_service: ServiceProcess, database: TestDatabase, hot_wallet: str
) -> None:
    responses = asyncio.run(
        send_while_held(held_service, database, hot_wallet, [operation("DEPOSIT", 1)] * 100)
    )
    assert sorted(r.json()["balance"] for r in responses) == list(range(1, 101))
    batch_sizes = transactions_of(database, hot_wallet)
    assert sum(batch_sizes.values()) == 100
    # 98 queued behind the two held: one worker's next batch holds at least 49 of them.
    assert max(batch_sizes.values()) >= 49, batch_sizes


def test_refusals_inside_a_batch_leave_the_others_their_exact_answers(
    held_service: ServiceProcess, database: TestDatabase, client: httpx.Client, hot_wallet: str
) -> None:
    client.post(f"/api/v1/wallets/{hot_wallet}/operation", json=operation("DEPOSIT", 10))
    pattern = [
        operation("WITHDRAW", 1000),  # always refused: the balance never gets near it
        operation("WITHDRAW", 3),  # refused once the balance runs low
        operation("DEPOSIT", "0.5"),
    ]
    # Two deposits first: they are what send_while_held holds in flight.
    bodies = [operation("DEPOSIT", "0.5")] * 2 + list(
        itertools.islice(itertools.cycle(pattern), 150)
    )
    responses = asyncio.run(send_while_held(held_service, database, hot_wallet, bodies))
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


@pytest.fixture(params=["coalesced", "one-transaction-per-operation"], scope="module")
def held_or_uncoalesced(
    request: pytest.FixtureRequest, start_service: Callable[..., ServiceProcess]
) -> ServiceProcess:
    """`held_service`, then the service with coalescing off."""
    if request.param == "coalesced":
        return start_service(**HELD_AS_LONG_AS_NEEDED)
    return start_service(COALESCING_ENABLED="false")


@pytest.mark.usefixtures("poisoned_commits")
def test_a_commit_that_fails_fails_only_the_operation_that_broke_it(
    held_or_uncoalesced: ServiceProcess,
    database: TestDatabase,
    client: httpx.Client,
    hot_wallet: str,
) -> None:
    """The commit fails after every statement succeeded (a deferred constraint): nothing is
    acknowledged before the commit, so its caller gets a 500 and no one else does."""
    any_service = held_or_uncoalesced
    bodies = [operation("DEPOSIT", 1)] * 60
    bodies.insert(30, operation("DEPOSIT", POISON_AMOUNT))
    if is_coalesced(any_service):
        # The poisoned one is certainly in a batch with others (not one of the two held).
        responses = asyncio.run(send_while_held(any_service, database, hot_wallet, bodies))
    else:
        # Each operation commits on its own: nothing here depends on how they arrive.
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
    # One worker, so that which request waits where is certain; one operation a wallet may
    # wait in its queue, and as long as the test needs (no deadline can pass meanwhile).
    return start_service(WORKERS_COUNT="1", COALESCING_QUEUE_LIMIT="1", **HELD_AS_LONG_AS_NEEDED)


@pytest.fixture(scope="module")
def short_deadline_service(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    # One worker; an operation may wait 1 s in its wallet's queue.
    return start_service(
        WORKERS_COUNT="1",
        DB_STATEMENT_TIMEOUT_MS="120000",
        DB_LOCK_TIMEOUT_MS="120000",
        OPERATION_DEADLINE="1",
    )


def test_past_the_queue_limit_callers_get_503_and_nothing_of_theirs_is_applied(
    tightly_bounded_service: ServiceProcess, database: TestDatabase, hot_wallet: str
) -> None:
    """By construction: one operation is in flight, waiting on the test's row lock (seen
    in pg_stat_activity), one waits in the queue (seen in its gauge), and the deadline is
    longer than the test can take: the queue is certainly full when the others come."""
    path = OPERATION_PATH.format(hot_wallet)

    async def scenario() -> tuple[httpx.Response, httpx.Response, list[httpx.Response]]:
        limits = httpx.Limits(max_connections=10)
        async with httpx.AsyncClient(
            base_url=tightly_bounded_service.base_url, limits=limits, timeout=120
        ) as client:

            def post() -> asyncio.Task[httpx.Response]:
                return asyncio.create_task(client.post(path, json=operation("DEPOSIT", 1)))

            await nothing_queued(tightly_bounded_service)
            async with holding(database, ROW_LOCK, uuid.UUID(hot_wallet)) as hold:
                in_flight = post()
                await hold.blocked()  # taken into a batch, which waits for the row
                waiting = post()
                await queued(tightly_bounded_service, 1)  # the queue (limit 1) is full
                overflow = await asyncio.gather(*(post() for _ in range(5)))
            return await in_flight, await waiting, overflow

    applied, waited, overflow = asyncio.run(scenario())
    assert applied.json() == {"status": "success", "balance": 1}
    assert waited.json() == {"status": "success", "balance": 2}
    for response in overflow:
        assert "Too many operations" in str(assert_problem(response, 503, "wallet_busy")["detail"])
        assert int(response.headers["retry-after"]) >= 1
    assert len(assert_ledger_consistent(database, hot_wallet)) == 2


def test_past_the_deadline_a_caller_gets_503_and_nothing_is_applied(
    short_deadline_service: ServiceProcess, database: TestDatabase, hot_wallet: str
) -> None:
    """By construction: the first operation's batch waits on the test's row lock (seen in
    pg_stat_activity), which is held until the second one is answered; the second can
    only wait in the queue (a wallet is in one batch at a time), past its deadline."""
    path = OPERATION_PATH.format(hot_wallet)

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(
            base_url=short_deadline_service.base_url, timeout=120
        ) as client:
            async with holding(database, ROW_LOCK, uuid.UUID(hot_wallet)) as hold:
                in_flight = asyncio.create_task(client.post(path, json=operation("DEPOSIT", 1)))
                await hold.blocked()
                expired = await client.post(path, json=operation("DEPOSIT", 1))
            return await in_flight, expired

    applied, expired = asyncio.run(scenario())
    assert applied.json() == {"status": "success", "balance": 1}
    assert "waited too long" in str(assert_problem(expired, 503, "wallet_busy")["detail"])
    assert int(expired.headers["retry-after"]) >= 1
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
    return start_service(WORKERS_COUNT="1", COALESCING_MAX_IN_FLIGHT="1", **HELD_AS_LONG_AS_NEEDED)


def committed_parts(size: int, poisoned: int) -> list[int]:
    """How many wallets each part that commits holds, when a batch of `size` whole wallets
    whose wallet at `poisoned` (in the batch's order) fails every commit is retried in
    halves (the first `size // 2` wallets, then the rest) until that wallet is alone."""
    if size == 1:
        return []
    middle = size // 2
    if poisoned < middle:
        return [size - middle, *committed_parts(middle, poisoned)]
    return [middle, *committed_parts(size - middle, poisoned - middle)]


def test_operations_on_many_wallets_commit_together_and_a_poisoned_one_fails_alone(
    one_batch_at_a_time: ServiceProcess,
    database: TestDatabase,
    client: httpx.Client,
    poisoned_commits: None,
) -> None:
    """Decided by construction, not by timing: the blocker's batch waits on the test's row
    lock (seen in pg_stat_activity) while every other request arrives and waits in the
    queue (seen in the queue's gauge); only then is the lock released. With one batch in
    flight at a time, the 62 requests then form one batch over 19 wallets, whatever the
    order they arrived in and however slow the machine."""
    wallets = [
        str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"]) for _ in range(20)
    ]
    blocker, poisoned_wallet = wallets[0], wallets[5]
    bodies = [(wallets[n % 19 + 1], operation("DEPOSIT", 1)) for n in range(57)]
    bodies.insert(30, (poisoned_wallet, operation("DEPOSIT", POISON_AMOUNT)))
    refusals = [(wallets[n + 1], operation("WITHDRAW", 100)) for n in range(5)]
    requests = [*bodies, *refusals]
    # The worker first sees the balance of each wallet a refusal is for (a refused
    # withdrawal, which writes nothing). Planned on it, those wallets are written in the
    # batch's first statement as all the others are (a wallet the worker has not seen
    # is planned on a balance at which its withdrawal would apply, and written again in a
    # round of its own): so each try of the batch, or of a half of it, is one transaction.
    with httpx.Client(base_url=one_batch_at_a_time.base_url, timeout=30) as http:
        for wallet, body in refusals:
            refused = http.post(OPERATION_PATH.format(wallet), json=body)
            assert_problem(refused, 400, "insufficient_funds")

    async def scenario() -> tuple[httpx.Response, list[httpx.Response]]:
        limits = httpx.Limits(max_connections=len(requests) + 1, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=one_batch_at_a_time.base_url, limits=limits, timeout=120
        ) as http:
            await nothing_queued(one_batch_at_a_time)
            async with holding(database, ROW_LOCK, uuid.UUID(blocker)) as hold:
                first = asyncio.create_task(
                    http.post(OPERATION_PATH.format(blocker), json=operation("DEPOSIT", 1))
                )
                await hold.blocked()  # the blocker's batch is in flight: no other starts
                posts = [
                    asyncio.create_task(http.post(OPERATION_PATH.format(wallet), json=body))
                    for wallet, body in requests
                ]
                await queued(one_batch_at_a_time, len(requests))  # all of the next batch
            return await first, await asyncio.gather(*posts)

    blocked_answer, responses = asyncio.run(scenario())
    assert blocked_answer.json() == {"status": "success", "balance": 1}
    poisoned = responses[30]
    assert_problem(poisoned, 500, "internal_error")
    others = [r for n, r in enumerate(responses) if n != 30]
    assert [r.status_code for r in others] == [200] * 57 + [400] * 5
    for wallet in wallets:
        assert_ledger_consistent(database, wallet)
    assert sum(len(database.ledger(wallet)) for wallet in wallets) == 58
    # The batch over 19 wallets failed on the poisoned one and was retried in halves of
    # whole wallets (9 and 10, in the order the wallets arrived), each half that does
    # not hold the poisoned wallet committed at once, in one transaction, and the half
    # that does was halved again, down to the poisoned wallet alone (its own requests
    # then split until the poisoned one failed alone). So every other wallet's rows were
    # written by one transaction, shared with no row of the poisoned wallet, and the
    # transactions hold as many wallets as the halving gives for one of the 19 places
    # the poisoned wallet can have had: one of them at least 9.
    transactions = {wallet: {row["txid"] for row in database.ledger(wallet)} for wallet in wallets}
    healthy = [wallet for wallet in wallets[1:] if wallet != poisoned_wallet]
    assert all(len(transactions[wallet]) == 1 for wallet in healthy), transactions
    assert not transactions[poisoned_wallet] & set().union(*(transactions[w] for w in healthy))
    wallets_per_transaction = Counter(min(transactions[wallet]) for wallet in healthy)
    parts = sorted(wallets_per_transaction.values())
    assert parts in [sorted(committed_parts(19, place)) for place in range(19)], parts
    assert max(parts) >= 9
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
            base_url=one_batch_at_a_time.base_url, limits=limits, timeout=120
        ) as http:
            # By construction: the blocker's batch waits on the test's row lock, and both
            # requests wait in the queue behind it, before the lock is released.
            await nothing_queued(one_batch_at_a_time)
            async with holding(database, ROW_LOCK, uuid.UUID(blocker)) as hold:
                held = asyncio.create_task(
                    http.post(f"/api/v1/wallets/{blocker}/operation", json=operation("DEPOSIT", 1))
                )
                await hold.blocked()  # the blocker's batch is in flight, held
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
                await queued(one_batch_at_a_time, 2)  # both queued: they form the next batch
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
    # A statement timeout far longer than the client waits: only the lock timeout can
    # end the wait for a row lock that the test holds until it has every answer.
    return start_service(
        WORKERS_COUNT="1",
        COALESCING_MAX_IN_FLIGHT="1",
        DB_LOCK_TIMEOUT_MS="500",
        DB_STATEMENT_TIMEOUT_MS="120000",
    )


#: The advisory lock that `gated` makes a wallet's writes wait for.
GATE_KEY = 1313


@contextmanager
def gated(database: TestDatabase, wallet: str) -> Iterator[None]:
    """While in the block, a write of a ledger row of `wallet` waits for the advisory lock
    GATE_KEY (when the test holds it) with no lock timeout: a batch held up there is not
    freed by the service's lock_timeout, as one waiting for a row lock would be."""
    database.fetch(
        f"""
        CREATE FUNCTION test_gate() RETURNS trigger LANGUAGE plpgsql SET lock_timeout = 0 AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock_shared({GATE_KEY});
            RETURN NULL;
        END $$
        """
    )
    database.fetch(
        "CREATE TRIGGER test_gate AFTER INSERT ON wallet_operations FOR EACH ROW "
        f"WHEN (NEW.wallet_id = '{uuid.UUID(wallet)}') EXECUTE FUNCTION test_gate()"
    )
    try:
        yield
    finally:
        database.fetch("DROP TRIGGER test_gate ON wallet_operations")
        database.fetch("DROP FUNCTION test_gate()")


def test_a_wallet_held_by_another_transaction_does_not_hold_up_the_others_in_its_batch(
    impatient_for_locks: ServiceProcess, database: TestDatabase, client: httpx.Client
) -> None:
    """Another transaction holds one wallet's row for as long as the test runs. The batch
    that includes it gives up on that lock after DB_LOCK_TIMEOUT_MS and is split: the other
    wallets' operations are applied, the held one's is answered 503 `wallet_busy`, not
    applied.

    By construction: the blocker's batch waits at the gate (seen in pg_stat_activity) until
    the four operations wait in the queue behind it (seen in its gauge), so they form one
    batch; and every answer comes while the held row is still locked (with a statement
    timeout of 120 s, and a client that waits 60 s), so only the lock timeout can have
    freed that batch."""
    held, blocker, *others = (
        str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"]) for _ in range(5)
    )

    async def scenario() -> tuple[httpx.Response, list[httpx.Response]]:
        limits = httpx.Limits(max_connections=5)
        async with httpx.AsyncClient(
            base_url=impatient_for_locks.base_url, limits=limits, timeout=60
        ) as http:

            def deposit(wallet: str) -> asyncio.Task[httpx.Response]:
                path = OPERATION_PATH.format(wallet)
                return asyncio.create_task(http.post(path, json=operation("DEPOSIT", 1)))

            await nothing_queued(impatient_for_locks)
            async with database.row_locked(held):
                async with holding(database, "SELECT pg_advisory_xact_lock($1)", GATE_KEY) as hold:
                    first = deposit(blocker)
                    await hold.blocked()  # the blocker's batch waits at the gate
                    together = [deposit(held), *(deposit(wallet) for wallet in others)]
                    await queued(impatient_for_locks, 4)  # the next batch, all four
                answers = await asyncio.gather(*together)
            return await first, answers

    with gated(database, blocker):
        first, (held_answer, *other_answers) = asyncio.run(scenario())
    assert first.json() == {"status": "success", "balance": 1}
    assert [r.json() for r in other_answers] == [{"status": "success", "balance": 1}] * 3
    problem = assert_problem(held_answer, 503, "wallet_busy")
    assert "Another transaction holds the wallet" in str(problem["detail"])
    assert database.ledger(held) == []
    assert "retrying it in halves" in impatient_for_locks.log_text()
