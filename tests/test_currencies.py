"""Currencies: each wallet has one (ISO 4217), its amounts are read and kept in its minor
unit (JPY none, USD two, KWD three), every answer that shows an amount says it, and money
moves between wallets of one currency only. A wallet made without one is the
specification's: DEFAULT_CURRENCY, and the specification's bodies exactly as it defines
them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support import EVERY_SCOPE, OPERATION_PATH, TestDatabase, create_key, operation
from tests.test_verifier import verify
from tests.test_wallet_contract import assert_problem
from wallet_api.core.config import Settings
from wallet_api.core.database import Database
from wallet_api.core.money import Currency
from wallet_api.devtools.server import ServiceProcess
from wallet_api.wallets import currencies as currencies_module
from wallet_api.wallets import repository as wallets_repository
from wallet_api.wallets.currencies import WalletCurrencies

WALLETS = "/api/v1/wallets"
CREATE = f"{WALLETS}/create_wallet"
#: A currency of each number of minor digits, with an amount of it and its minor units.
DIGITS = [("JPY", "1500", 1500), ("USD", "12.34", 1234), ("KWD", "1.234", 1234)]


@pytest.fixture
def client(any_service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=any_service.base_url, timeout=30) as client:
        yield client


def wallet_in(client: httpx.Client, currency: str, deposit: str | None = None) -> str:
    made = client.post(CREATE, json={"currency": currency})
    assert made.status_code == 201, made.text
    wallet = str(made.json()["wallet_uuid"])
    # DEFAULT_CURRENCY (USD here) is the specification's: its bodies leave it unsaid.
    said = {} if currency == "USD" else {"currency": currency}
    assert made.json() == {"wallet_uuid": wallet, **said}
    if deposit is not None:
        paid = client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", deposit))
        assert paid.status_code == 200, paid.text
    return wallet


def stored(database: TestDatabase, wallet: str) -> tuple[str, int, int]:
    """The wallet's currency, balance and ledger rows as the database keeps them."""
    (row,) = database.fetch(
        "SELECT currency, balance, (SELECT count(*) FROM wallet_operations o"
        " WHERE o.wallet_id = w.id) AS rows FROM wallets w WHERE id = $1",
        uuid.UUID(wallet),
    )
    return row["currency"], row["balance"], row["rows"]


def test_a_wallet_made_without_a_currency_is_the_specifications(
    client: httpx.Client, database: TestDatabase
) -> None:
    made = client.post(CREATE)
    wallet = made.json()["wallet_uuid"]
    assert made.json() == {"wallet_uuid": wallet}
    deposit = client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", "10.5"))
    assert deposit.text == '{"status":"success","balance":10.5}'
    assert client.get(f"{WALLETS}/{wallet}").json() == {"balance": 10.5}
    assert client.get(f"{WALLETS}/{wallet}/balances").json()["currency"] == "USD"
    assert stored(database, wallet) == ("USD", 1050, 1)
    empty = client.post(CREATE, json={})  # an empty object is no currency too
    assert empty.status_code == 201
    assert list(empty.json()) == ["wallet_uuid"]


