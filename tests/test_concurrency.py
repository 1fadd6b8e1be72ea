"""No lost update and no overdraft under real concurrency: hundreds of simultaneous requests
over real HTTP to Gunicorn with two worker processes, with coalescing on and off."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

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
from wallet_api.core.money import to_minor_units
from wallet_api.devtools.server import ServiceProcess

CONCURRENCY = 300


@pytest.fixture
def any_client(any_service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=any_service.base_url, timeout=30) as client:
        yield client


def new_wallet(client: httpx.Client, deposit: object = None) -> str:
    wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
    if deposit is not None:
        response = client.post(
            f"/api/v1/wallets/{wallet}/operation", json=operation("DEPOSIT", deposit)
        )
        assert response.status_code == 200
    return wallet


def test_concurrent_deposits_each_report_their_own_balance(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    wallet = new_wallet(any_client)
    responses = asyncio.run(
        send_concurrently(any_service.base_url, [(wallet, operation("DEPOSIT", 1))] * CONCURRENCY)
    )
    assert [r.status_code for r in responses] == [200] * CONCURRENCY
    assert sorted(r.json()["balance"] for r in responses) == list(range(1, CONCURRENCY + 1))
    assert any_client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": CONCURRENCY}
    assert len(assert_ledger_consistent(database, wallet)) == CONCURRENCY
    rows_per_transaction = Counter(row["txid"] for row in database.ledger(wallet))
    if is_coalesced(any_service):
        assert max(rows_per_transaction.values()) > 1  # some were applied together
    else:
        assert set(rows_per_transaction.values()) == {1}  # each in a transaction of its own


def test_concurrent_withdrawals_never_overdraw(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    wallet = new_wallet(any_client, deposit=100)
    responses = asyncio.run(
        send_concurrently(any_service.base_url, [(wallet, operation("WITHDRAW", 1))] * CONCURRENCY)
    )
    succeeded = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 400]
    assert len(succeeded) == 100
    assert len(refused) == CONCURRENCY - 100
    assert_refusals_justified(database, wallet, refused)
    assert sorted(r.json()["balance"] for r in succeeded) == list(range(100))
    assert any_client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 0}
    assert len(assert_ledger_consistent(database, wallet)) == 1 + 100


def test_mixed_operations_across_wallets_add_up_to_what_was_acknowledged(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    rng = random.Random(20261126)
    wallets = [new_wallet(any_client, deposit=50) for _ in range(12)]
    requests = [
        (
            rng.choice(wallets),
            operation(rng.choice(["DEPOSIT", "WITHDRAW"]), f"{rng.randint(1, 3000) / 100:.2f}"),
        )
        for _ in range(CONCURRENCY)
    ]
    responses = asyncio.run(send_concurrently(any_service.base_url, requests))

    expected: defaultdict[str, int] = defaultdict(
        lambda: 5000
    )  # minor units, after the opening deposit of 50
    for (wallet, body), response in zip(requests, responses, strict=True):
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            sign = 1 if body["operation"] == "DEPOSIT" else -1
            expected[wallet] += sign * to_minor_units(body["amount"])
        else:
            assert body["operation"] == "WITHDRAW"
            assert_refusals_justified(database, wallet, [response], start=5000)
    for wallet in wallets:
        balance = money(any_client.get(f"/api/v1/wallets/{wallet}").json()["balance"])
        assert balance * 100 == expected[wallet]
        assert_ledger_consistent(database, wallet)
    acknowledged = sum(r.status_code == 200 for r in responses)
    assert sum(len(database.ledger(w)) - 1 for w in wallets) == acknowledged


def test_thousands_of_operations_over_hundreds_of_wallets_add_up_in_both_workers(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    """1,000 single operations and 10 batches of 100 at once, over 200 wallets that both
    workers write (overlapping sets in every batch): no error but justified refusals, no
    deadlock reaching a client, every acknowledged balance the one its ledger row records,
    every final balance what was acknowledged."""
    rng = random.Random(20261128)
    wallets = [new_wallet(any_client, deposit=20) for _ in range(200)]

    def random_operation() -> tuple[str, dict[str, object]]:
        kind = rng.choice(["DEPOSIT", "WITHDRAW"])
        return rng.choice(wallets), operation(kind, rng.choice([1, 5, 12]))

    singles = [random_operation() for _ in range(1000)]
    batches = [[random_operation() for _ in range(100)] for _ in range(10)]

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response]]:
        limits = httpx.Limits(max_connections=1010, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=any_service.base_url, limits=limits, timeout=120
        ) as http:
            single_tasks = [
                asyncio.create_task(http.post(f"/api/v1/wallets/{wallet}/operation", json=body))
                for wallet, body in singles
            ]
            batch_tasks = [
                asyncio.create_task(
                    http.post(
                        "/api/v1/operations/batch",
                        json={"operations": [{"wallet_uuid": w, **b} for w, b in batch]},
                    )
                )
                for batch in batches
            ]
            return await asyncio.gather(*single_tasks), await asyncio.gather(*batch_tasks)

    single_responses, batch_responses = asyncio.run(scenario())
    assert {r.status_code for r in batch_responses} == {200}
    answers: list[tuple[str, dict[str, object], int, dict[str, Any]]] = [
        (wallet, body, r.status_code, r.json())
        for (wallet, body), r in zip(singles, single_responses, strict=True)
    ]
    for batch, response in zip(batches, batch_responses, strict=True):
        for (wallet, body), result in zip(batch, response.json()["results"], strict=True):
            answers.append((wallet, body, result["status"], result["body"]))

    expected = dict.fromkeys(wallets, 2000)  # cents, after the opening deposit
    acknowledged: defaultdict[str, list[int]] = defaultdict(list)
    refused: defaultdict[str, list[httpx.Response]] = defaultdict(list)
    for wallet, body, status, answer in answers:
        assert status in (200, 400), answer
        if status == 200:
            sign = 1 if body["operation"] == "DEPOSIT" else -1
            expected[wallet] += sign * to_minor_units(body["amount"])
            acknowledged[wallet].append(int(money(answer["balance"]) * 100))
        else:
            assert body["operation"] == "WITHDRAW", answer
            refused[wallet].append(httpx.Response(400, json=answer))
    for wallet in wallets:
        ledger = assert_ledger_consistent(database, wallet)
        assert database.stored_balance(wallet) == expected[wallet]
        assert sorted(acknowledged[wallet]) == sorted(ledger[1:])  # a serial history
        assert_refusals_justified(database, wallet, refused[wallet])
