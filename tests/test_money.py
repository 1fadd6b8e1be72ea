"""Money is exact: decimal in, integer minor units stored, exact JSON numbers out."""

from __future__ import annotations

from decimal import Decimal

import httpx

from tests.support import TestDatabase, money, operation
from tests.test_wallet_contract import assert_problem

MAX_BALANCE = "9999999999999.99"


def post(client: httpx.Client, wallet: str, kind: str, amount: object) -> httpx.Response:
    return client.post(f"/api/v1/wallets/{wallet}/operation", json=operation(kind, amount))


def test_point_one_plus_point_two_is_point_three(client: httpx.Client, wallet: str) -> None:
    post(client, wallet, "DEPOSIT", 0.1)
    response = post(client, wallet, "DEPOSIT", 0.2)
    assert response.text == '{"status":"success","balance":0.3}'
    assert client.get(f"/api/v1/wallets/{wallet}").text == '{"balance":0.3}'


def test_integral_balance_is_an_integer_in_json(client: httpx.Client, wallet: str) -> None:
    post(client, wallet, "DEPOSIT", "999.50")
    response = post(client, wallet, "DEPOSIT", 0.5)
    assert response.text == '{"status":"success","balance":1000}'


def test_numeric_string_and_number_mean_the_same(
    client: httpx.Client, wallet: str, database: TestDatabase
) -> None:
    post(client, wallet, "DEPOSIT", "100.00")
    post(client, wallet, "DEPOSIT", 100)
    post(client, wallet, "WITHDRAW", "0.01")
    assert client.get(f"/api/v1/wallets/{wallet}").text == '{"balance":199.99}'
    assert database.stored_balance(wallet) == 19999
    assert [row["amount"] for row in database.ledger(wallet)] == [10000, 10000, 1]


def test_many_cents_add_up_exactly(client: httpx.Client, wallet: str) -> None:
    for _ in range(30):
        post(client, wallet, "DEPOSIT", 0.01)
    assert money(client.get(f"/api/v1/wallets/{wallet}").json()["balance"]) == Decimal("0.3")


def test_largest_balance_is_accepted_and_returned_exactly(
    client: httpx.Client, wallet: str
) -> None:
    response = post(client, wallet, "DEPOSIT", MAX_BALANCE)
    assert response.text == '{"status":"success","balance":9999999999999.99}'
    assert response.json()["balance"] == 9999999999999.99  # exact as a double, too


def test_deposit_beyond_the_largest_balance_is_refused_and_changes_nothing(
    client: httpx.Client, wallet: str, database: TestDatabase
) -> None:
    post(client, wallet, "DEPOSIT", "9999999999999.00")
    response = post(client, wallet, "DEPOSIT", 1)
    assert_problem(response, 400, "balance_limit_exceeded")
    assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 9999999999999}
    assert len(database.ledger(wallet)) == 1
    assert post(client, wallet, "DEPOSIT", "0.99").json()["balance"] == 9999999999999.99


def test_amount_above_the_largest_balance_is_422(client: httpx.Client, wallet: str) -> None:
    assert_problem(post(client, wallet, "DEPOSIT", "10000000000000.00"), 422, "validation_error")