@pytest.mark.parametrize(("currency", "amount", "minor"), DIGITS)
def test_a_currency_of_each_number_of_digits_end_to_end(
    client: httpx.Client, database: TestDatabase, currency: str, amount: str, minor: int
) -> None:
    """Deposit, withdrawal, balances, history, a transfer, its reversal, a hold and its
    capture, a statement: each amount read and shown in the currency's minor unit."""
    payer, payee = wallet_in(client, currency), wallet_in(client, currency)
    said = {} if currency == "USD" else {"currency": currency}
    deposit = client.post(OPERATION_PATH.format(payer), json=operation("DEPOSIT", amount))
    assert deposit.json() == {"status": "success", "balance": float(amount), **said}
    assert json.loads(deposit.text, parse_float=str, parse_int=str)["balance"] == amount
    assert stored(database, payer) == (currency, minor, 1)
    assert client.get(f"{WALLETS}/{payer}").json() == {"balance": float(amount), **said}

    transfer = client.post(
        "/api/v1/transfers", json={"from_wallet_uuid": payer, "to_wallet_uuid": payee, "amount": 1}
    )
    assert transfer.status_code == 201, transfer.text
    assert transfer.json()["currency"] == currency
    minor_digits = len(amount.partition(".")[2])
    assert stored(database, payee)[1] == 10**minor_digits
    reversal = client.post(
        "/api/v1/reversals", json={"transfer_id": transfer.json()["transfer_id"], "amount": 1}
    )
    assert reversal.status_code == 201, reversal.text
    assert reversal.json()["currency"] == currency
    assert stored(database, payer)[1] == minor

    smallest = "1" if minor_digits == 0 else "0." + "0" * (minor_digits - 1) + "1"
    hold = client.post("/api/v1/holds", json={"wallet_uuid": payer, "amount": smallest})
    assert hold.status_code == 201, hold.text
    assert (hold.json()["currency"], hold.json()["amount"]) == (currency, float(smallest))
    capture = client.post(f"/api/v1/holds/{hold.json()['hold_id']}/capture", json={})
    assert capture.status_code == 200, capture.text
    withdraw = client.post(OPERATION_PATH.format(payer), json=operation("WITHDRAW", smallest))
    assert withdraw.status_code == 200, withdraw.text
    assert stored(database, payer)[1] == minor - 2

    balances = client.get(f"{WALLETS}/{payer}/balances").json()
    assert balances["currency"] == currency
    page = client.get(f"{WALLETS}/{payer}/operations").json()
    assert page["currency"] == currency
    assert [item["amount"] for item in page["items"]][-1] == float(amount)

    statement = client.get(f"{WALLETS}/{payer}/statement").json()
    assert statement["currency"] == currency
    entries = statement["entries"]
    assert statement["closing_balance"] == pytest.approx(balances["balance"])
    cents = sum(round(entry["change"] * 10**minor_digits) for entry in entries)
    assert cents == minor - 2
    rows = list(csv.reader(io.StringIO(client.get(f"{WALLETS}/{payer}/statement?format=csv").text)))
    assert rows[0][-1] == "currency"
    assert {row[-1] for row in rows[1:]} == {currency}
    deposit_line = next(row for row in rows if row[3] == "DEPOSIT")
    assert deposit_line[5] == amount  # the currency's digits: 12.34, 1.234, 1500


@pytest.mark.parametrize(
    ("currency", "amount", "rule"),
    [
        ("JPY", "0.5", "amount must have at most 0 fractional digits"),
        ("USD", "1.234", "amount must have at most 2 fractional digits"),
        ("KWD", "1.2345", "amount must have at most 3 fractional digits"),
        ("USD", "10000000000000", "amount must be at most 9999999999999.99"),
    ],
)
def test_an_amount_beyond_its_currencys_digits_is_refused_and_changes_nothing(
    client: httpx.Client, database: TestDatabase, currency: str, amount: str, rule: str
) -> None:
    wallet = wallet_in(client, currency, "1")
    other = wallet_in(client, currency)
    before = [stored(database, w) for w in (wallet, other)]
    for path, body in [
        (OPERATION_PATH.format(wallet), operation("DEPOSIT", amount)),
        (OPERATION_PATH.format(wallet), operation("WITHDRAW", amount)),
        ("/api/v1/holds", {"wallet_uuid": wallet, "amount": amount}),
        (
            "/api/v1/transfers",
            {"from_wallet_uuid": wallet, "to_wallet_uuid": other, "amount": amount},
        ),
    ]:
        problem = assert_problem(client.post(path, json=body), 422, "validation_error")
        assert problem["errors"] == [{"loc": ["body", "amount"], "message": rule}], path
    batch = client.post(
        "/api/v1/operations/batch",
        json={
            "operations": [
                {"wallet_uuid": other, "operation": "DEPOSIT", "amount": 1},
                {"wallet_uuid": wallet, "operation": "DEPOSIT", "amount": amount},
            ]
        },
    )
    problem = assert_problem(batch, 422, "validation_error")
    assert problem["errors"] == [{"loc": ["body", "operations", 1, "amount"], "message": rule}]
    assert [stored(database, w) for w in (wallet, other)] == before


def test_a_batch_may_mix_currencies_each_item_in_its_wallets(
    client: httpx.Client, database: TestDatabase
) -> None:
    yen, dinar = wallet_in(client, "JPY"), wallet_in(client, "KWD")
    for atomic in (False, True):
        answer = client.post(
            "/api/v1/operations/batch",
            json={
                "atomic": atomic,
                "operations": [
                    {"wallet_uuid": yen, "operation": "DEPOSIT", "amount": 100},
                    {"wallet_uuid": dinar, "operation": "DEPOSIT", "amount": "0.005"},
                ],
            },
        )
        assert answer.status_code == 200, answer.text
        bodies = [result["body"] for result in answer.json()["results"]]
        assert [body["status"] for body in bodies] == ["success", "success"]
        assert [body["currency"] for body in bodies] == ["JPY", "KWD"]
    assert stored(database, yen)[:2] == ("JPY", 200)
    assert stored(database, dinar)[:2] == ("KWD", 10)


