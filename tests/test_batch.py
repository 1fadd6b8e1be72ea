"""The batch endpoint, `POST /api/v1/operations/batch`: one result per operation, in order,
each what the single endpoint answers; all or nothing with `atomic`; limits and malformed
items named; an Idempotency-Key replays the whole batch. Coalescing on and off."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support import OPERATION_PATH, TestDatabase, assert_ledger_consistent, operation
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess

BATCH = "/api/v1/operations/batch"


@pytest.fixture
def any_client(any_service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=any_service.base_url, timeout=60) as client:
        yield client


def new_wallet(client: httpx.Client) -> str:
    return str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])


def item(wallet: str, kind: str, amount: object) -> dict[str, object]:
    return {"wallet_uuid": wallet, **operation(kind, amount)}


def without_wallet_ids(body: dict[str, Any], *wallets: str) -> str:
    """A body's text with the wallet ids replaced, to compare answers on two wallets."""
    text = httpx.Response(200, json=body).text
    for n, wallet in enumerate(wallets):
        text = text.replace(wallet, f"wallet-{n}")
    return text


def test_each_result_is_what_the_single_endpoint_answers_in_order(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    """The same operations, on two new wallets: one through the batch endpoint, the other
    one request at a time. Same statuses, same bodies, same ledgers."""
    steps = [
        ("DEPOSIT", 10),
        ("WITHDRAW", 20),  # refused: the balance is 10
        ("WITHDRAW", "2.50"),
        ("DEPOSIT", "9999999999999.99"),  # refused: past the largest balance
        ("DEPOSIT", 0.1),
        ("WITHDRAW", "7.60"),
    ]
    batched, single = new_wallet(any_client), new_wallet(any_client)
    other = new_wallet(any_client)
    items = []
    for kind, amount in steps:  # another wallet's operations interleaved with them
        items += [item(batched, kind, amount), item(other, "DEPOSIT", 1)]
    response = any_client.post(BATCH, json={"operations": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(items)
    assert [r["body"]["balance"] for r in results[1::2]] == [1, 2, 3, 4, 5, 6]

    for (kind, amount), result in zip(steps, results[0::2], strict=True):
        alone = any_client.post(OPERATION_PATH.format(single), json=operation(kind, amount))
        assert result["status"] == alone.status_code
        expected = alone.json()
        expected.pop("request_id", None)
        assert without_wallet_ids(result["body"], batched) == without_wallet_ids(expected, single)
    assert [
        (r["operation"], r["amount"], r["balance_after"]) for r in database.ledger(batched)
    ] == [(r["operation"], r["amount"], r["balance_after"]) for r in database.ledger(single)]
    assert_ledger_consistent(database, batched)
    assert_ledger_consistent(database, other)


def test_an_unknown_wallet_is_a_404_for_its_operations_only(any_client: httpx.Client) -> None:
    wallet, unknown = new_wallet(any_client), str(uuid.uuid4())
    response = any_client.post(
        BATCH,
        json={
            "operations": [
                item(wallet, "DEPOSIT", 5),
                item(unknown, "DEPOSIT", 5),
                item(wallet, "WITHDRAW", 2),
            ]
        },
    )
    assert response.status_code == 200
    statuses = [result["status"] for result in response.json()["results"]]
    assert statuses == [200, 404, 200]
    assert response.json()["results"][1]["body"]["code"] == "wallet_not_found"
    assert any_client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 3}


def test_an_atomic_batch_applies_all_its_operations(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    payer, payee = new_wallet(any_client), new_wallet(any_client)
    any_client.post(OPERATION_PATH.format(payer), json=operation("DEPOSIT", 100))
    response = any_client.post(
        BATCH,
        json={
            "atomic": True,
            "operations": [item(payer, "WITHDRAW", 30), item(payee, "DEPOSIT", 30)],
        },
    )
    assert response.status_code == 200, response.text
    assert [r["body"] for r in response.json()["results"]] == [
        {"status": "success", "balance": 70},
        {"status": "success", "balance": 30},
    ]
    assert database.stored_balance(payer) == 7000
    assert database.stored_balance(payee) == 3000


def test_an_atomic_batch_with_a_refusal_applies_nothing_and_names_it(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    payer, payee = new_wallet(any_client), new_wallet(any_client)
    any_client.post(OPERATION_PATH.format(payer), json=operation("DEPOSIT", 100))
    operations = [
        item(payee, "DEPOSIT", 50),
        item(payer, "WITHDRAW", 60),
        item(payer, "WITHDRAW", 60),  # refused: 40 left after the first
        item(payee, "WITHDRAW", 1000),  # refused too, but later
    ]
    response = any_client.post(BATCH, json={"atomic": True, "operations": operations})
    problem = assert_problem(response, 400, "insufficient_funds")
    assert problem["index"] == 2
    assert problem["detail"] == "Operation 2: Cannot withdraw 60: the balance is 40."
    assert database.stored_balance(payer) == 10000
    assert database.stored_balance(payee) == 0
    assert len(database.ledger(payee)) == 0

    missing = str(uuid.uuid4())
    response = any_client.post(
        BATCH,
        json={
            "atomic": True,
            "operations": [item(payee, "DEPOSIT", 1), item(missing, "DEPOSIT", 1)],
        },
    )
    assert assert_problem(response, 404, "wallet_not_found")["index"] == 1
    assert database.stored_balance(payee) == 0


@pytest.mark.parametrize("atomic", [False, True])
def test_a_key_replays_the_whole_batch_and_applies_it_once(
    any_client: httpx.Client, database: TestDatabase, atomic: bool
) -> None:
    first, second = new_wallet(any_client), new_wallet(any_client)
    body: dict[str, Any] = {
        "atomic": atomic,
        "operations": [
            item(first, "DEPOSIT", 10),
            item(second, "DEPOSIT", "5.00"),
            item(first, "WITHDRAW", 3),
        ],
    }
    key = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    original = any_client.post(BATCH, json=body, headers=key)
    assert original.status_code == 200, original.text
    assert [result["status"] for result in original.json()["results"]] == [200] * 3
    assert "idempotent-replayed" not in original.headers
    any_client.post(OPERATION_PATH.format(first), json=operation("DEPOSIT", 100))

    same = {
        **body,
        "operations": [{**op, "amount": str(op["amount"])} for op in body["operations"]],
    }
    replay = any_client.post(BATCH, json=same, headers=key)
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == original.json()
    assert len(database.ledger(first)) == 3
    assert len(database.ledger(second)) == 1

    other = {**body, "operations": body["operations"][:2]}
    reused = any_client.post(BATCH, json=other, headers=key)
    assert_problem(reused, 422, "idempotency_key_reused")
    assert len(database.ledger(first)) == 3


def test_a_replayed_batch_with_an_unknown_wallet_is_still_a_replay(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    """Nothing is stored for an operation on a missing wallet; its retry is refused the
    same way and changes nothing, so the answer is still the batch's replay."""
    wallet, unknown = new_wallet(any_client), str(uuid.uuid4())
    body = {"operations": [item(wallet, "DEPOSIT", 4), item(unknown, "DEPOSIT", 1)]}
    key = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    original = any_client.post(BATCH, json=body, headers=key)
    assert [result["status"] for result in original.json()["results"]] == [200, 404]
    assert "idempotent-replayed" not in original.headers
    replay = any_client.post(BATCH, json=body, headers=key)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == original.json()
    assert len(database.ledger(wallet)) == 1


def test_a_refused_atomic_batch_stays_refused_on_replay(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    wallet = new_wallet(any_client)
    body = {"atomic": True, "operations": [item(wallet, "WITHDRAW", 5)]}
    key = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    refused = any_client.post(BATCH, json=body, headers=key)
    assert_problem(refused, 400, "insufficient_funds")
    any_client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 100))
    replay = any_client.post(BATCH, json=body, headers=key)
    assert replay.status_code == 400
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["index"] == 0
    assert database.stored_balance(wallet) == 10000


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"operations": []}, ["body", "operations"]),
        ({}, ["body", "operations"]),
        (
            {"operations": [{"wallet_uuid": "x", "operation": "DEPOSIT", "amount": 1}]},
            ["body", "operations", 0, "wallet_uuid"],
        ),
        (
            {"operations": [{"operation": "DEPOSIT", "amount": 1}]},
            ["body", "operations", 0, "wallet_uuid"],
        ),
        ({"operations": "all"}, ["body", "operations"]),
        ({"operations": [], "extra": 1}, ["body", "extra"]),
        ({"operations": [], "atomic": 0}, ["body", "atomic"]),
        (
            {
                "operations": [
                    {"wallet_uuid": uuid.uuid4().hex, "operation": "DEPOSIT", "amount": 1}
                ]
            },
            ["body", "operations", 0, "wallet_uuid"],
        ),
    ],
)
def test_an_empty_or_malformed_batch_is_a_422_that_names_the_item(
    client: httpx.Client, body: dict[str, object], where: list[object]
) -> None:
    problem = assert_problem(client.post(BATCH, json=body), 422, "validation_error")
    errors: list[dict[str, object]] = problem["errors"]  # type: ignore[assignment]
    assert where in [error["loc"] for error in errors]


