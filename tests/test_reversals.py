"""Reversals, `POST /api/v1/reversals`: the compensating entry of a deposit, a withdrawal
or a transfer, in full or in part, linked both ways in the history; at most once, also
when requested twice at the same time; refused without change when a wallet cannot bear
it."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import httpx

from tests.support import OPERATION_PATH, TestDatabase, assert_ledger_consistent, operation
from tests.test_transfers import TRANSFERS, balance, ledger_rows, new_wallet, transfer
from tests.test_verifier import verify
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess

REVERSALS = "/api/v1/reversals"


def history(client: httpx.Client, wallet: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(f"/api/v1/wallets/{wallet}/operations").json()["items"]
    return items


def last_entry(client: httpx.Client, wallet: str) -> int:
    return int(history(client, wallet)[0]["id"])


def test_a_deposit_reversed_in_full_is_linked_both_ways(
    client: httpx.Client, database: TestDatabase
) -> None:
    wallet = new_wallet(client, 100)
    deposit = last_entry(client, wallet)
    response = client.post(REVERSALS, json={"entry_id": deposit, "description": "chargeback"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["transfer_id"] is None
    assert body["amount"] == 100
    assert body["description"] == "chargeback"
    assert [
        (leg["wallet_uuid"], leg["operation"], leg["amount"], leg["balance_after"])
        for leg in body["legs"]
    ] == [(wallet, "REVERSAL_OUT", 100, 0)]
    assert balance(client, wallet) == 0

    reversal, original = history(client, wallet)
    assert reversal["operation"] == "REVERSAL_OUT"
    assert reversal["reverses_entry_id"] == deposit
    assert reversal["description"] == "chargeback"
    assert original["id"] == deposit
    assert original["reversed_by_entry_id"] == reversal["id"]
    assert_ledger_consistent(database, wallet)


def test_a_withdrawal_reversed_in_part_gives_the_part_back(client: httpx.Client) -> None:
    wallet = new_wallet(client, 100)
    client.post(OPERATION_PATH.format(wallet), json=operation("WITHDRAW", 40))
    withdrawal = last_entry(client, wallet)
    response = client.post(REVERSALS, json={"entry_id": withdrawal, "amount": "12.50"})
    assert response.status_code == 201, response.text
    assert response.json()["legs"][0]["operation"] == "REVERSAL_IN"
    assert balance(client, wallet) == Decimal("72.50")
    too_much = client.post(REVERSALS, json={"entry_id": withdrawal, "amount": "40.01"})
    assert_problem(too_much, 422, "reversal_exceeds_entry")


def test_a_transfer_is_reversed_whole_by_its_id_or_by_either_leg(
    client: httpx.Client, database: TestDatabase
) -> None:
    for target in ("transfer_id", "out leg", "in leg"):
        source, destination = new_wallet(client, 100), new_wallet(client, 10)
        made = client.post(TRANSFERS, json=transfer(source, destination, 30)).json()
        reference: dict[str, Any] = {
            "transfer_id": {"transfer_id": made["transfer_id"]},
            "out leg": {"entry_id": last_entry(client, source)},
            "in leg": {"entry_id": last_entry(client, destination)},
        }[target]
        response = client.post(REVERSALS, json={**reference, "amount": 20})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["transfer_id"] == made["transfer_id"]
        assert [(leg["wallet_uuid"], leg["operation"]) for leg in body["legs"]] == [
            (destination, "REVERSAL_OUT"),
            (source, "REVERSAL_IN"),
        ]
        assert (balance(client, source), balance(client, destination)) == (Decimal(90), Decimal(20))
        got = client.get(f"{TRANSFERS}/{made['transfer_id']}").json()
        assert got["reversal"]["amount"] == 20
        for wallet in (source, destination):  # each leg names its reversal
            reversal, leg = history(client, wallet)[:2]
            assert leg["reversed_by_entry_id"] == reversal["id"]
            assert reversal["reverses_entry_id"] == leg["id"]
            assert reversal["transfer_id"] == made["transfer_id"]
        # Once only, whichever way it is named.
        for again in ({"transfer_id": made["transfer_id"]}, {"entry_id": got_leg(client, source)}):
            assert_problem(client.post(REVERSALS, json=again), 409, "already_reversed")
        assert_ledger_consistent(database, source)
        assert_ledger_consistent(database, destination)
    assert verify(database).returncode == 0


def got_leg(client: httpx.Client, wallet: str) -> int:
    """The id of the wallet's transfer leg (under its reversal)."""
    return int(history(client, wallet)[1]["id"])