def test_money_moves_between_wallets_of_one_currency_only(
    client: httpx.Client, database: TestDatabase
) -> None:
    """A transfer and a capture into a wallet of another currency are refused (422
    `currency_mismatch`, nothing converted), and change nothing."""
    dollars, yen = wallet_in(client, "USD", "100"), wallet_in(client, "JPY", "100")
    hold = client.post("/api/v1/holds", json={"wallet_uuid": dollars, "amount": 5}).json()
    before = [stored(database, w) for w in (dollars, yen)]
    for path, body in [
        ("/api/v1/transfers", {"from_wallet_uuid": dollars, "to_wallet_uuid": yen, "amount": 1}),
        ("/api/v1/transfers", {"from_wallet_uuid": yen, "to_wallet_uuid": dollars, "amount": 1}),
        (f"/api/v1/holds/{hold['hold_id']}/capture", {"to_wallet_uuid": yen}),
        (f"/api/v1/holds/{hold['hold_id']}/capture", {"to_wallet_uuid": yen, "amount": 1}),
    ]:
        for headers in ({}, {"Idempotency-Key": f"mismatch-{uuid.uuid4()}"}):
            refused = client.post(path, json=body, headers=headers)
            problem = assert_problem(refused, 422, "currency_mismatch")
            detail = str(problem["detail"])
            assert "USD" in detail
            assert "JPY" in detail
    assert [stored(database, w) for w in (dollars, yen)] == before
    assert client.get(f"/api/v1/holds/{hold['hold_id']}").json()["status"] == "active"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"currency": "XAU"}, "XAU has no minor unit: it cannot be a wallet's currency"),
        ({"currency": "ABC"}, "ABC is not an ISO 4217 currency"),
        ({"currency": "usd"}, "currency must be an ISO 4217 code of three capital letters"),
        ({"currency": 840}, None),
        ({"currency": "USD", "name": "x"}, None),
    ],
)
def test_a_wallet_of_no_currency_is_refused(
    client: httpx.Client, database: TestDatabase, body: dict[str, Any], message: str | None
) -> None:
    (count,) = database.fetch("SELECT count(*) FROM wallets")
    problem = assert_problem(client.post(CREATE, json=body), 422, "validation_error")
    if message is not None:
        assert problem["errors"] == [{"loc": ["body", "currency"], "message": message}]
    assert database.fetch("SELECT count(*) FROM wallets") == [count]