def test_a_malformed_item_among_good_ones_changes_nothing(
    client: httpx.Client, wallet: str, database: TestDatabase
) -> None:
    operations = [item(wallet, "DEPOSIT", 1)] * 5 + [item(wallet, "DEPOSIT", "1.001")]
    problem = assert_problem(
        client.post(BATCH, json={"operations": operations}), 422, "validation_error"
    )
    assert problem["errors"] == [
        {
            "loc": ["body", "operations", 5, "amount"],
            "message": "amount must have at most 2 fractional digits",
        }
    ]
    assert database.ledger(wallet) == []


@pytest.mark.parametrize(
    "other",
    [
        operation("TRANSFER", 1),
        operation("TRANSFER_OUT", 1),
        operation("TRANSFER_IN", 1),
        operation("REVERSAL_IN", 1),
        operation("REVERSAL_OUT", 1),
        "a transfer's body",
    ],
    ids=repr,
)
@pytest.mark.parametrize("atomic", [False, True])
def test_a_batch_holds_deposits_and_withdrawals_only(
    client: httpx.Client, database: TestDatabase, other: object, atomic: bool
) -> None:
    """A transfer (or any ledger kind other than DEPOSIT and WITHDRAW) is not a batch
    operation: the item that asks for one makes the batch a 422 `validation_error` naming
    that item, and nothing of the batch is applied."""
    wallet, payee = new_wallet(client), new_wallet(client)
    if other == "a transfer's body":
        odd: dict[str, object] = {"from_wallet_uuid": wallet, "to_wallet_uuid": payee, "amount": 1}
    else:
        assert isinstance(other, dict)
        odd = {"wallet_uuid": wallet, **other}
    body = {"atomic": atomic, "operations": [item(wallet, "DEPOSIT", 5), odd]}
    problem = assert_problem(client.post(BATCH, json=body), 422, "validation_error")
    errors: list[dict[str, Any]] = problem["errors"]  # type: ignore[assignment]
    assert errors
    assert all(error["loc"][:3] == ["body", "operations", 1] for error in errors), errors
    assert database.ledger(wallet) == database.ledger(payee) == []


