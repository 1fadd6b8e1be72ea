"""Balance monitors over HTTP, against real PostgreSQL and Gunicorn with 2 workers: the
commit that takes a wallet's available balance across a threshold writes one event, and
none while it stays there; holds count; concurrent debits from both workers cross once;
a monitor is its wallet owner's alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support import EVERY_SCOPE, OPERATION_PATH, TestDatabase, create_key, operation
from wallet_api.devtools.server import ServiceProcess

EVENTS = "/api/v1/events"


@pytest.fixture(scope="module")
def keyed(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service(AUTH_MODE="keys", RATE_LIMIT_RATE="100000", RATE_LIMIT_BURST="100000")


def owner(service: ServiceProcess, database: TestDatabase) -> httpx.Client:
    key = create_key(database, f"monitors-{uuid.uuid4().hex[:12]}", *EVERY_SCOPE)
    return httpx.Client(base_url=service.base_url, timeout=60, headers=key.headers)


def wallet(client: httpx.Client, deposit: object) -> str:
    made = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
    response = client.post(OPERATION_PATH.format(made), json=operation("DEPOSIT", deposit))
    assert response.status_code == 200, response.text
    return made


def monitor(client: httpx.Client, wallet_id: str, condition: str, threshold: object) -> Any:
    response = client.post(
        f"/api/v1/wallets/{wallet_id}/balance_monitors",
        json={"condition": condition, "threshold": threshold},
    )
    assert response.status_code == 201, response.text
    return response.json()


def triggered(client: httpx.Client) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, str | int] = {"type": "balance_monitor.triggered", "limit": 100}
        if after:
            params["after"] = after
        page = client.get(EVENTS, params=params).json()
        events += page["items"]
        if not page["items"]:
            return [event["data"]["monitor"] for event in events]
        after = page["next_cursor"]


def move(client: httpx.Client, wallet_id: str, kind: str, amount: object) -> None:
    response = client.post(OPERATION_PATH.format(wallet_id), json=operation(kind, amount))
    assert response.status_code == 200, response.text


def test_a_crossing_is_one_event_and_staying_across_is_none(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    with owner(keyed, database) as client:
        watched = wallet(client, 10)
        low = monitor(client, watched, "below", 5)
        high = monitor(client, watched, "above", 20)
        assert (low["across"], high["across"]) == (False, False)
        move(client, watched, "WITHDRAW", 3)  # 7: above 5
        move(client, watched, "WITHDRAW", 3)  # 4: below 5, triggered
        move(client, watched, "WITHDRAW", 1)  # 3: still below
        assert [(m["monitor_id"], m["available"]) for m in triggered(client)] == [(low["id"], 4)]
        move(client, watched, "DEPOSIT", 10)  # 13: back above 5 (re-armed), not above 20
        hold = client.post("/api/v1/holds", json={"wallet_uuid": watched, "amount": 9})
        assert hold.status_code == 201  # available 4: below 5 again, by a hold
        move(client, watched, "DEPOSIT", 30)  # available 34: above 20, and back above 5
        crossings = [(m["monitor_id"], m["available"]) for m in triggered(client)]
        assert crossings == [(low["id"], 4), (low["id"], 4), (high["id"], 34)]
        listed = client.get(f"/api/v1/wallets/{watched}/balance_monitors").json()["items"]
        assert [(m["id"], m["across"]) for m in listed] == [(low["id"], False), (high["id"], True)]
        assert (
            client.delete(f"/api/v1/wallets/{watched}/balance_monitors/{high['id']}").status_code
            == 204
        )
        move(client, watched, "DEPOSIT", 1)
        assert len(triggered(client)) == 3


def test_concurrent_debits_from_both_workers_cross_once(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    with owner(keyed, database) as client:
        watched = wallet(client, 100)
        low = monitor(client, watched, "below", 50)
        headers = dict(client.headers)

    async def debit_all() -> list[int]:
        async with httpx.AsyncClient(base_url=keyed.base_url, headers=headers, timeout=60) as http:

            async def one(_: int) -> int:
                response = await http.post(
                    OPERATION_PATH.format(watched), json=operation("WITHDRAW", 1)
                )
                return response.status_code

            return await asyncio.gather(*(one(n) for n in range(80)))

    assert set(asyncio.run(debit_all())) == {200}
    with httpx.Client(base_url=keyed.base_url, headers=headers, timeout=60) as client:
        crossings = triggered(client)
    assert [m["monitor_id"] for m in crossings] == [low["id"]]
    # What the commit that went across left (a batch may hold several of the debits).
    assert 20 <= crossings[0]["available"] < 50


def test_a_monitor_is_its_wallet_owners_alone(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    with owner(keyed, database) as alice, owner(keyed, database) as bob:
        watched = wallet(alice, 10)
        made = monitor(alice, watched, "below", 5)
        path = f"/api/v1/wallets/{watched}/balance_monitors"
        for response in (
            bob.get(path),
            bob.post(path, json={"condition": "below", "threshold": 5}),
            bob.delete(f"{path}/{made['id']}"),
        ):
            assert response.status_code == 404
            assert response.json()["code"] == "wallet_not_found"
        move(alice, watched, "WITHDRAW", 6)
        assert triggered(bob) == []
        for _ in range(9):
            monitor(alice, watched, "above", 100)
        over = alice.post(path, json={"condition": "above", "threshold": 1})
        assert (over.status_code, over.json()["code"]) == (422, "too_many_balance_monitors")
        for bad in ({"condition": "under", "threshold": 5}, {"condition": "below"}, {}):
            assert alice.post(path, json=bad).status_code == 422
