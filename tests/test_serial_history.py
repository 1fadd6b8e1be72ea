"""Every answer is the one a serial history gives: sequential requests get exactly the
answers of applying them one at a time, whichever worker serves each; concurrent ones lose
no update, every acknowledged balance is one the ledger records, and every refusal was
judged on a balance the wallet really held. With coalescing on and off."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import (
    OPERATION_PATH,
    TestDatabase,
    assert_ledger_consistent,
    assert_refusals_justified,
    money,
    operation,
    worker_of,
)
from wallet_api.core.money import format_minor_units, to_minor_units
from wallet_api.devtools.server import ServiceProcess

#: (wallet, JSON body, Idempotency-Key or None)
Keyed = tuple[str, dict[str, object], str | None]


@pytest.fixture
def any_client(any_service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=any_service.base_url, timeout=30) as client:
        yield client


def new_wallet(client: httpx.Client) -> str:
    return str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])


def test_sequential_requests_on_new_connections_get_exactly_the_serial_answers(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    """Each request on a connection of its own, so that both workers serve them and each
    meets balances the other one wrote: a refusal judged on what a worker last saw,
    instead of the current balance, shows here as an answer the serial history does not
    give."""
    rng = random.Random(20261128)
    wallet = new_wallet(any_client)
    balance = 0  # cents, applying each request as the service must
    workers: Counter[str] = Counter()
    for sent in itertools.count():
        if sent >= 80 and min(workers.values(), default=0) >= 10 and len(workers) == 2:
            break
        assert sent < 600, f"requests did not reach both workers: {workers}"
        kind = rng.choice(["DEPOSIT", "WITHDRAW", "WITHDRAW"])
        amount = rng.choice([1, 2, 5, 10])
        # Half of them keyed: a keyed refusal is stored, so it must be judged on the
        # balance it is written on, as an unkeyed one on the balance it is read on.
        key = {"Idempotency-Key": f"serial-{uuid.uuid4()}"} if rng.random() < 0.5 else None
        with httpx.Client(base_url=any_service.base_url, timeout=30) as one_off:
            response = one_off.post(
                OPERATION_PATH.format(wallet), json=operation(kind, amount), headers=key
            )
        workers[worker_of(response)] += 1
        if kind == "DEPOSIT" or amount * 100 <= balance:
            balance += amount * 100 if kind == "DEPOSIT" else -amount * 100
            assert response.status_code == 200, (kind, amount, balance, response.text)
            assert money(response.json()["balance"]) * 100 == balance
        else:
            assert response.status_code == 400, (kind, amount, balance, response.text)
            assert response.json()["detail"] == (
                f"Cannot withdraw {amount}: the balance is {format_minor_units(balance)}."
            )
            assert_refusals_justified(database, wallet, [response])
    assert database.stored_balance(wallet) == balance
    assert_ledger_consistent(database, wallet)


def connections_to_both_workers(service: ServiceProcess) -> list[httpx.Client]:
    """Two kept-alive connections, one to each worker: what each serves is known."""
    kept: dict[str, httpx.Client] = {}
    for _ in range(400):
        client = httpx.Client(base_url=service.base_url, timeout=30)
        worker = worker_of(client.get("/health/live"))
        if worker in kept:
            client.close()
        else:
            kept[worker] = client
        if len(kept) == 2:
            return list(kept.values())
    for client in kept.values():
        client.close()
    pytest.fail("new connections never reached both workers")


def test_a_refusal_is_judged_on_the_balance_the_other_worker_left(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    """By construction: worker A writes the wallet (and so knows its balance), worker B
    then raises it, and A is asked for a withdrawal its own last balance could not bear
    but the wallet now can: it is applied. A refusal judged on what A last saw would
    answer 400 with a balance the wallet no longer held."""
    first, second = connections_to_both_workers(any_service)
    try:
        wallet = new_wallet(any_client)
        path = OPERATION_PATH.format(wallet)
        assert first.post(path, json=operation("DEPOSIT", 10)).json()["balance"] == 10
        assert second.post(path, json=operation("DEPOSIT", 10)).json()["balance"] == 20
        response = first.post(path, json=operation("WITHDRAW", 15))
        assert (response.status_code, response.json().get("balance")) == (200, 5), response.text
        refused = second.post(path, json=operation("WITHDRAW", 6))  # B last saw 20: now 5
        assert refused.status_code == 400, refused.text
        assert refused.json()["detail"] == "Cannot withdraw 6: the balance is 5."
    finally:
        first.close()
        second.close()
    assert_ledger_consistent(database, wallet)


def test_keyed_refusals_racing_deposits_lose_no_update(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    """A batch that holds a keyed refusal is written on the exact balance it was planned on
    (the stored refusal quotes it). Racing deposits from the other worker move that balance:
    the write must then change nothing and be planned again, never overwrite them."""
    wallet = new_wallet(any_client)
    deposits: list[Keyed] = [(wallet, operation("DEPOSIT", 1), None)] * 300
    refusals: list[Keyed] = [
        (wallet, operation("WITHDRAW", 1000), f"over-{uuid.uuid4()}") for _ in range(100)
    ]
    requests = deposits + refusals
    random.Random(7).shuffle(requests)
    responses = asyncio.run(send_keyed(any_service.base_url, requests))

    refused = [r for r in responses if r.status_code == 400]
    assert [r.status_code for r in responses if r.status_code != 400] == [200] * 300
    assert len(refused) == 100
    assert_refusals_justified(database, wallet, refused)
    ledger = assert_ledger_consistent(database, wallet)
    assert ledger == list(range(100, 30001, 100))
    assert database.stored_balance(wallet) == 30000
    acknowledged = sorted(
        to_minor_units(str(r.json()["balance"])) for r in responses if r.status_code == 200
    )
    assert acknowledged == ledger  # each acknowledged balance is the one its row records
    assert any_client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 300}
    # Each refusal's key replays the very answer it got, the balance it quoted included:
    # the response kept with the key is the one judged on the balance the write found.
    answered: dict[str | None, Any] = {
        key: r.json() for (_, _, key), r in zip(requests, responses, strict=True) if key
    }
    replays = asyncio.run(send_keyed(any_service.base_url, refusals))
    assert [r.headers.get("Idempotent-Replayed") for r in replays] == ["true"] * 100
    for (_, _, key), replayed in zip(refusals, replays, strict=True):
        assert replayed.json()["detail"] == answered[key]["detail"]


async def send_keyed(base_url: str, requests: list[Keyed]) -> list[httpx.Response]:
    """POST every request at once, one connection each, with its Idempotency-Key if any."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    OPERATION_PATH.format(wallet),
                    json=body,
                    headers={"Idempotency-Key": key} if key else None,
                )
                for wallet, body, key in requests
            )
        )