def test_a_reversal_a_wallet_cannot_bear_changes_nothing(
    client: httpx.Client, database: TestDatabase
) -> None:
    source, destination = new_wallet(client, 100), new_wallet(client)
    made = client.post(TRANSFERS, json=transfer(source, destination, 30)).json()
    client.post(OPERATION_PATH.format(destination), json=operation("WITHDRAW", 25))
    before = (balance(client, source), balance(client, destination), ledger_rows(database))
    refused = client.post(REVERSALS, json={"transfer_id": made["transfer_id"]})
    assert_problem(refused, 400, "insufficient_funds")
    assert refused.json()["detail"] == (
        f"Cannot reverse 30 from wallet {destination}: its balance is 5."
    )
    assert (balance(client, source), balance(client, destination), ledger_rows(database)) == before
    # Not reversed: a reversal the balance can bear still goes through.
    ok = client.post(REVERSALS, json={"transfer_id": made["transfer_id"], "amount": 5})
    assert ok.status_code == 201, ok.text


def test_what_cannot_be_reversed(client: httpx.Client) -> None:
    wallet = new_wallet(client, 10)
    deposit = last_entry(client, wallet)
    client.post(REVERSALS, json={"entry_id": deposit, "amount": 1})
    reversal = last_entry(client, wallet)
    assert_problem(client.post(REVERSALS, json={"entry_id": reversal}), 422, "entry_not_reversible")
    assert_problem(client.post(REVERSALS, json={"entry_id": 2**62}), 404, "entry_not_found")
    unknown = {"transfer_id": str(uuid.uuid4())}
    assert_problem(client.post(REVERSALS, json=unknown), 404, "transfer_not_found")
    for malformed in (
        {},
        {"entry_id": deposit, "transfer_id": str(uuid.uuid4())},
        {"entry_id": 0},
        {"entry_id": deposit, "amount": 0},
        {"entry_id": "1"},
    ):
        assert_problem(client.post(REVERSALS, json=malformed), 422, "validation_error")
    assert balance(client, wallet) == 9


def test_an_idempotency_key_replays_the_reversal(client: httpx.Client) -> None:
    wallet = new_wallet(client, 10)
    deposit = last_entry(client, wallet)
    key = {"Idempotency-Key": f"reversal-{uuid.uuid4()}"}
    first = client.post(REVERSALS, json={"entry_id": deposit, "amount": 3}, headers=key)
    again = client.post(REVERSALS, json={"entry_id": deposit, "amount": 3}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers.get("location") == first.headers.get("location")  # none: no GET
    other = client.post(REVERSALS, json={"entry_id": deposit, "amount": 4}, headers=key)
    assert_problem(other, 422, "idempotency_key_reused")
    assert balance(client, wallet) == 7


def test_a_keyed_reversals_409_is_stored_and_replayed(
    client: httpx.Client, database: TestDatabase
) -> None:
    """A keyed reversal of an entry reversed already is refused 409 `already_reversed`,
    and that answer is kept under its key: the same request with the same key gets it
    again, `Idempotent-Replayed: true`, after the wallet's balance and history changed,
    and changes nothing; the key sent with another request is refused as reused."""
    wallet = new_wallet(client, 10)
    deposit = last_entry(client, wallet)
    reversed_once = client.post(REVERSALS, json={"entry_id": deposit, "amount": 2})
    assert reversed_once.status_code == 201, reversed_once.text
    key = f"reversal-{uuid.uuid4()}"
    body = {"entry_id": deposit, "amount": 3}
    refused = client.post(REVERSALS, json=body, headers={"Idempotency-Key": key})
    problem = assert_problem(refused, 409, "already_reversed")
    assert "idempotent-replayed" not in refused.headers
    kept = database.fetch("SELECT response_status FROM idempotency_keys WHERE key = $1", key)
    assert [row["response_status"] for row in kept] == [409]

    client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 5))
    before = (database.stored_balance(wallet), database.ledger(wallet))
    replayed = client.post(REVERSALS, json=body, headers={"Idempotency-Key": key})
    assert replayed.status_code == 409
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == {k: v for k, v in problem.items() if k != "request_id"}
    assert (database.stored_balance(wallet), database.ledger(wallet)) == before
    assert before[0] == 1300  # 10 deposited, 2 reversed, 5 deposited: nothing more reversed
    other = client.post(
        REVERSALS, json={"entry_id": deposit, "amount": 4}, headers={"Idempotency-Key": key}
    )
    assert_problem(other, 422, "idempotency_key_reused")


async def _all_at_once(base_url: str, body: dict[str, Any], count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        return await asyncio.gather(*(client.post(REVERSALS, json=body) for _ in range(count)))


def test_a_reversal_requested_many_times_at_once_is_applied_once(
    service: ServiceProcess, client: httpx.Client, database: TestDatabase
) -> None:
    for _ in range(3):
        source, destination = new_wallet(client, 100), new_wallet(client)
        made = client.post(TRANSFERS, json=transfer(source, destination, 60)).json()
        responses = asyncio.run(
            _all_at_once(service.base_url, {"transfer_id": made["transfer_id"]}, 12)
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * 11, [r.text for r in responses]
        assert (balance(client, source), balance(client, destination)) == (Decimal(100), Decimal(0))
        assert_ledger_consistent(database, source)
        assert_ledger_consistent(database, destination)
