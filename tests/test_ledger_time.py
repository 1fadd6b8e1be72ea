"""A wallet's ledger in time: its balance at a point in time (`GET /api/v1/wallets/{id}?at=`)
equal to replaying its entries up to then, around concurrent commits; its history between
two times and of some kinds, paged while writes go on."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support import (
    OPERATION_PATH,
    TestDatabase,
    batch_made_to_wait,
    deposit_many,
    operation,
    two_owners,
)
from tests.support import created_wallet as created
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess
from wallet_api.posting.entries import CREDIT_KINDS, UNMOVING_KINDS

WALLETS = "/api/v1/wallets"


def every_entry(client: httpx.Client, wallet: str, **filters: Any) -> list[dict[str, Any]]:
    """The wallet's history, newest first, page by page with `filters`."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 100, **filters, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"{WALLETS}/{wallet}/operations", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def change(entry: dict[str, Any]) -> int:
    """What an entry did to its wallet's balance, in cents."""
    cents: int = round(entry["amount"] * 100)
    if entry["operation"] in CREDIT_KINDS:
        return cents
    return 0 if entry["operation"] in UNMOVING_KINDS else -cents


def balance_at(client: httpx.Client, wallet: str, at: datetime) -> httpx.Response:
    return client.get(f"{WALLETS}/{wallet}", params={"at": at.isoformat()})


def test_a_balance_at_a_point_in_time_is_the_ledger_replayed_up_to_it(
    service: ServiceProcess,
) -> None:
    """Writers in several threads (deposits, withdrawals, transfers both ways: the two
    workers' statements over both wallets wait for each other's locks) while nothing is
    read; then, at every entry's time, a microsecond before it and between entries, the
    balance at that time is what the entries dated up to it add up to."""
    with httpx.Client(base_url=service.base_url, timeout=60) as client:
        first = created(client, 500)
        second = created(client, 500)
        before_any = datetime.fromisoformat(
            every_entry(client, first)[-1]["created_at"]
        ) - timedelta(microseconds=1)

        def write(worker: int) -> None:
            with httpx.Client(base_url=service.base_url, timeout=60) as http:
                for n in range(40):
                    wallet, other = (first, second) if (worker + n) % 2 else (second, first)
                    if n % 3 == 0:
                        response = http.post(
                            "/api/v1/transfers",
                            json={"from_wallet_uuid": wallet, "to_wallet_uuid": other, "amount": 1},
                        )
                    else:
                        kind = "DEPOSIT" if n % 3 == 1 else "WITHDRAW"
                        response = http.post(OPERATION_PATH.format(wallet), json=operation(kind, 2))
                    assert response.status_code in {200, 201}, response.text

        threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        for wallet in (first, second):
            entries = every_entry(client, wallet)[::-1]  # oldest first
            times = [datetime.fromisoformat(entry["created_at"]) for entry in entries]
            assert times == sorted(times)  # in time order in the ledger's order
            points = {before_any}
            for at in times:
                points |= {at, at - timedelta(microseconds=1), at + timedelta(microseconds=1)}
            for at in sorted(points):
                replayed = sum(change(e) for e, t in zip(entries, times, strict=True) if t <= at)
                answer = balance_at(client, wallet, at)
                assert answer.status_code == 200, answer.text
                assert round(answer.json()["balance"] * 100) == replayed, at
                assert datetime.fromisoformat(answer.json()["at"]) == at
            now = client.get(f"{WALLETS}/{wallet}").json()["balance"]
            assert balance_at(client, wallet, times[-1]).json()["balance"] == now


def test_a_writer_that_waited_dates_its_entries_after_those_it_waited_behind(
    service: ServiceProcess, database: TestDatabase
) -> None:
    """An atomic batch over wallets A < B < X begins, locks A and waits for B; a deposit
    to X begins later and commits first. The batch's entry on X follows the deposit's in
    X's ledger: it is dated no earlier than the deposit, not at the batch's earlier start
    (X's balance at that start would otherwise be the one after both entries)."""
    with httpx.Client(base_url=service.base_url, timeout=60) as client:
        a, b, x = sorted(created(client) for _ in range(3))

        def deposit() -> None:
            time.sleep(0.05)  # the deposit's transaction begins after the batch's
            ok = client.post(OPERATION_PATH.format(x), json=operation("DEPOSIT", 2))
            assert ok.status_code == 200, ok.text

        batch = asyncio.run(batch_made_to_wait(client, database, (a, b, x), deposit))
        assert batch.status_code == 200, batch.text
        entries = every_entry(client, x)[::-1]
        assert [e["amount"] for e in entries] == [2, 1]
        times = [datetime.fromisoformat(e["created_at"]) for e in entries]
        assert times == sorted(times)
        for at in (*times, *(t - timedelta(microseconds=1) for t in times)):
            replayed = sum(change(e) for e, t in zip(entries, times, strict=True) if t <= at)
            assert round(balance_at(client, x, at).json()["balance"] * 100) == replayed


