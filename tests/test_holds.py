"""Holds over HTTP, against real PostgreSQL and Gunicorn with 2 workers: money set aside
(the available balance falls, the balance does not), captured in whole or in part (out of
the service or into a payee), voided, expired by the database's clock with or without the
sweep; concurrent captures, voids and withdrawals that never take more than was held or
overdraw what is available. Coalescing on and off."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.support import (
    EVERY_SCOPE,
    OPERATION_PATH,
    Key,
    TestDatabase,
    create_key,
    launch_service,
    migrated,
    money,
    operation,
)
from tests.test_serial_history import connections_to_both_workers
from tests.test_transfers import any_client, new_wallet
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess

HOLDS = "/api/v1/holds"
#: The fixture shared with the transfer tests: a client of `any_service`.
__all__ = ["any_client"]


def hold(client: httpx.Client, wallet: str, amount: object, **extra: object) -> httpx.Response:
    return client.post(HOLDS, json={"wallet_uuid": wallet, "amount": amount, **extra})


def held(client: httpx.Client, wallet: str, amount: object, **extra: object) -> dict[str, Any]:
    response = hold(client, wallet, amount, **extra)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


#: A wallet's balance, held and available amounts (Decimals, compared with ints too).
Figures = tuple[Any, ...]


def balances(client: httpx.Client, wallet: str) -> Figures:
    body = client.get(f"/api/v1/wallets/{wallet}/balances").json()
    return money(body["balance"]), money(body["held"]), money(body["available"])


def ledger(database: TestDatabase, hold_id: str) -> list[tuple[str, int]]:
    rows = database.fetch(
        "SELECT operation, amount FROM wallet_operations WHERE hold_id = $1 ORDER BY id",
        uuid.UUID(hold_id),
    )
    return [(row["operation"], row["amount"]) for row in rows]


def test_a_hold_sets_money_aside_the_balance_stays_and_debits_are_judged_on_the_rest(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    wallet = new_wallet(any_client, 100)
    response = hold(any_client, wallet, 30, expires_in=3600, description="ride 7731")
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"] == f"{HOLDS}/{body['hold_id']}"
    assert {k: body[k] for k in ("wallet_uuid", "status", "amount", "held", "captured")} == {
        "wallet_uuid": wallet,
        "status": "active",
        "amount": 30,
        "held": 30,
        "captured": 0,
    }
    assert body["balances"] == {"balance": 100, "held": 30, "available": 70}
    assert body["description"] == "ride 7731"
    # The specification's answer is the ledger's balance, exactly as before.
    assert any_client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 100}
    assert balances(any_client, wallet) == (100, 30, 70)
    # A withdrawal is judged on what is available, and says so.
    refused = any_client.post(OPERATION_PATH.format(wallet), json=operation("WITHDRAW", 71))
    assert_problem(refused, 400, "insufficient_funds")
    assert refused.json()["detail"] == "Cannot withdraw 71: the balance is 70."
    applied = any_client.post(OPERATION_PATH.format(wallet), json=operation("WITHDRAW", 70))
    assert applied.json() == {"status": "success", "balance": 30}
    # A second hold too: nothing is available now.
    short = hold(any_client, wallet, "0.01")
    assert_problem(short, 400, "insufficient_funds")
    assert short.json()["detail"] == (
        f"Cannot hold 0.01 on wallet {wallet}: its available balance is 0."
    )
    assert ledger(database, body["hold_id"]) == [("HOLD", 3000)]
    history = any_client.get(f"/api/v1/wallets/{wallet}/operations").json()["items"]
    assert history[1]["operation"] == "HOLD"
    assert history[1]["hold_id"] == body["hold_id"]
    assert money(history[1]["balance_after"]) == 100


def test_a_final_capture_takes_what_it_names_into_a_payee_and_releases_the_rest(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    wallet, seller = new_wallet(any_client, 100), new_wallet(any_client)
    hold_id = held(any_client, wallet, 30)["hold_id"]
    response = any_client.post(
        f"{HOLDS}/{hold_id}/capture", json={"amount": "18.40", "to_wallet_uuid": seller}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("status", "amount", "captured", "released", "held")} == {
        "status": "captured",
        "amount": 30,
        "captured": 18.4,
        "released": 11.6,
        "held": 0,
    }
    assert body["closed_at"] is not None
    assert body["capture"] == {"amount": 18.4, "to_wallet_uuid": seller, "to_balance": 18.4}
    assert body["balances"] == {"balance": 81.6, "held": 0, "available": 81.6}
    assert balances(any_client, wallet) == (Decimal("81.6"), 0, Decimal("81.6"))
    assert balances(any_client, seller) == (Decimal("18.4"), 0, Decimal("18.4"))
    assert ledger(database, hold_id) == [
        ("HOLD", 3000),
        ("CAPTURE", 1840),
        ("CAPTURE_IN", 1840),
        ("RELEASE", 1160),
    ]
    # Closed: neither captured nor voided again, and the answer names its state.
    again = any_client.post(f"{HOLDS}/{hold_id}/capture", json={})
    assert_problem(again, 409, "hold_captured")
    assert_problem(any_client.post(f"{HOLDS}/{hold_id}/void"), 409, "hold_captured")
    assert any_client.get(f"{HOLDS}/{hold_id}").json()["status"] == "captured"


def test_a_capture_without_a_payee_takes_all_the_hold_holds_out_of_the_service(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    wallet = new_wallet(any_client, 50)
    hold_id = held(any_client, wallet, 20)["hold_id"]
    body = any_client.post(f"{HOLDS}/{hold_id}/capture", json={}).json()
    assert (body["status"], body["captured"], body["released"]) == ("captured", 20, 0)
    assert body["capture"] == {"amount": 20, "to_wallet_uuid": None, "to_balance": None}
    assert balances(any_client, wallet) == (30, 0, 30)
    assert ledger(database, hold_id) == [("HOLD", 2000), ("CAPTURE", 2000)]


def test_partial_captures_keep_the_rest_held_and_never_take_more_than_it_holds(
    any_client: httpx.Client,
) -> None:
    wallet = new_wallet(any_client, 100)
    hold_id = held(any_client, wallet, 30)["hold_id"]
    first = any_client.post(f"{HOLDS}/{hold_id}/capture", json={"amount": 10, "final": False})
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["held"]) == ("active", 20)
    assert balances(any_client, wallet) == (90, 20, 70)
    over = any_client.post(f"{HOLDS}/{hold_id}/capture", json={"amount": 21, "final": False})
    assert_problem(over, 422, "capture_exceeds_hold")
    assert over.json()["detail"] == f"Cannot capture 21: hold {hold_id} holds 20."
    last = any_client.post(f"{HOLDS}/{hold_id}/capture", json={"amount": 20, "final": False})
    assert (last.json()["status"], last.json()["held"], last.json()["captured"]) == (
        "captured",
        0,
        30,
    )
    assert balances(any_client, wallet) == (70, 0, 70)


def test_a_void_releases_all_of_it_once(any_client: httpx.Client, database: TestDatabase) -> None:
    wallet = new_wallet(any_client, 100)
    hold_id = held(any_client, wallet, 40)["hold_id"]
    body = any_client.post(f"{HOLDS}/{hold_id}/void").json()
    assert (body["status"], body["released"], body["held"]) == ("voided", 40, 0)
    assert body["balances"] == {"balance": 100, "held": 0, "available": 100}
    assert_problem(any_client.post(f"{HOLDS}/{hold_id}/void"), 409, "hold_voided")
    assert_problem(any_client.post(f"{HOLDS}/{hold_id}/capture", json={}), 409, "hold_voided")
    assert ledger(database, hold_id) == [("HOLD", 4000), ("RELEASE", 4000)]


def test_an_unknown_hold_is_404_and_a_bad_request_changes_nothing(
    any_client: httpx.Client,
) -> None:
    missing = uuid.uuid4()
    assert_problem(any_client.get(f"{HOLDS}/{missing}"), 404, "hold_not_found")
    assert_problem(any_client.post(f"{HOLDS}/{missing}/capture", json={}), 404, "hold_not_found")
    assert_problem(any_client.post(f"{HOLDS}/{missing}/void"), 404, "hold_not_found")
    assert_problem(hold(any_client, str(uuid.uuid4()), 1), 404, "wallet_not_found")
    wallet = new_wallet(any_client, 10)
    for body in (
        {"amount": 0},
        {"amount": 1, "expires_in": 0},
        {"amount": 1, "expires_in": 2592001},
    ):
        assert_problem(
            any_client.post(HOLDS, json={"wallet_uuid": wallet, **body}), 422, "validation_error"
        )
    hold_id = held(any_client, wallet, 5)["hold_id"]
    to_itself = any_client.post(f"{HOLDS}/{hold_id}/capture", json={"to_wallet_uuid": wallet})
    assert_problem(to_itself, 422, "validation_error")
    gone = any_client.post(f"{HOLDS}/{hold_id}/capture", json={"to_wallet_uuid": str(uuid.uuid4())})
    assert_problem(gone, 404, "wallet_not_found")
    assert balances(any_client, wallet) == (10, 5, 5)


def test_a_keyed_hold_and_capture_replay_their_first_answers(any_client: httpx.Client) -> None:
    wallet = new_wallet(any_client, 100)
    key = {"Idempotency-Key": f"hold-{uuid.uuid4()}"}
    body = {"wallet_uuid": wallet, "amount": 10}
    first = any_client.post(HOLDS, json=body, headers=key)
    again = any_client.post(HOLDS, json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.text == first.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    other = any_client.post(HOLDS, json={**body, "amount": 11}, headers=key)
    assert_problem(other, 422, "idempotency_key_reused")
    hold_id = first.json()["hold_id"]
    capture_key = {"Idempotency-Key": f"capture-{uuid.uuid4()}"}
    captured = any_client.post(f"{HOLDS}/{hold_id}/capture", json={}, headers=capture_key)
    replayed = any_client.post(f"{HOLDS}/{hold_id}/capture", json={}, headers=capture_key)
    assert (captured.status_code, replayed.status_code) == (200, 200)
    assert replayed.text == captured.text
    assert balances(any_client, wallet) == (90, 0, 90)


def test_a_wallets_holds_are_listed_newest_first_by_status_a_page_at_a_time(
    any_client: httpx.Client,
) -> None:
    wallet = new_wallet(any_client, 100)
    ids = [held(any_client, wallet, 1)["hold_id"] for _ in range(5)]
    any_client.post(f"{HOLDS}/{ids[0]}/void")
    page = any_client.get(f"/api/v1/wallets/{wallet}/holds", params={"limit": 3}).json()
    assert [item["hold_id"] for item in page["items"]] == ids[::-1][:3]
    rest = any_client.get(
        f"/api/v1/wallets/{wallet}/holds", params={"limit": 3, "cursor": page["next_cursor"]}
    ).json()
    assert [item["hold_id"] for item in rest["items"]] == ids[::-1][3:]
    assert rest["next_cursor"] is None
    voided = any_client.get(f"/api/v1/wallets/{wallet}/holds", params={"status": "voided"})
    assert [item["hold_id"] for item in voided.json()["items"]] == [ids[0]]
    assert_problem(any_client.get(f"/api/v1/wallets/{uuid.uuid4()}/holds"), 404, "wallet_not_found")


def _past_expiry(database: TestDatabase, hold_id: str) -> None:
    """Return once the database's clock has passed the hold's expiry (by construction)."""
    deadline = time.monotonic() + 30
    while not database.fetch(
        "SELECT now() > expires_at AS past FROM holds WHERE id = $1", uuid.UUID(hold_id)
    )[0]["past"]:
        assert time.monotonic() < deadline, "the hold never expired"
        time.sleep(0.05)


def test_an_expired_hold_counts_no_more_and_cannot_be_captured_without_the_sweep(
    make_database: Callable[[], TestDatabase], tmp_path: Path
) -> None:
    """With the sweep off, nothing writes the release: the money is available again at
    the expiry all the same, judged by the database's clock on every read and write. On
    a database of its own: the session's other services sweep theirs."""
    database = migrated(make_database())
    service = launch_service(database, tmp_path / "gunicorn.log", {"HOLDS_SWEEP_SECONDS": "0"})
    with service.serving(), httpx.Client(base_url=service.base_url, timeout=30) as client:
        wallet = new_wallet(client, 10)
        hold_id = held(client, wallet, 10, expires_in=1)["hold_id"]
        assert balances(client, wallet) == (10, 10, 0)
        _past_expiry(database, hold_id)
        assert balances(client, wallet) == (10, 0, 10)
        assert client.get(f"{HOLDS}/{hold_id}").json()["status"] == "expired"
        assert_problem(client.post(f"{HOLDS}/{hold_id}/capture", json={}), 409, "hold_expired")
        assert_problem(client.post(f"{HOLDS}/{hold_id}/void"), 409, "hold_expired")
        spent = client.post(OPERATION_PATH.format(wallet), json=operation("WITHDRAW", 10))
        assert spent.json() == {"status": "success", "balance": 0}
        assert ledger(database, hold_id) == [("HOLD", 1000)]  # no release written


