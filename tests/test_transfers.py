"""Transfers, `POST /api/v1/transfers`: both legs or neither, refusals that change nothing,
Idempotency-Key, and no lost update, deadlock or 5xx under opposing concurrent transfers
from both workers. Coalescing on and off."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.support import (
    OPERATION_PATH,
    TestDatabase,
    assert_ledger_consistent,
    money,
    operation,
    worker_of,
)
from tests.test_verifier import verify
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess

TRANSFERS = "/api/v1/transfers"


@pytest.fixture
def any_client(any_service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=any_service.base_url, timeout=60) as client:
        yield client


def new_wallet(client: httpx.Client, balance: object = 0) -> str:
    wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
    if balance:
        response = client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", balance))
        assert response.status_code == 200, response.text
    return wallet


def transfer(source: str, destination: str, amount: object, **extra: object) -> dict[str, Any]:
    return {"from_wallet_uuid": source, "to_wallet_uuid": destination, "amount": amount, **extra}


def balance(client: httpx.Client, wallet: str) -> Decimal:
    return money(client.get(f"/api/v1/wallets/{wallet}").json()["balance"])


def ledger_rows(database: TestDatabase) -> int:
    return int(database.fetch("SELECT count(*) FROM wallet_operations")[0][0])


def test_a_transfer_moves_the_amount_and_answers_both_balances(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    source, destination = new_wallet(any_client, 100), new_wallet(any_client, 5)
    response = any_client.post(
        TRANSFERS, json=transfer(source, destination, "30.25", description="order 42")
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"{TRANSFERS}/{body['transfer_id']}"
    assert body["from_wallet_uuid"] == source
    assert body["to_wallet_uuid"] == destination
    assert money(body["amount"]) == Decimal("30.25")
    assert body["description"] == "order 42"
    assert money(body["from_balance"]) == Decimal("69.75")
    assert money(body["to_balance"]) == Decimal("35.25")
    assert body["reversal"] is None
    assert balance(any_client, source) == Decimal("69.75")
    assert balance(any_client, destination) == Decimal("35.25")

    assert any_client.get(response.headers["location"]).json() == body
    legs = database.fetch(
        "SELECT wallet_id, operation, amount, balance_after, counterparty_wallet_id, "
        "description, created_at FROM wallet_operations WHERE transfer_id = $1 ORDER BY id",
        uuid.UUID(body["transfer_id"]),
    )
    assert [(str(r[0]), r[1], r[2], r[3], str(r[4]), r[5]) for r in legs] == [
        (source, "TRANSFER_OUT", 3025, 6975, destination, "order 42"),
        (destination, "TRANSFER_IN", 3025, 3525, source, "order 42"),
    ]
    assert legs[0]["created_at"] == legs[1]["created_at"]  # one transaction
    history = any_client.get(f"/api/v1/wallets/{destination}/operations").json()["items"]
    assert history[0] | {"id": 0, "created_at": ""} == {
        "id": 0,
        "operation": "TRANSFER_IN",
        "amount": 30.25,
        "balance_after": 35.25,
        "created_at": "",
        "transfer_id": body["transfer_id"],
        "counterparty_wallet_uuid": source,
        "description": "order 42",
    }
    assert_ledger_consistent(database, source)
    assert_ledger_consistent(database, destination)


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("more than the source holds", 400, "insufficient_funds"),
        ("past the destination's limit", 400, "balance_limit_exceeded"),
        ("unknown source", 404, "wallet_not_found"),
        ("unknown destination", 404, "wallet_not_found"),
        ("both unknown", 404, "wallet_not_found"),
        ("to itself", 422, "validation_error"),
        ("zero", 422, "validation_error"),
        ("three decimals", 422, "validation_error"),
        ("an exponent", 422, "validation_error"),
        ("a malformed wallet id", 422, "validation_error"),
        ("no amount", 422, "validation_error"),
        ("an unknown field", 422, "validation_error"),
        ("a description too long", 422, "validation_error"),
        ("a NUL in the description", 422, "validation_error"),
    ],
)
def test_a_refused_transfer_changes_nothing(
    any_client: httpx.Client, database: TestDatabase, case: str, status: int, code: str
) -> None:
    source, destination = new_wallet(any_client, 10), new_wallet(any_client, 1)
    unknown = str(uuid.uuid4())
    body: dict[str, Any] = {
        "more than the source holds": transfer(source, destination, "10.01"),
        "past the destination's limit": transfer(source, destination, 1),
        "unknown source": transfer(unknown, destination, 1),
        "unknown destination": transfer(source, unknown, 1),
        "both unknown": transfer(unknown, str(uuid.uuid4()), 1),
        "to itself": transfer(source, source, 1),
        "zero": transfer(source, destination, 0),
        "three decimals": transfer(source, destination, "1.001"),
        "an exponent": transfer(source, destination, "1e1"),
        "a malformed wallet id": transfer(source, destination.replace("-", ""), 1),
        "no amount": {"from_wallet_uuid": source, "to_wallet_uuid": destination},
        "an unknown field": transfer(source, destination, 1, currency="EUR"),
        "a description too long": transfer(source, destination, 1, description="x" * 501),
        "a NUL in the description": transfer(source, destination, 1, description="a\u0000b"),
    }[case]
    if case == "past the destination's limit":
        top_up = operation("DEPOSIT", "9999999999998.99")
        assert any_client.post(OPERATION_PATH.format(destination), json=top_up).status_code == 200
    before = (balance(any_client, source), balance(any_client, destination), ledger_rows(database))

    response = any_client.post(TRANSFERS, json=body)
    assert_problem(response, status, code)
    detail = response.json()["detail"]
    if case in {"unknown source", "both unknown"}:
        assert detail == f"The source wallet {unknown} does not exist."
    if case == "unknown destination":
        assert detail == f"The destination wallet {unknown} does not exist."
    if code == "insufficient_funds":
        assert detail == f"Cannot transfer 10.01 from wallet {source}: its balance is 10."
    if code == "balance_limit_exceeded":
        assert destination in detail
    after = (balance(any_client, source), balance(any_client, destination), ledger_rows(database))
    assert after == before


def test_an_idempotency_key_replays_the_transfer_and_its_refusal(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    source, destination = new_wallet(any_client, 10), new_wallet(any_client)
    key = f"transfer-{uuid.uuid4()}"
    first = any_client.post(
        TRANSFERS, json=transfer(source, destination, 4), headers={"Idempotency-Key": key}
    )
    again = any_client.post(
        TRANSFERS, json=transfer(source, destination, 4), headers={"Idempotency-Key": key}
    )
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    # The replay names the created transfer as the first answer did.
    location = f"{TRANSFERS}/{first.json()['transfer_id']}"
    assert first.headers["location"] == again.headers["location"] == location
    assert balance(any_client, source) == 6
    assert len(database.ledger(source)) == 2  # the deposit and one leg
    # The key is the payer's: on its leg, not in the payee's history.
    keys = database.fetch(
        "SELECT wallet_id, idempotency_key FROM wallet_operations WHERE transfer_id = $1",
        uuid.UUID(first.json()["transfer_id"]),
    )
    assert {str(row[0]): row[1] for row in keys} == {source: key, destination: None}

    other = any_client.post(
        TRANSFERS, json=transfer(source, destination, 5), headers={"Idempotency-Key": key}
    )
    assert_problem(other, 422, "idempotency_key_reused")

    refused_key = f"refused-{uuid.uuid4()}"
    refused = any_client.post(
        TRANSFERS, json=transfer(source, destination, 7), headers={"Idempotency-Key": refused_key}
    )
    assert_problem(refused, 400, "insufficient_funds")
    any_client.post(OPERATION_PATH.format(source), json=operation("DEPOSIT", 100))
    replayed = any_client.post(
        TRANSFERS, json=transfer(source, destination, 7), headers={"Idempotency-Key": refused_key}
    )
    assert replayed.status_code == 400  # the first outcome, though funds now suffice
    assert replayed.json()["detail"] == refused.json()["detail"]
    assert balance(any_client, source) == 106


def test_an_unknown_transfer_is_a_404(any_client: httpx.Client) -> None:
    assert_problem(any_client.get(f"{TRANSFERS}/{uuid.uuid4()}"), 404, "transfer_not_found")
    assert_problem(any_client.get(f"{TRANSFERS}/not-a-uuid"), 422, "validation_error")


async def _race(base_url: str, requests: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    """Send every (path, body) at once, each on a connection of its own (so both workers
    take part), in a shuffled order."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        return await asyncio.gather(*(client.post(path, json=body) for path, body in requests))