def test_a_keyed_create_wallet_replays_its_currency_and_refuses_another(
    client: httpx.Client,
) -> None:
    key = {"Idempotency-Key": f"yen-{uuid.uuid4()}"}
    first = client.post(CREATE, json={"currency": "JPY"}, headers=key)
    again = client.post(CREATE, json={"currency": "JPY"}, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(CREATE, json={"currency": "EUR"}, headers=key)
    assert_problem(other, 422, "idempotency_key_reused")


def test_the_ledger_check_reports_money_by_currency(
    client: httpx.Client, database: TestDatabase
) -> None:
    for currency, amount, _ in DIGITS:
        wallet_in(client, currency, amount)
    report = verify(database)
    assert report.returncode == 0, report.stdout + report.stderr
    checked = json.loads(report.stdout)
    assert {"JPY", "USD", "KWD"} <= set(checked["money_created_by_currency"])
    assert set(checked["money_created_by_currency"].values()) == {0}
    assert checked["money_created"] == 0


def test_another_owners_wallet_is_refused_alike_whatever_its_currency(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    """An amount for another owner's wallet is read in DEFAULT_CURRENCY, then refused as an
    unknown wallet: the refusal never tells that wallet's currency."""
    service = start_service(AUTH_MODE="keys")
    alice = create_key(database, f"alice-{uuid.uuid4().hex[:8]}", *EVERY_SCOPE)
    mallory = create_key(database, f"mallory-{uuid.uuid4().hex[:8]}", *EVERY_SCOPE)
    with (
        httpx.Client(base_url=service.base_url, headers=alice.headers, timeout=30) as owner,
        httpx.Client(base_url=service.base_url, headers=mallory.headers, timeout=30) as other,
    ):
        yen = owner.post(CREATE, json={"currency": "JPY"}).json()["wallet_uuid"]
        missing = str(uuid.uuid4())
        for amount in ("0.5", "100"):
            answers = [
                other.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", amount))
                for wallet in (yen, missing)
            ]
            assert [a.status_code for a in answers] == [404, 404]
            details = [
                answer.json()["detail"].replace(wallet, "…")
                for answer, wallet in zip(answers, (yen, missing), strict=True)
            ]
            assert details[0] == details[1]
            hold = other.post("/api/v1/holds", json={"wallet_uuid": yen, "amount": amount})
            assert_problem(hold, 404, "wallet_not_found")
        for amount, status in (("0.001", 422), ("1", 404)):
            assert (
                other.post(
                    OPERATION_PATH.format(yen), json=operation("DEPOSIT", amount)
                ).status_code
                == status
            )


@pytest.mark.parametrize(
    ("currency", "amount", "body"),
    [
        ("EUR", "1.5", '{"status":"success","balance":1.5,"currency":"EUR"}'),
        ("JPY", "150", '{"status":"success","balance":150,"currency":"JPY"}'),
        ("KWD", "0.015", '{"status":"success","balance":0.015,"currency":"KWD"}'),
    ],
)
def test_a_keyed_operation_answers_and_replays_its_currencys_body(
    client: httpx.Client, currency: str, amount: str, body: str
) -> None:
    """The first answer (a statement renders it for a currency of two digits, the engine
    for the others) and its replay are one text."""
    wallet = wallet_in(client, currency)
    key = {"Idempotency-Key": f"keyed-{uuid.uuid4()}"}
    sent = [
        client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", amount), headers=key)
        for _ in range(2)
    ]
    assert [answer.text for answer in sent] == [body, body]
    assert sent[1].headers["Idempotent-Replayed"] == "true"
    assert client.get(f"{WALLETS}/{wallet}/balances").json()["balance"] == float(amount)


def test_a_worker_reads_the_currencies_of_many_new_wallets_in_few_queries(
    database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hundreds of wallets a worker meets at once (a restart under load) are read together,
    one query in flight at a time, each answered its own wallet's currency (also when the
    worker remembers fewer than that); a missing one is none. Against the real database:
    the spy only counts the queries."""
    made = {uuid.uuid4(): code for code in ("JPY", "USD", "KWD") for _ in range(100)}
    database.fetch(
        "INSERT INTO wallets (id, currency, currency_exponent)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::smallint[])",
        list(made),
        list(made.values()),
        [{"JPY": 0, "USD": 2, "KWD": 3}[code] for code in made.values()],
    )
    missing = uuid.uuid4()
    queries: list[int] = []
    read = wallets_repository.wallet_currencies

    async def counted(connection: Any, wallet_ids: Any) -> dict[uuid.UUID, tuple[str, int]]:
        queries.append(len(wallet_ids))
        return await read(connection, wallet_ids)

    monkeypatch.setattr(wallets_repository, "wallet_currencies", counted)
    # A worker that remembers 10: each asker still gets what was read for it, not what
    # the bounded map holds once its wait is over (it forgot most of them meanwhile).
    monkeypatch.setattr(currencies_module, "REMEMBERED_CURRENCIES", 10)

    async def meet_them_all() -> list[Currency | None]:
        settings = Settings.model_validate(
            {key.lower(): value for key, value in database.environment().items()}
        )
        pool = Database(settings)
        currencies = WalletCurrencies(pool, settings.implicit_currency)
        try:
            # Asked one by one (`one`), and in pairs (`of`, as a transfer asks).
            wallets = [*made, missing]
            pairs = [(wallets[i], wallets[i + 1]) for i in range(0, len(wallets) - 1, 2)]
            ones = asyncio.gather(*(currencies.one(w) for w in wallets))
            twos = asyncio.gather(*(currencies.of(pair) for pair in pairs))
            one_by_one, in_pairs = await asyncio.wait_for(asyncio.gather(ones, twos), 30)
            paired = {
                w: found.get(w) for pair, found in zip(pairs, in_pairs, strict=True) for w in pair
            }
            return [*one_by_one, *(paired[w] for w in wallets[: len(paired)])]
        finally:
            await currencies.close()
            await pool.dispose()

    found = asyncio.run(meet_them_all())
    codes = [*made.values(), None]
    assert [None if c is None else c.code for c in found] == codes + codes[
        : len(found) - len(codes)
    ]
    assert sum(queries) == len(made) + 1  # each wallet asked once, however many askers
    assert len(queries) <= 2  # the first ask, then every one asked while it ran