def test_the_sweep_releases_each_expired_hold_once_across_two_instances(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    first = start_service(HOLDS_SWEEP_SECONDS="0.2")
    second = start_service(HOLDS_SWEEP_SECONDS="0.2", fresh=True)
    with httpx.Client(base_url=first.base_url, timeout=30) as client:
        wallet = new_wallet(client, 100)
        ids = [held(client, wallet, 1, expires_in=1)["hold_id"] for _ in range(20)]
    assert second.process.poll() is None
    deadline = time.monotonic() + 30
    while database.fetch(
        "SELECT count(*) AS n FROM holds WHERE id = ANY($1) AND status = 'active'",
        [uuid.UUID(h) for h in ids],
    )[0]["n"]:
        assert time.monotonic() < deadline, "expired holds were not released"
        time.sleep(0.1)
    for hold_id in ids:
        assert ledger(database, hold_id) == [("HOLD", 100), ("RELEASE", 100)]
    (row,) = database.fetch(
        "SELECT held, holds_expire_at FROM wallets WHERE id = $1", uuid.UUID(wallet)
    )
    assert (row["held"], row["holds_expire_at"]) == (0, None)


async def _at_once(
    base_url: str, requests: list[tuple[str, dict[str, Any] | None]]
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        return await asyncio.gather(*(client.post(path, json=body) for path, body in requests))


def test_fifty_final_captures_at_once_one_succeeds(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    wallet = new_wallet(any_client, 100)
    hold_id = held(any_client, wallet, 50)["hold_id"]
    responses = asyncio.run(
        _at_once(any_service.base_url, [(f"{HOLDS}/{hold_id}/capture", {})] * 50)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 49, [r.text for r in responses if r.status_code >= 500]
    assert all(r.json()["code"] == "hold_captured" for r in responses if r.status_code == 409)
    assert ledger(database, hold_id) == [("HOLD", 5000), ("CAPTURE", 5000)]
    assert balances(any_client, wallet) == (50, 0, 50)


def test_fifty_partial_captures_at_once_never_take_more_than_was_held(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    """Captures of 7 of a hold of 30: four fit, and 2 stay held, less than any other
    capture asks: each of those is refused as more than the hold holds."""
    wallet = new_wallet(any_client, 100)
    hold_id = held(any_client, wallet, 30)["hold_id"]
    responses = asyncio.run(
        _at_once(
            any_service.base_url,
            [(f"{HOLDS}/{hold_id}/capture", {"amount": 7, "final": False})] * 50,
        )
    )
    assert sorted(r.status_code for r in responses) == [200] * 4 + [422] * 46, [
        r.text for r in responses if r.status_code not in (200, 422)
    ]
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {"capture_exceeds_hold"}
    assert sum(amount for kind, amount in ledger(database, hold_id) if kind == "CAPTURE") == 2800
    assert balances(any_client, wallet) == (72, 2, 70)


def test_a_capture_racing_a_void_one_of_them_wins(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    for _ in range(5):
        wallet = new_wallet(any_client, 100)
        hold_id = held(any_client, wallet, 40)["hold_id"]
        capture, void = asyncio.run(
            _at_once(
                any_service.base_url,
                [(f"{HOLDS}/{hold_id}/capture", {}), (f"{HOLDS}/{hold_id}/void", None)],
            )
        )
        assert sorted([capture.status_code, void.status_code]) == [200, 409]
        kinds = [kind for kind, _ in ledger(database, hold_id)]
        assert kinds in (["HOLD", "CAPTURE"], ["HOLD", "RELEASE"])


def test_holds_racing_withdrawals_never_overdraw_what_is_available(
    any_service: ServiceProcess, any_client: httpx.Client, database: TestDatabase
) -> None:
    wallet = new_wallet(any_client, 100)
    requests: list[tuple[str, dict[str, Any] | None]] = []
    for index in range(40):
        if index % 2:
            requests.append((HOLDS, {"wallet_uuid": wallet, "amount": 7}))
        else:
            requests.append((OPERATION_PATH.format(wallet), operation("WITHDRAW", 7)))
    responses = asyncio.run(_at_once(any_service.base_url, requests))
    assert all(r.status_code in (200, 201, 400) for r in responses), [r.text for r in responses]
    granted = sum(1 for r in responses if r.status_code in (200, 201))
    assert granted == 14  # 14 x 7 = 98 of the 100 set aside or spent, no more
    balance, holding, available = balances(any_client, wallet)
    assert holding + (100 - balance) == 98
    assert available == 2


def test_another_owners_hold_is_a_404_and_a_capture_may_pay_another_owner(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    """A hold is its wallet's owner's: to anyone else it does not exist (read, capture,
    void, list); a capture into another owner's wallet is a payment, allowed, without
    telling the payee's balance."""
    service = start_service(AUTH_MODE="keys", RATE_LIMIT_RATE="100000", RATE_LIMIT_BURST="100000")
    run = uuid.uuid4().hex[:8]
    alice = create_key(database, f"alice-{run}", *EVERY_SCOPE)
    bob = create_key(database, f"bob-{run}", *EVERY_SCOPE)
    with httpx.Client(base_url=service.base_url, timeout=30) as http:

        def wallet_of(key: Key, amount: int) -> str:
            made = http.post("/api/v1/wallets/create_wallet", headers=key.headers)
            wallet = str(made.json()["wallet_uuid"])
            if amount:
                deposit = operation("DEPOSIT", amount)
                http.post(OPERATION_PATH.format(wallet), json=deposit, headers=key.headers)
            return wallet

        payer, payee = wallet_of(alice, 100), wallet_of(bob, 0)
        made = http.post(HOLDS, json={"wallet_uuid": payer, "amount": 30}, headers=alice.headers)
        assert made.status_code == 201, made.text
        hold_id = made.json()["hold_id"]
        # Bob cannot hold on Alice's wallet, nor see, capture, void or list her hold.
        theirs = {"wallet_uuid": payer, "amount": 1}
        assert_problem(http.post(HOLDS, json=theirs, headers=bob.headers), 404, "wallet_not_found")
        for refused in (
            http.get(f"{HOLDS}/{hold_id}", headers=bob.headers),
            http.post(f"{HOLDS}/{hold_id}/capture", json={}, headers=bob.headers),
            http.post(f"{HOLDS}/{hold_id}/void", headers=bob.headers),
        ):
            assert_problem(refused, 404, "hold_not_found")
        listed = http.get(f"/api/v1/wallets/{payer}/holds", headers=bob.headers)
        assert_problem(listed, 404, "wallet_not_found")
        assert_problem(
            http.get(f"/api/v1/wallets/{payer}/balances", headers=bob.headers),
            404,
            "wallet_not_found",
        )
        # Alice pays Bob from her hold: allowed, his balance not told.
        paid = http.post(
            f"{HOLDS}/{hold_id}/capture",
            json={"amount": 20, "to_wallet_uuid": payee},
            headers=alice.headers,
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["capture"] == {"amount": 20, "to_wallet_uuid": payee, "to_balance": None}
        assert (
            money(http.get(f"/api/v1/wallets/{payee}", headers=bob.headers).json()["balance"]) == 20
        )
        assert balances_of(http, payer, alice) == (80, 0, 80)


def balances_of(http: httpx.Client, wallet: str, key: Key) -> Figures:
    body = http.get(f"/api/v1/wallets/{wallet}/balances", headers=key.headers).json()
    return money(body["balance"]), money(body["held"]), money(body["available"])


def test_a_debit_is_judged_on_what_a_hold_made_by_the_other_worker_left_available(
    any_service: ServiceProcess, any_client: httpx.Client
) -> None:
    """By construction: worker A writes the wallet (and so knows its balance, nothing
    held), worker B then holds 60 of its 100, and A is asked for a withdrawal of 50 that
    what A last saw would allow: the statement judges it under the row lock on the 40
    available, and it is refused."""
    first, second = connections_to_both_workers(any_service)
    try:
        wallet = new_wallet(any_client)
        path = OPERATION_PATH.format(wallet)
        assert first.post(path, json=operation("DEPOSIT", 100)).status_code == 200
        assert hold(second, wallet, 60).status_code == 201
        refused = first.post(path, json=operation("WITHDRAW", 50))
        assert_problem(refused, 400, "insufficient_funds")
        assert refused.json()["detail"] == "Cannot withdraw 50: the balance is 40."
        assert balances(any_client, wallet) == (100, 60, 40)
    finally:
        first.close()
        second.close()


def test_a_capture_that_gets_its_hold_after_the_expiry_is_refused(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    """By construction: the capture reads the hold while it is active, then waits for
    its row, which the test holds until the database's clock has passed the expiry: the
    capture, judged under the lock, is refused as expired, and nothing moves."""

    async def race(hold_id: str) -> httpx.Response:
        holder = await asyncpg.connect(database.url())
        try:
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT FROM holds WHERE id = $1 FOR UPDATE", uuid.UUID(hold_id))
            async with httpx.AsyncClient(base_url=str(any_client.base_url), timeout=60) as client:
                capture = asyncio.create_task(client.post(f"{HOLDS}/{hold_id}/capture", json={}))
                deadline = time.monotonic() + 30
                while not await holder.fetchval(
                    "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND application_name = 'wallet-api')"
                ):
                    assert time.monotonic() < deadline, "the capture never waited for the hold"
                    await asyncio.sleep(0.02)
                while not await holder.fetchval(
                    "SELECT clock_timestamp() > expires_at FROM holds WHERE id = $1",
                    uuid.UUID(hold_id),
                ):
                    assert time.monotonic() < deadline, "the hold never expired"
                    await asyncio.sleep(0.05)
                await transaction.commit()
                return await capture
        finally:
            await holder.close()

    wallet = new_wallet(any_client, 10)
    hold_id = held(any_client, wallet, 10, expires_in=1)["hold_id"]
    response = asyncio.run(race(hold_id))
    assert_problem(response, 409, "hold_expired")
    assert ledger(database, hold_id)[:1] == [("HOLD", 1000)]
    assert "CAPTURE" not in [kind for kind, _ in ledger(database, hold_id)]
    assert balances(any_client, wallet)[0] == 10
