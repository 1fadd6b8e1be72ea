"""Metadata: the client's own references (a JSON object of strings) on every request that
writes ledger entries, kept on each of its entries, returned in the history, part of the
request an Idempotency-Key stands for, and a history filter that pages while writes go on."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import OPERATION_PATH, TestDatabase, created_wallet, operation
from tests.test_ledger_time import every_entry
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess

WALLETS = "/api/v1/wallets"
ORDER = {"order_id": "42", "channel": "web", "note": 'ünïcödé, "quoted"'}


@pytest.fixture
def client(any_service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=any_service.base_url, timeout=30) as client:
        yield client


def history(client: httpx.Client, wallet: str, **params: Any) -> list[dict[str, Any]]:
    answer = client.get(f"{WALLETS}/{wallet}/operations", params=params)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_every_write_keeps_its_metadata_on_its_entries(client: httpx.Client) -> None:
    payer, payee = created_wallet(client, 100), created_wallet(client)
    sent = [
        client.post(
            OPERATION_PATH.format(payer), json={**operation("DEPOSIT", 1), "metadata": {"a": "1"}}
        ),
        client.post(
            OPERATION_PATH.format(payer),
            json={**operation("WITHDRAW", 2), "metadata": {"b": "2"}},
            headers={"Idempotency-Key": f"meta-{uuid.uuid4()}"},
        ),
        client.post(
            "/api/v1/operations/batch",
            json={
                "operations": [
                    {
                        "wallet_uuid": payer,
                        "operation": "DEPOSIT",
                        "amount": 3,
                        "metadata": {"c": "3"},
                    },
                    {"wallet_uuid": payer, "operation": "DEPOSIT", "amount": 4},
                ]
            },
        ),
    ]
    transfer = client.post(
        "/api/v1/transfers",
        json={"from_wallet_uuid": payer, "to_wallet_uuid": payee, "amount": 5, "metadata": ORDER},
    )
    reversal = client.post(
        "/api/v1/reversals",
        json={
            "transfer_id": transfer.json()["transfer_id"],
            "amount": 1,
            "metadata": {"why": "refund"},
        },
    )
    hold = client.post(
        "/api/v1/holds", json={"wallet_uuid": payer, "amount": 6, "metadata": {"ride": "7"}}
    )
    capture = client.post(
        f"/api/v1/holds/{hold.json()['hold_id']}/capture",
        json={"amount": 2, "to_wallet_uuid": payee, "metadata": {"fare": "final"}},
    )
    for answer in [*sent, transfer, reversal, hold, capture]:
        assert answer.status_code in (200, 201), answer.text

    mine = [(item["operation"], item.get("metadata")) for item in history(client, payer)]
    assert mine == [
        ("RELEASE", {"fare": "final"}),
        ("CAPTURE", {"fare": "final"}),
        ("HOLD", {"ride": "7"}),
        ("REVERSAL_IN", {"why": "refund"}),
        ("TRANSFER_OUT", ORDER),
        ("DEPOSIT", None),
        ("DEPOSIT", {"c": "3"}),
        ("WITHDRAW", {"b": "2"}),
        ("DEPOSIT", {"a": "1"}),
        ("DEPOSIT", None),  # the opening deposit, without metadata: no key at all
    ]
    assert "metadata" not in history(client, payer)[-1]
    theirs = [(item["operation"], item.get("metadata")) for item in history(client, payee)]
    assert theirs == [
        ("CAPTURE_IN", {"fare": "final"}),
        ("REVERSAL_OUT", {"why": "refund"}),
        ("TRANSFER_IN", ORDER),
    ]


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        ({f"k{n}": "v" for n in range(51)}, "51 keys"),
        ({"k" * 41: "v"}, "a 41-character key"),
        ({"": "v"}, "an empty key"),
        ({"k": "v" * 501}, "a 501-character value"),
        ({"k": 1}, "a number"),
        ({"k": None}, "a null"),
        ({"k": {"nested": "v"}}, "an object"),
        ({"k": "a\u0000b"}, "a NUL character"),
        (["k", "v"], "an array"),
        ("k=v", "a string"),
    ],
)
def test_metadata_beyond_its_bounds_is_422_and_changes_nothing(
    client: httpx.Client, database: TestDatabase, metadata: object, why: str
) -> None:
    wallet = created_wallet(client, 10)
    other = created_wallet(client)
    requests = [
        (OPERATION_PATH.format(wallet), {**operation("DEPOSIT", 1), "metadata": metadata}),
        (
            "/api/v1/operations/batch",
            {
                "operations": [
                    {
                        "wallet_uuid": wallet,
                        "operation": "DEPOSIT",
                        "amount": 1,
                        "metadata": metadata,
                    }
                ]
            },
        ),
        (
            "/api/v1/transfers",
            {
                "from_wallet_uuid": wallet,
                "to_wallet_uuid": other,
                "amount": 1,
                "metadata": metadata,
            },
        ),
        ("/api/v1/holds", {"wallet_uuid": wallet, "amount": 1, "metadata": metadata}),
    ]
    (wallets,) = database.fetch("SELECT count(*) FROM wallets")
    requests.append((f"{WALLETS}/create_wallet", {"metadata": metadata}))
    for path, body in requests:
        assert_problem(client.post(path, json=body), 422, "validation_error")
    assert client.get(f"{WALLETS}/{wallet}").json() == {"balance": 10}, why
    assert len(history(client, wallet)) == 1
    assert history(client, other) == []
    assert database.fetch("SELECT count(*) FROM wallets") == [wallets]


def test_the_largest_metadata_allowed_is_kept_whole(client: httpx.Client) -> None:
    wallet = created_wallet(client)
    largest = {f"{n:02d}".ljust(40, "k"): "v" * 500 for n in range(50)}
    answer = client.post(
        OPERATION_PATH.format(wallet), json={**operation("DEPOSIT", 1), "metadata": largest}
    )
    assert answer.status_code == 200, answer.text
    assert history(client, wallet)[0]["metadata"] == largest


def test_empty_metadata_is_none(client: httpx.Client) -> None:
    wallet = created_wallet(client)
    key = f"meta-{uuid.uuid4()}"
    path = OPERATION_PATH.format(wallet)
    first = client.post(
        path, json={**operation("DEPOSIT", 1), "metadata": {}}, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 200, first.text
    assert "metadata" not in history(client, wallet)[0]
    # The same request as one without metadata: replayed, not refused as another request.
    again = client.post(path, json=operation("DEPOSIT", 1), headers={"Idempotency-Key": key})
    assert again.status_code == 200, again.text
    assert again.headers.get("idempotent-replayed") == "true"


def test_metadata_is_part_of_the_request_a_key_stands_for(client: httpx.Client) -> None:
    payer, payee = created_wallet(client, 100), created_wallet(client)
    cases: list[tuple[str, dict[str, Any]]] = [
        (OPERATION_PATH.format(payer), operation("DEPOSIT", 1)),
        (
            "/api/v1/operations/batch",
            {"operations": [{"wallet_uuid": payer, "operation": "DEPOSIT", "amount": 1}]},
        ),
        ("/api/v1/transfers", {"from_wallet_uuid": payer, "to_wallet_uuid": payee, "amount": 1}),
        ("/api/v1/holds", {"wallet_uuid": payer, "amount": 1}),
    ]
    for path, body in cases:

        def with_metadata(metadata: dict[str, str], body: dict[str, Any] = body) -> dict[str, Any]:
            if "operations" in body:
                return {
                    "operations": [{**item, "metadata": metadata} for item in body["operations"]]
                }
            return {**body, "metadata": metadata}

        key = f"meta-{uuid.uuid4()}"
        first = client.post(
            path, json=with_metadata({"a": "1", "b": "2"}), headers={"Idempotency-Key": key}
        )
        assert first.status_code in (200, 201), first.text
        # The same object, its keys in another order: the same request, replayed.
        replay = client.post(
            path, json=with_metadata({"b": "2", "a": "1"}), headers={"Idempotency-Key": key}
        )
        assert replay.status_code == first.status_code, path
        assert replay.headers.get("idempotent-replayed") == "true", path
        assert replay.json() == first.json()
        # Another value, or none: another request under the same key.
        for other in (with_metadata({"a": "1", "b": "3"}), body):
            reused = client.post(path, json=other, headers={"Idempotency-Key": key})
            assert_problem(reused, 422, "idempotency_key_reused")
    # One entry each (the batch's, the transfer's, the hold's, the deposit's): none twice.
    assert [item.get("metadata") for item in history(client, payer)][:4] == [
        {"a": "1", "b": "2"}
    ] * 4


def test_the_history_filters_by_a_metadata_key_and_value(client: httpx.Client) -> None:
    wallet = created_wallet(client)
    for number in range(6):
        metadata = {"order_id": str(number % 3), "channel": "web" if number < 3 else "app"}
        kind = "DEPOSIT" if number % 2 == 0 else "WITHDRAW"
        amount = 10 if kind == "DEPOSIT" else 1
        answer = client.post(
            OPERATION_PATH.format(wallet), json={**operation(kind, amount), "metadata": metadata}
        )
        assert answer.status_code == 200, answer.text
    client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 1))

    def amounts(**params: Any) -> list[tuple[str, str]]:
        return [
            (item["metadata"]["order_id"], item["metadata"]["channel"])
            for item in every_entry(client, wallet, **params)
        ]

    assert amounts(metadata_key="order_id", metadata_value="1") == [("1", "app"), ("1", "web")]
    assert amounts(metadata_key="channel", metadata_value="app") == [
        ("2", "app"),
        ("1", "app"),
        ("0", "app"),
    ]
    assert amounts(metadata_key="channel", metadata_value="app", operation="WITHDRAW") == [
        ("2", "app"),
        ("0", "app"),
    ]
    assert amounts(metadata_key="order_id", metadata_value="none") == []
    assert amounts(metadata_key="channe", metadata_value="app") == []  # the key, exactly
    # With a period: of the two entries of order 2, the first only.
    entries = every_entry(client, wallet, metadata_key="order_id", metadata_value="2")
    assert len(entries) == 2
    first = entries[-1]["created_at"]
    assert [
        e["created_at"]
        for e in every_entry(
            client, wallet, metadata_key="order_id", metadata_value="2", to=entries[0]["created_at"]
        )
    ] == [first]


def test_a_metadata_key_without_its_value_is_422(client: httpx.Client) -> None:
    wallet = created_wallet(client)
    for params in (
        {"metadata_key": "a"},
        {"metadata_value": "b"},
        {"metadata_key": "", "metadata_value": "b"},
    ):
        assert_problem(
            client.get(f"{WALLETS}/{wallet}/operations", params=params), 422, "validation_error"
        )


def test_a_filtered_history_pages_without_duplicates_or_gaps_while_writes_go_on(
    client: httpx.Client,
) -> None:
    wallet = created_wallet(client)
    tagged = {"batch": "nightly"}
    batch = [
        {
            "wallet_uuid": wallet,
            "operation": "DEPOSIT",
            "amount": 1,
            **({"metadata": tagged} if n % 2 else {}),
        }
        for n in range(400)
    ]
    assert client.post("/api/v1/operations/batch", json={"operations": batch}).status_code == 200
    stop = threading.Event()

    def write() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=30) as writer:
            while not stop.is_set():
                writer.post(
                    OPERATION_PATH.format(wallet),
                    json={**operation("DEPOSIT", 1), "metadata": tagged},
                )

    writers = [threading.Thread(target=write) for _ in range(2)]
    for each in writers:
        each.start()
    try:
        ids: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {
                "limit": 7,
                "metadata_key": "batch",
                "metadata_value": "nightly",
            }
            page = client.get(
                f"{WALLETS}/{wallet}/operations",
                params={**params, **({"cursor": cursor} if cursor else {})},
            ).json()
            ids += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    finally:
        stop.set()
        for each in writers:
            each.join()
    assert len(ids) == len(set(ids)), "an entry on two pages"
    assert ids == sorted(ids, reverse=True)
    # Every tagged entry up to the first page's newest is there: none skipped.
    everything = every_entry(client, wallet)
    expected = [e["id"] for e in everything if e.get("metadata") == tagged and e["id"] <= ids[0]]
    assert ids == expected
    assert len(ids) >= 200


def test_an_event_shows_its_entries_metadata(client: httpx.Client, database: TestDatabase) -> None:
    wallet = created_wallet(client)
    answer = client.post(
        OPERATION_PATH.format(wallet), json={**operation("DEPOSIT", 1), "metadata": ORDER}
    )
    assert answer.status_code == 200, answer.text
    (entry,) = history(client, wallet)
    (row,) = database.fetch("SELECT id FROM events WHERE $1::bigint = ANY(ledger_ids)", entry["id"])
    event = client.get(f"/api/v1/events/{row['id']}")
    assert event.status_code == 200, event.text
    (shown,) = event.json()["data"]["entries"]
    assert shown["metadata"] == ORDER
    assert shown == {**entry, "wallet_uuid": wallet, "seq": 1}


def test_a_statement_shows_each_entrys_metadata(client: httpx.Client) -> None:
    wallet = created_wallet(client)
    for metadata in (ORDER, None):
        body = (
            operation("DEPOSIT", 1)
            if metadata is None
            else {**operation("DEPOSIT", 1), "metadata": metadata}
        )
        assert client.post(OPERATION_PATH.format(wallet), json=body).status_code == 200
    statement = f"{WALLETS}/{wallet}/statement"
    entries = client.get(statement).json()["entries"]
    assert [entry.get("metadata") for entry in entries] == [ORDER, None]
    lines = list(csv.DictReader(io.StringIO(client.get(statement, params={"format": "csv"}).text)))
    assert [json.loads(line["metadata"]) if line["metadata"] else None for line in lines[1:-1]] == [
        ORDER,
        None,
    ]


def test_a_refused_key_is_not_echoed_whole(client: httpx.Client) -> None:
    wallet = created_wallet(client)
    key = "k" * 5000
    body = {**operation("DEPOSIT", 1), "metadata": {key: "v"}}
    refused = assert_problem(
        client.post(OPERATION_PATH.format(wallet), json=body), 422, "validation_error"
    )
    assert key not in str(refused["detail"])
    assert key not in str(refused["errors"])
    assert "metadata" in str(refused["detail"])


def test_a_holds_metadata_goes_with_its_release_by_void_or_expiry(client: httpx.Client) -> None:
    wallet = created_wallet(client, 100)
    voided = client.post(
        "/api/v1/holds", json={"wallet_uuid": wallet, "amount": 5, "metadata": ORDER}
    )
    assert voided.status_code == 201, voided.text
    assert voided.json()["metadata"] == ORDER
    hold_id = voided.json()["hold_id"]
    assert client.get(f"/api/v1/holds/{hold_id}").json()["metadata"] == ORDER
    void = client.post(f"/api/v1/holds/{hold_id}/void")
    assert (void.status_code, void.json()["metadata"]) == (200, ORDER)
    expiring = {"wallet_uuid": wallet, "amount": 6, "expires_in": 1, "metadata": {"ride": "9"}}
    assert client.post("/api/v1/holds", json=expiring).status_code == 201
    plain = client.post("/api/v1/holds", json={"wallet_uuid": wallet, "amount": 7})
    assert plain.json()["metadata"] is None
    deadline = time.monotonic() + 30
    while len([e for e in history(client, wallet) if e["operation"] == "RELEASE"]) < 2:
        assert time.monotonic() < deadline, "the expired hold was not released"
        time.sleep(0.2)
    releases = [
        (entry["amount"], entry.get("metadata"))
        for entry in history(client, wallet)
        if entry["operation"] == "RELEASE"
    ]
    assert releases == [(6, {"ride": "9"}), (5, ORDER)]


def test_a_hold_event_shows_the_holds_metadata(
    client: httpx.Client, database: TestDatabase
) -> None:
    wallet = created_wallet(client, 10)
    hold = client.post(
        "/api/v1/holds", json={"wallet_uuid": wallet, "amount": 1, "metadata": ORDER}
    )
    assert hold.status_code == 201, hold.text
    (entry,) = [e for e in history(client, wallet) if e["operation"] == "HOLD"]
    (row,) = database.fetch("SELECT id FROM events WHERE $1::bigint = ANY(ledger_ids)", entry["id"])
    data = client.get(f"/api/v1/events/{row['id']}").json()["data"]
    assert data["hold"]["metadata"] == ORDER
    assert data["entries"][0]["metadata"] == ORDER


def test_a_transfer_shows_its_metadata_when_made_and_when_read(client: httpx.Client) -> None:
    payer, payee = created_wallet(client, 10), created_wallet(client)
    body = {"from_wallet_uuid": payer, "to_wallet_uuid": payee, "amount": 1, "metadata": ORDER}
    made = client.post("/api/v1/transfers", json=body)
    assert (made.status_code, made.json()["metadata"]) == (201, ORDER)
    read = client.get(f"/api/v1/transfers/{made.json()['transfer_id']}")
    assert (read.status_code, read.json()["metadata"]) == (200, ORDER)
    plain = client.post("/api/v1/transfers", json={**body, "metadata": None})
    assert plain.json()["metadata"] is None
    assert client.get(f"/api/v1/transfers/{plain.json()['transfer_id']}").json()["metadata"] is None


@pytest.mark.parametrize("number", ["1e5", "-6.8e+16", "2.5E-3"])
def test_a_number_with_an_exponent_is_no_string(client: httpx.Client, number: str) -> None:
    # JSON numbers written with an exponent were kept as their text, a `str`: a string
    # field (a metadata value, a description) took them as the string "1e5".
    wallet = created_wallet(client, 10)
    other = created_wallet(client)
    for path, body in (
        (
            OPERATION_PATH.format(wallet),
            f'{{"operation": "DEPOSIT", "amount": 1, "metadata": {{"k": {number}}}}}',
        ),
        (
            "/api/v1/transfers",
            f'{{"from_wallet_uuid": "{wallet}", "to_wallet_uuid": "{other}", "amount": 1,'
            f' "description": {number}}}',
        ),
    ):
        answer = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert_problem(answer, 422, "validation_error")
    assert client.get(f"{WALLETS}/{wallet}").json() == {"balance": 10}


def test_a_wallet_keeps_the_metadata_it_was_made_with(client: httpx.Client) -> None:
    """Shown in the answer that made it and by `/balances`; part of the request its key
    stands for; a wallet made without any answers the specification's body."""
    key = {"Idempotency-Key": f"wallet-meta-{uuid.uuid4()}"}
    made = client.post(f"{WALLETS}/create_wallet", json={"metadata": ORDER}, headers=key)
    assert made.status_code == 201, made.text
    wallet = made.json()["wallet_uuid"]
    assert made.json() == {"wallet_uuid": wallet, "metadata": ORDER}
    again = client.post(
        f"{WALLETS}/create_wallet", json={"metadata": dict(reversed(ORDER.items()))}, headers=key
    )
    assert (again.status_code, again.json()) == (201, made.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(f"{WALLETS}/create_wallet", json={"metadata": {"a": "1"}}, headers=key)
    assert_problem(other, 422, "idempotency_key_reused")
    assert client.get(f"{WALLETS}/{wallet}/balances").json() == {
        "balance": 0,
        "held": 0,
        "available": 0,
        "currency": "USD",
        "metadata": ORDER,
    }
    assert client.get(f"{WALLETS}/{wallet}").json() == {"balance": 0}
    yen = client.post(
        f"{WALLETS}/create_wallet", json={"currency": "JPY", "metadata": {"a": "1"}}
    ).json()
    assert yen == {"wallet_uuid": yen["wallet_uuid"], "currency": "JPY", "metadata": {"a": "1"}}
    plain = created_wallet(client)
    assert "metadata" not in client.get(f"{WALLETS}/{plain}/balances").json()
    empty = client.post(f"{WALLETS}/create_wallet", json={"metadata": {}})
    assert list(empty.json()) == ["wallet_uuid"]