def test_more_than_a_thousand_operations_or_too_large_a_body_is_refused(
    client: httpx.Client, wallet: str, database: TestDatabase
) -> None:
    too_many = [item(wallet, "DEPOSIT", 1)] * 1001
    problem = assert_problem(
        client.post(BATCH, json={"operations": too_many}), 422, "validation_error"
    )
    errors: list[dict[str, object]] = problem["errors"]  # type: ignore[assignment]
    assert errors[0]["loc"] == ["body", "operations"]
    huge = {"operations": [item(wallet, "DEPOSIT", "1" * 12)] * 1000, "padding": "x" * 300_000}
    assert_problem(client.post(BATCH, json=huge), 413, "body_too_large")
    assert database.ledger(wallet) == []
    thousand = client.post(BATCH, json={"operations": [item(wallet, "DEPOSIT", 1)] * 1000})
    assert thousand.status_code == 200
    assert thousand.json()["results"][-1]["body"] == {"status": "success", "balance": 1000}


def test_a_batch_key_too_long_to_derive_item_keys_from_is_a_422(
    client: httpx.Client, wallet: str
) -> None:
    response = client.post(
        BATCH,
        json={"operations": [item(wallet, "DEPOSIT", 1)]},
        headers={"Idempotency-Key": "k" * 251},
    )
    assert_problem(response, 422, "validation_error")