def test_a_balance_at_a_time_refuses_what_it_cannot_know(client: httpx.Client, wallet: str) -> None:
    assert client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 3)).is_success
    answer = balance_at(client, wallet, datetime.now().astimezone() - timedelta(days=1))
    assert answer.status_code == 200
    assert answer.json()["balance"] == 0  # before its first entry
    later = balance_at(client, wallet, datetime.now().astimezone() + timedelta(minutes=5))
    assert_problem(later, 422, "time_in_the_future")
    naive = client.get(f"{WALLETS}/{wallet}", params={"at": "2026-12-01T00:00:00"})
    assert_problem(naive, 422, "validation_error")
    unknown = balance_at(client, str(uuid.uuid4()), datetime.now().astimezone())
    assert_problem(unknown, 404, "wallet_not_found")
    # Without `at`, the answer is the specification's, unchanged.
    assert client.get(f"{WALLETS}/{wallet}").json() == {"balance": 3}


def test_another_owners_wallet_at_a_time_is_not_found(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    keyed = start_service(AUTH_MODE="keys")
    with two_owners(keyed, database) as (owner, other):
        wallet = created(owner, 7)
        now = datetime.now().astimezone()
        assert balance_at(owner, wallet, now).json()["balance"] == 7
        assert_problem(balance_at(other, wallet, now), 404, "wallet_not_found")
        history = other.get(f"{WALLETS}/{wallet}/operations", params={"operation": "DEPOSIT"})
        assert_problem(history, 404, "wallet_not_found")


def test_history_filtered_by_kind_and_time_pages_without_gaps_while_writes_go_on(
    service: ServiceProcess,
) -> None:
    with httpx.Client(base_url=service.base_url, timeout=60) as client:
        wallet = created(client, 1000)
        for n in range(60):
            kind = "WITHDRAW" if n % 4 == 0 else "DEPOSIT"
            ok = client.post(OPERATION_PATH.format(wallet), json=operation(kind, n + 1))
            assert ok.status_code == 200, ok.text
        everything = every_entry(client, wallet)
        withdrawn = sorted(
            datetime.fromisoformat(e["created_at"])
            for e in everything
            if e["operation"] == "WITHDRAW"
        )
        since, until = withdrawn[2], withdrawn[-3]  # both bounds on an entry of the kind
        expected = [
            e
            for e in everything
            if e["operation"] == "WITHDRAW"
            and since <= datetime.fromisoformat(e["created_at"]) < until
        ]
        assert len(expected) == len(withdrawn) - 5
        stop = threading.Event()

        def keep_writing() -> None:
            with httpx.Client(base_url=service.base_url, timeout=60) as http:
                while not stop.is_set():
                    http.post(OPERATION_PATH.format(wallet), json=operation("WITHDRAW", 1))

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            seen: list[dict[str, Any]] = []
            cursor = None
            while True:
                params: dict[str, Any] = {
                    "limit": 2,
                    "operation": "WITHDRAW",
                    "from": since.isoformat(),
                    "to": until.isoformat(),
                    **({"cursor": cursor} if cursor else {}),
                }
                page = client.get(f"{WALLETS}/{wallet}/operations", params=params).json()
                seen += page["items"]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
        finally:
            stop.set()
            writer.join()
        # Several kinds at once, and a time bound alone.
        both = every_entry(client, wallet, operation=["WITHDRAW", "DEPOSIT"], to=until.isoformat())
    assert seen == expected
    assert both == [e for e in everything if datetime.fromisoformat(e["created_at"]) < until]


def test_a_page_of_a_rare_kind_examines_a_bounded_part_of_the_ledger(
    client: httpx.Client, wallet: str
) -> None:
    """One withdrawal under 2,500 deposits: the first page of withdrawals examines 2,000
    entries and is empty, with a cursor; the next finds it."""
    assert client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 5)).is_success
    assert client.post(OPERATION_PATH.format(wallet), json=operation("WITHDRAW", 1)).is_success
    deposit_many(client, wallet, 3)
    path = f"{WALLETS}/{wallet}/operations"
    first = client.get(path, params={"operation": "WITHDRAW"}).json()
    assert first["items"] == []
    assert first["next_cursor"] is not None
    second = client.get(path, params={"operation": "WITHDRAW", "cursor": first["next_cursor"]})
    assert [item["operation"] for item in second.json()["items"]] == ["WITHDRAW"]
    assert second.json()["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"operation": "LOAN"},
        {"from": "yesterday"},
        {"to": "2026-12-01T00:00:00"},  # no offset
        {"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"},  # backwards
    ],
)
def test_history_filters_that_are_not_valid_are_422(
    client: httpx.Client, wallet: str, params: dict[str, str]
) -> None:
    response = client.get(f"{WALLETS}/{wallet}/operations", params=params)
    assert_problem(response, 422, "validation_error")


def test_a_cursor_naming_another_wallets_entry_tells_nothing_of_it(
    client: httpx.Client, wallet: str
) -> None:
    """A page starts below its cursor's entry in time: one of another wallet's entries
    (not a cursor this wallet's pages hand out) is not looked up, and the page is the
    first one, so its answer cannot tell when that entry was written."""
    other = created(client)
    for amount in (1, 2):
        assert client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", amount))
    assert client.post(OPERATION_PATH.format(other), json=operation("DEPOSIT", 9)).is_success
    for amount in (3, 4):
        assert client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", amount))
    (foreign,) = every_entry(client, other)
    path = f"{WALLETS}/{wallet}/operations"
    crafted = client.get(path, params={"cursor": f"{foreign['id']:x}"}).json()
    assert crafted == client.get(path).json()
    assert [item["amount"] for item in crafted["items"]] == [4, 3, 2, 1]