def test_opposing_concurrent_transfers_conserve_money_and_answer_a_serial_history(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    """Hundreds of transfers in both directions between a handful of wallets, with
    deposits and withdrawals on the same wallets, from many connections at once: no 5xx
    (no deadlock reaches a client), money conserved (the wallets hold what they started
    with plus the acknowledged deposits minus the acknowledged withdrawals), no negative
    balance, and each answered balance is the one its ledger row records (the answers form
    the wallets' serial history)."""
    rng = random.Random(7)
    wallets = [new_wallet(any_client, 50) for _ in range(5)]
    requests: list[tuple[str, dict[str, Any]]] = []
    for _ in range(400):
        source, destination = rng.sample(wallets, 2)
        requests.append((TRANSFERS, transfer(source, destination, rng.randint(1, 30))))
    for _ in range(100):
        kind = rng.choice(["DEPOSIT", "WITHDRAW"])
        wallet = rng.choice(wallets)
        requests.append((OPERATION_PATH.format(wallet), operation(kind, rng.randint(1, 20))))
    rng.shuffle(requests)

    responses = asyncio.run(_race(any_service.base_url, requests))

    assert all(r.status_code < 500 for r in responses), [
        r.text for r in responses if r.status_code >= 500
    ]
    expected = Decimal(50 * len(wallets))
    moved = refused = 0
    for (path, body), response in zip(requests, responses, strict=True):
        if path == TRANSFERS:
            if response.status_code == 201:
                moved += 1
                answer = response.json()
                legs = database.fetch(
                    "SELECT operation, balance_after FROM wallet_operations WHERE transfer_id = $1",
                    uuid.UUID(answer["transfer_id"]),
                )
                recorded = {row[0]: Decimal(row[1]) / 100 for row in legs}
                assert recorded == {
                    "TRANSFER_OUT": money(answer["from_balance"]),
                    "TRANSFER_IN": money(answer["to_balance"]),
                }
            else:
                refused += 1
                assert response.json()["code"] == "insufficient_funds", response.text
        elif response.status_code == 200:
            sign = 1 if body["operation"] == "DEPOSIT" else -1
            expected += sign * Decimal(body["amount"])
        else:
            assert response.json()["code"] == "insufficient_funds", response.text
    assert moved > 100, moved
    assert refused > 0
    assert sum(balance(any_client, wallet) for wallet in wallets) == expected
    for wallet in wallets:
        assert_ledger_consistent(database, wallet, start=0)
    report = verify(database)
    assert report.returncode == 0, report.stdout + report.stderr


def test_one_keyed_transfer_sent_many_times_at_once_moves_money_once(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    """The same transfer with the same key sent many times at once, in each worker queued
    behind a transfer from the same wallet that waits on its row lock: the repeats gather
    into one batch per worker (a key repeated in a batch is answered from its first use;
    one stored meanwhile by the other worker makes the batch run again and replay it).
    One keyed transfer, and every answer is its body."""
    source, destination = new_wallet(any_client, 100), new_wallet(any_client)
    key = f"once-{uuid.uuid4()}"
    body = transfer(source, destination, 7)

    async def send_all() -> tuple[list[httpx.Response], list[httpx.Response]]:
        clients: list[httpx.AsyncClient] = []
        by_worker: dict[str, list[httpx.AsyncClient]] = {}
        try:
            for _ in range(200):  # kept-alive connections, up to 12 with each worker
                if len(by_worker) == 2 and all(len(c) >= 12 for c in by_worker.values()):
                    break
                client = httpx.AsyncClient(
                    base_url=any_service.base_url,
                    limits=httpx.Limits(max_connections=1),
                    timeout=60,
                )
                clients.append(client)
                worker = worker_of(await client.get("/health/live"))
                if len(by_worker.setdefault(worker, [])) < 12:
                    by_worker[worker].append(client)
            assert len(by_worker) == 2
            assert all(len(c) >= 3 for c in by_worker.values())
            async with database.row_locked(source):
                blockers = [
                    asyncio.create_task(c[0].post(TRANSFERS, json=transfer(source, destination, 1)))
                    for c in by_worker.values()
                ]
                await asyncio.sleep(0.3)  # each worker's lane for the source is now busy
                keyed = [
                    asyncio.create_task(
                        client.post(TRANSFERS, json=body, headers={"Idempotency-Key": key})
                    )
                    for c in by_worker.values()
                    for client in c[1:]
                ]
                await asyncio.sleep(0.5)  # well within the operation deadline (5 s)
            return await asyncio.gather(*blockers), await asyncio.gather(*keyed)
        finally:
            await asyncio.gather(*(client.aclose() for client in clients))

    blocked, responses = asyncio.run(send_all())
    assert [r.status_code for r in blocked] == [201, 201], [r.text for r in blocked]
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.text for r in responses}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
    # Replayed from the store or from the first use in the same batch: the same Location.
    location = f"{TRANSFERS}/{responses[0].json()['transfer_id']}"
    assert {r.headers.get("location") for r in responses} == {location}
    assert (balance(any_client, source), balance(any_client, destination)) == (
        Decimal(91),
        Decimal(9),
    )
    assert len(database.ledger(destination)) == 3


@pytest.mark.parametrize(
    "change", ["another description", "no description", "another payee", "another payer"]
)
def test_a_transfer_key_sent_with_another_transfer_is_refused_and_changes_nothing(
    any_client: httpx.Client, database: TestDatabase, change: str
) -> None:
    """A keyed transfer's fingerprint covers both wallets, the amount and the description:
    the key sent again with any of them changed (the amount alone is changed above) is a
    422 `idempotency_key_reused`, never the first transfer's replay, and moves nothing; the
    first request sent again is still its replay."""
    source, destination = new_wallet(any_client, 10), new_wallet(any_client)
    other_source, other_destination = new_wallet(any_client, 10), new_wallet(any_client)
    key = f"transfer-{uuid.uuid4()}"
    body = transfer(source, destination, 4, description="order 1")
    other = {
        "another description": {**body, "description": "order 2"},
        "no description": transfer(source, destination, 4),
        "another payee": {**body, "to_wallet_uuid": other_destination},
        "another payer": {**body, "from_wallet_uuid": other_source},
    }[change]
    first = any_client.post(TRANSFERS, json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text

    def state() -> list[object]:
        wallets = (source, destination, other_source, other_destination)
        kept = database.fetch(
            "SELECT fingerprint, response_status, response_body FROM idempotency_keys "
            "WHERE key = $1",
            key,
        )
        return [*((database.stored_balance(w), database.ledger(w)) for w in wallets), kept]

    before = state()
    reused = any_client.post(TRANSFERS, json=other, headers={"Idempotency-Key": key})
    assert_problem(reused, 422, "idempotency_key_reused")
    assert "idempotent-replayed" not in reused.headers
    assert state() == before
    assert [database.stored_balance(w) for w in (source, destination)] == [600, 400]

    again = any_client.post(TRANSFERS, json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert state() == before


@pytest.mark.parametrize("side", ["source", "destination"])
def test_a_keyed_transfers_404_is_replayed_after_the_wallet_exists(
    any_client: httpx.Client, database: TestDatabase, side: str
) -> None:
    """A keyed transfer naming a wallet that does not exist is refused 404
    `wallet_not_found`, and that answer is kept under its key: once a wallet with that id
    exists (inserted in SQL: no client can choose a new wallet's id) and holds enough, the
    same request with the same key still gets the stored 404, `Idempotent-Replayed: true`,
    and moves nothing, though the transfer sent without the key now goes through."""
    known, missing = new_wallet(any_client, 10), str(uuid.uuid4())
    body = transfer(missing, known, 4) if side == "source" else transfer(known, missing, 4)
    key = {"Idempotency-Key": f"missing-{uuid.uuid4()}"}
    refused = any_client.post(TRANSFERS, json=body, headers=key)
    problem = assert_problem(refused, 404, "wallet_not_found")
    assert problem["detail"] == f"The {side} wallet {missing} does not exist."
    assert "idempotent-replayed" not in refused.headers

    database.fetch(
        "INSERT INTO wallets (id, currency, currency_exponent) VALUES ($1, 'USD', 2)",
        uuid.UUID(missing),
    )
    deposited = any_client.post(OPERATION_PATH.format(missing), json=operation("DEPOSIT", 10))
    assert deposited.status_code == 200, deposited.text  # it exists, and could pay
    before = [(database.stored_balance(w), database.ledger(w)) for w in (known, missing)]
    replayed = any_client.post(TRANSFERS, json=body, headers=key)
    assert replayed.status_code == 404
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == {k: v for k, v in problem.items() if k != "request_id"}
    assert [(database.stored_balance(w), database.ledger(w)) for w in (known, missing)] == before

    # Not what the request would get now: without the key, it moves the money.
    applied = any_client.post(TRANSFERS, json=body)
    assert applied.status_code == 201, applied.text