@pytest.fixture(scope="module", params=["coalesced", "one-transaction-per-operation"])
def impatient(
    request: pytest.FixtureRequest, start_service: Callable[..., ServiceProcess]
) -> ServiceProcess:
    """A service that gives up waiting for a row lock after 200 ms (DB_LOCK_TIMEOUT_MS;
    the tests' default is 30 s), coalescing on and off."""
    return start_service(
        DB_LOCK_TIMEOUT_MS="200", COALESCING_ENABLED=str(request.param == "coalesced").lower()
    )


def wallet_busy_count(service: ServiceProcess, kind: str) -> float:
    """wallet_operations_total for `kind` answered `wallet_busy`, summed over the workers."""
    series = f'wallet_operations_total{{operation="{kind}",outcome="wallet_busy"}} '
    for line in httpx.get(service.base_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(series):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def documented_codes(service: ServiceProcess, path: str, status: int) -> list[str]:
    """The problem codes the published contract lists for a POST's status."""
    document = httpx.get(service.base_url + "/openapi.json", timeout=10).json()
    response = document["paths"][path]["post"]["responses"][str(status)]
    schema = response["content"]["application/problem+json"]["schema"]
    codes: list[str] = schema["allOf"][1]["properties"]["code"]["enum"]
    return codes


def log_records(service: ServiceProcess, response: httpx.Response) -> list[dict[str, Any]]:
    """The service's log records of the request that got `response`, its access line
    included (written after the response, so after every other line of the request)."""
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while True:
        records = [
            json.loads(line)
            for line in service.log_text().splitlines()
            if line.startswith("{") and request_id in line
        ]
        if any(record["logger"] == "wallet_api.access" for record in records):
            return records
        assert time.monotonic() < deadline, f"no access line for {request_id}"
        time.sleep(0.1)


def assert_one_wallet_busy_warning(service: ServiceProcess, response: httpx.Response) -> None:
    """As every 503 is logged: one WARNING line (its cause in a few words), no error."""
    records = log_records(service, response)
    levels = [(record["level"], record["message"].split(":")[0]) for record in records]
    assert [level for level in levels if level[0] != "info"] == [("warning", "wallet_busy")]
    (warning,) = (record for record in records if record["level"] == "warning")
    assert "LockNotAvailableError" in warning["message"]


async def while_held(
    service: ServiceProcess,
    database: TestDatabase,
    held: str,
    requests: list[tuple[str, dict[str, Any], dict[str, str]]],
) -> list[httpx.Response]:
    """Send each (path, body, headers), one after the other, while the test's own
    transaction holds `held`'s row lock: each request that needs it gives up after the
    service's lock timeout, and is answered before the lock is released."""
    async with (
        httpx.AsyncClient(base_url=service.base_url, timeout=30) as http,
        database.row_locked(held),
    ):
        return [
            await http.post(path, json=body, headers=headers) for path, body, headers in requests
        ]


def test_an_atomic_batch_naming_a_held_wallet_is_wallet_busy_and_applies_nothing(
    impatient: ServiceProcess, database: TestDatabase
) -> None:
    """Another transaction holds one wallet's row past DB_LOCK_TIMEOUT_MS: the atomic batch
    is answered as the single endpoint answers an operation on that wallet, 503
    `wallet_busy` with Retry-After, and nothing of it is applied (nor its key kept)."""
    with httpx.Client(base_url=impatient.base_url, timeout=30) as client:
        free, held = new_wallet(client), new_wallet(client)
    body = {"atomic": True, "operations": [item(free, "DEPOSIT", 5), item(held, "DEPOSIT", 1)]}
    key = {"Idempotency-Key": f"held-{uuid.uuid4()}"}
    busy_before = wallet_busy_count(impatient, "DEPOSIT")
    single, batch = asyncio.run(
        while_held(
            impatient,
            database,
            held,
            [(OPERATION_PATH.format(held), operation("DEPOSIT", 1), {}), (BATCH, body, key)],
        )
    )
    assert_problem(single, 503, "wallet_busy")
    assert_problem(batch, 503, "wallet_busy")
    assert batch.headers["retry-after"] == single.headers["retry-after"]
    assert "wallet_busy" in documented_codes(impatient, BATCH, 503)
    assert database.ledger(free) == database.ledger(held) == []
    assert wallet_busy_count(impatient, "DEPOSIT") - busy_before == 1  # the single one's
    assert_one_wallet_busy_warning(impatient, single)
    assert_one_wallet_busy_warning(impatient, batch)

    with httpx.Client(base_url=impatient.base_url, timeout=30) as client:
        retry = client.post(BATCH, json=body, headers=key)
    assert retry.status_code == 200, retry.text
    assert "idempotent-replayed" not in retry.headers  # the key was not kept: applied now
    assert [result["body"]["balance"] for result in retry.json()["results"]] == [5, 1]


def test_a_batch_naming_a_held_wallet_answers_its_operations_wallet_busy_and_applies_the_rest(
    impatient: ServiceProcess, database: TestDatabase
) -> None:
    """Another transaction holds one wallet's row past DB_LOCK_TIMEOUT_MS: each of that
    wallet's operations is answered what the single endpoint answers for it (503
    `wallet_busy`, not applied); the other wallets' operations apply."""
    with httpx.Client(base_url=impatient.base_url, timeout=30) as client:
        free, held, other = new_wallet(client), new_wallet(client), new_wallet(client)
    body = {
        "operations": [
            item(free, "DEPOSIT", 5),
            item(held, "DEPOSIT", 1),
            item(other, "DEPOSIT", 7),
            item(held, "DEPOSIT", 2),
            item(free, "WITHDRAW", 2),
        ]
    }
    busy_before = wallet_busy_count(impatient, "DEPOSIT")
    single, batch = asyncio.run(
        while_held(
            impatient,
            database,
            held,
            [(OPERATION_PATH.format(held), operation("DEPOSIT", 1), {}), (BATCH, body, {})],
        )
    )
    single_body = assert_problem(single, 503, "wallet_busy")
    del single_body["request_id"]
    assert batch.status_code == 200, batch.text
    assert batch.json()["results"] == [
        {"status": 200, "body": {"status": "success", "balance": 5}},
        {"status": 503, "body": single_body},
        {"status": 200, "body": {"status": "success", "balance": 7}},
        {"status": 503, "body": single_body},
        {"status": 200, "body": {"status": "success", "balance": 3}},
    ]
    assert database.ledger(held) == []
    assert len(database.ledger(free)) == 2
    assert len(database.ledger(other)) == 1
    assert wallet_busy_count(impatient, "DEPOSIT") - busy_before == 3
    assert_one_wallet_busy_warning(impatient, batch)


def test_a_retry_of_a_batch_applied_half_way_replays_what_was_applied_and_applies_the_rest(
    impatient: ServiceProcess, database: TestDatabase
) -> None:
    """A keyed batch gets half-way: another transaction holds one of its wallets past
    DB_LOCK_TIMEOUT_MS, so that wallet's operations are 503 `wallet_busy`, not applied,
    while the other wallet's are applied and kept (each under its derived key). The other
    wallet's balance then moves on. The batch's retry with the same key replays what was
    applied (the same answers, which applied again would differ) and applies the rest; it
    is not marked a replay, and the next retry, which changes nothing, is."""
    with httpx.Client(base_url=impatient.base_url, timeout=30) as client:
        free, held = new_wallet(client), new_wallet(client)
    body = {
        "operations": [
            item(free, "DEPOSIT", 5),
            item(held, "DEPOSIT", 7),
            item(free, "WITHDRAW", 2),
            item(held, "WITHDRAW", 3),
        ]
    }
    key = f"half-way-{uuid.uuid4()}"
    (first,) = asyncio.run(
        while_held(impatient, database, held, [(BATCH, body, {"Idempotency-Key": key})])
    )
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    results = first.json()["results"]
    assert [result["status"] for result in results] == [200, 503, 200, 503]
    assert results[0]["body"] == {"status": "success", "balance": 5}
    assert results[2]["body"] == {"status": "success", "balance": 3}
    assert results[1]["body"]["code"] == results[3]["body"]["code"] == "wallet_busy"
    assert database.ledger(held) == []

    with httpx.Client(base_url=impatient.base_url, timeout=30) as client:
        moved = client.post(OPERATION_PATH.format(free), json=operation("DEPOSIT", 100))
        assert moved.json() == {"status": "success", "balance": 103}
        retry = client.post(BATCH, json=body, headers={"Idempotency-Key": key})
        again = client.post(BATCH, json=body, headers={"Idempotency-Key": key})
    assert retry.status_code == 200, retry.text
    assert "idempotent-replayed" not in retry.headers  # the held wallet's applied now
    assert retry.json()["results"] == [
        results[0],
        {"status": 200, "body": {"status": "success", "balance": 7}},
        results[2],
        {"status": 200, "body": {"status": "success", "balance": 4}},
    ]
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == retry.json()
    keys = {
        wallet: [
            row["idempotency_key"]
            for row in database.fetch(
                "SELECT idempotency_key FROM wallet_operations WHERE wallet_id = $1 ORDER BY id",
                uuid.UUID(wallet),
            )
        ]
        for wallet in (free, held)
    }
    assert keys == {free: [f"{key} #0", f"{key} #2", None], held: [f"{key} #1", f"{key} #3"]}
    assert (database.stored_balance(free), database.stored_balance(held)) == (10300, 400)
    assert_ledger_consistent(database, free)
    assert_ledger_consistent(database, held)


def kept_keys(database: TestDatabase, key: str) -> list[tuple[str, str, int, str]]:
    """What is stored for a batch's key and for its items' derived keys (`KEY #index`)."""
    rows = database.fetch(
        "SELECT key, fingerprint, response_status, response_body FROM idempotency_keys "
        "WHERE key = $1 OR starts_with(key, $1 || ' #') ORDER BY key",
        key,
    )
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("atomic_first", [True, False], ids=["atomic first", "non-atomic first"])
def test_a_batch_key_sent_again_with_the_other_atomic_flag_is_refused_and_changes_nothing(
    any_client: httpx.Client, database: TestDatabase, atomic_first: bool
) -> None:
    """The `atomic` flag is part of the batch: the same key and the same operations sent
    with the other flag are a 422 `idempotency_key_reused`, never the first batch's replay
    nor its operations applied again; the first batch's retry is still its replay."""
    wallet = new_wallet(any_client)
    operations = [item(wallet, "DEPOSIT", 5), item(wallet, "WITHDRAW", 2)]
    key = f"batch-{uuid.uuid4()}"
    first_body = {"atomic": atomic_first, "operations": operations}
    first = any_client.post(BATCH, json=first_body, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    assert [result["body"]["balance"] for result in first.json()["results"]] == [5, 3]

    def state() -> tuple[int, list[Any], list[tuple[str, str, int, str]]]:
        return database.stored_balance(wallet), database.ledger(wallet), kept_keys(database, key)

    before = state()
    other = {"atomic": not atomic_first, "operations": operations}
    reused = any_client.post(BATCH, json=other, headers={"Idempotency-Key": key})
    assert_problem(reused, 422, "idempotency_key_reused")
    assert "idempotent-replayed" not in reused.headers
    assert state() == before
    assert before[0] == 300  # 5 deposited, 2 withdrawn: once
    assert len(before[1]) == 2

    again = any_client.post(BATCH, json=first_body, headers={"Idempotency-Key": key})
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert state() == before


def test_a_client_key_never_names_a_batch_items_derived_key(
    any_client: httpx.Client, database: TestDatabase
) -> None:
    """Each operation of a keyed batch is kept under `KEY #index`; the space keeps these
    apart from every key a client can send (a header key holds no space). `KEY#0`, the
    derived key without its space, is a fresh key for a single operation: applied, not the
    batch item's replay nor refused as reused; and a client's `KEY#0` sent first does not
    stand in for the batch's item 0."""
    wallet = new_wallet(any_client)
    key = f"batch-{uuid.uuid4()}"
    batch = any_client.post(
        BATCH,
        json={"operations": [item(wallet, "DEPOSIT", 5), item(wallet, "DEPOSIT", 7)]},
        headers={"Idempotency-Key": key},
    )
    assert [result["body"]["balance"] for result in batch.json()["results"]] == [5, 12]
    kept = kept_keys(database, key)
    # The same operation as item 0, and as item 1, each with the key written without the space.
    for index, (amount, balance) in enumerate([(5, 17), (7, 24)]):
        single = any_client.post(
            OPERATION_PATH.format(wallet),
            json=operation("DEPOSIT", amount),
            headers={"Idempotency-Key": f"{key}#{index}"},
        )
        assert single.status_code == 200, single.text
        assert "idempotent-replayed" not in single.headers
        assert single.json() == {"status": "success", "balance": balance}
    assert kept_keys(database, key) == kept  # the batch's own keys untouched
    history = any_client.get(f"/api/v1/wallets/{wallet}/operations").json()["items"]
    assert [entry["idempotency_key"] for entry in history] == [
        f"{key}#1",
        f"{key}#0",
        f"{key} #1",
        f"{key} #0",
    ]

    # The other way round: a client's `KEY#0` first, then the batch sent with KEY.
    other = f"batch-{uuid.uuid4()}"
    single = any_client.post(
        OPERATION_PATH.format(wallet),
        json=operation("WITHDRAW", 1),
        headers={"Idempotency-Key": f"{other}#0"},
    )
    assert single.json() == {"status": "success", "balance": 23}
    later = any_client.post(
        BATCH,
        json={"operations": [item(wallet, "WITHDRAW", 1), item(wallet, "DEPOSIT", 2)]},
        headers={"Idempotency-Key": other},
    )
    assert later.status_code == 200, later.text
    assert "idempotent-replayed" not in later.headers
    assert later.json()["results"] == [
        {"status": 200, "body": {"status": "success", "balance": 22}},
        {"status": 200, "body": {"status": "success", "balance": 24}},
    ]
    assert database.stored_balance(wallet) == 2400
    assert len(database.ledger(wallet)) == 7
