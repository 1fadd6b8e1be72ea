"""The feed over HTTP, against real PostgreSQL and Gunicorn with 2 workers: one event for
every committed change and none for a refusal, each with the ledger rows it wrote and
their wallets' gapless numbers; whose events an owner sees; an order in which no event is
ever skipped, even one whose transaction began before a page was read and committed after
it (held open here across reads), and under writers in several processes; long-poll,
filters, cursors; events off."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import (
    EVERY_SCOPE,
    OPERATION_PATH,
    Key,
    TestDatabase,
    batch_made_to_wait,
    create_key,
    operation,
)
from tests.support import created_wallet as created
from wallet_api.devtools.server import ServiceProcess

EVENTS = "/api/v1/events"
WALLETS = "/api/v1/wallets"


@pytest.fixture(scope="module")
def keyed(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service(AUTH_MODE="keys", RATE_LIMIT_RATE="100000", RATE_LIMIT_BURST="100000")


def owner_client(service: ServiceProcess, database: TestDatabase) -> httpx.Client:
    """A client with the key of a new owner (every scope): its feed holds only what it
    does here."""
    key = create_key(database, f"owner-{uuid.uuid4().hex[:12]}", *EVERY_SCOPE)
    return httpx.Client(base_url=service.base_url, timeout=60, headers=key.headers)


def key_of(database: TestDatabase, owner: str) -> Key:
    return create_key(database, owner, *EVERY_SCOPE)


def read_all(client: httpx.Client, after: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every event the feed shows the client now, from `after`, page by page."""
    events: list[dict[str, Any]] = []
    while True:
        query = {"limit": 3, **params, **({"after": after} if after else {})}
        response = client.get(EVENTS, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["items"]
        if not page["items"]:
            return events
        after = page["next_cursor"]


def summary(events: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, int]]]]:
    """Each event's type and its rows' (operation, amount in cents)."""
    return [
        (
            event["type"],
            [(e["operation"], round(e["amount"] * 100)) for e in event["data"]["entries"]],
        )
        for event in events
    ]


def test_every_change_is_one_event_and_a_refusal_none(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    with owner_client(keyed, database) as client:
        wallet = created(client, 10)
        other = created(client)
        assert client.post(OPERATION_PATH.format(wallet), json=operation("WITHDRAW", 3)).is_success
        refused = client.post(OPERATION_PATH.format(wallet), json=operation("WITHDRAW", 1000))
        assert refused.status_code == 400
        batch = client.post(
            "/api/v1/operations/batch",
            json={
                "operations": [
                    {"wallet_uuid": wallet, "operation": "DEPOSIT", "amount": 1},
                    {"wallet_uuid": other, "operation": "WITHDRAW", "amount": 5},  # refused
                    {"wallet_uuid": other, "operation": "DEPOSIT", "amount": 2},
                ]
            },
        )
        assert batch.status_code == 200, batch.text
        moved = client.post(
            "/api/v1/transfers",
            json={"from_wallet_uuid": wallet, "to_wallet_uuid": other, "amount": 4},
        )
        assert moved.status_code == 201, moved.text
        transfer_id = moved.json()["transfer_id"]
        reversed_ = client.post("/api/v1/reversals", json={"transfer_id": transfer_id})
        assert reversed_.status_code == 201, reversed_.text
        hold = client.post("/api/v1/holds", json={"wallet_uuid": wallet, "amount": 2}).json()
        part = client.post(
            f"/api/v1/holds/{hold['hold_id']}/capture", json={"amount": 0.5, "final": False}
        )
        assert part.status_code == 200, part.text
        last = client.post(f"/api/v1/holds/{hold['hold_id']}/capture", json={"amount": 0.5})
        assert last.status_code == 200, last.text
        voided = client.post("/api/v1/holds", json={"wallet_uuid": wallet, "amount": 1}).json()
        assert client.post(f"/api/v1/holds/{voided['hold_id']}/void").status_code == 200
        again = client.post(f"/api/v1/holds/{voided['hold_id']}/void")
        assert again.status_code == 409

        events = read_all(client)

    assert summary(events) == [
        ("wallet.created", []),
        ("operation.applied", [("DEPOSIT", 1000)]),
        ("wallet.created", []),
        ("operation.applied", [("WITHDRAW", 300)]),
        ("operation.applied", [("DEPOSIT", 100)]),
        ("operation.applied", [("DEPOSIT", 200)]),
        ("transfer.created", [("TRANSFER_OUT", 400), ("TRANSFER_IN", 400)]),
        ("reversal.created", [("REVERSAL_OUT", 400), ("REVERSAL_IN", 400)]),
        ("hold.created", [("HOLD", 200)]),
        ("hold.captured", [("CAPTURE", 50)]),
        ("hold.captured", [("CAPTURE", 50), ("RELEASE", 100)]),
        ("hold.created", [("HOLD", 100)]),
        ("hold.voided", [("RELEASE", 100)]),
    ]
    ids = [event["id"] for event in events]
    assert len(set(ids)) == len(ids)
    # Each wallet's rows are numbered 1, 2, 3, ... in the order its events came.
    numbers: dict[str, list[int]] = {}
    for event in events:
        for entry in event["data"]["entries"]:
            numbers.setdefault(entry["wallet_uuid"], []).append(entry["seq"])
    assert numbers == {wallet: list(range(1, 12)), other: [1, 2, 3]}
    # The rows are the history's, balance after each included.
    by_id = {
        item["id"]: item
        for item in client_history(keyed, database, wallet) + client_history(keyed, database, other)
    }
    for event in events:
        for entry in event["data"]["entries"]:
            shown = {k: v for k, v in entry.items() if k not in {"wallet_uuid", "seq"}}
            history = {k: v for k, v in by_id[entry["id"]].items() if k != "reversed_by_entry_id"}
            assert shown == history
    captured = events[10]["data"]
    assert captured["hold"]["hold_id"] == hold["hold_id"]
    assert captured["hold"]["amount"] == 2
    assert events[0]["data"] == {"wallet_uuid": wallet, "currency": "USD", "entries": []}


def client_history(service: ServiceProcess, database: TestDatabase, wallet: str) -> list[Any]:
    """The wallet's whole history, read as its owner in SQL-free terms: the rows' owner."""
    (row,) = database.fetch("SELECT owner FROM wallets WHERE id = $1", uuid.UUID(wallet))
    with httpx.Client(
        base_url=service.base_url, headers=key_of(database, row["owner"]).headers
    ) as client:
        items: list[Any] = []
        cursor = None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = client.get(f"{WALLETS}/{wallet}/operations", params=params).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items


def test_an_owner_sees_its_own_events_and_its_side_of_a_transfer_to_another(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    with owner_client(keyed, database) as alice, owner_client(keyed, database) as bob:
        payer = created(alice, 10)
        payee = created(bob)
        moved = alice.post(
            "/api/v1/transfers",
            json={"from_wallet_uuid": payer, "to_wallet_uuid": payee, "amount": 4},
        )
        assert moved.status_code == 201, moved.text
        alices, bobs = read_all(alice), read_all(bob)
        assert summary(alices) == [
            ("wallet.created", []),
            ("operation.applied", [("DEPOSIT", 1000)]),
            ("transfer.created", [("TRANSFER_OUT", 400)]),
        ]
        assert summary(bobs) == [
            ("wallet.created", []),
            ("transfer.created", [("TRANSFER_IN", 400)]),
        ]
        # Neither sees the other's balance, nor reads the other's event by id.
        assert alices[2]["data"]["wallet_uuid"] == payer
        assert bobs[1]["data"]["wallet_uuid"] == payee
        assert bobs[1]["data"]["entries"][0]["balance_after"] == 4
        for event in alices:
            assert bob.get(f"{EVENTS}/{event['id']}").status_code == 404
            assert alice.get(f"{EVENTS}/{event['id']}").json() == event
        missing = bob.get(f"{EVENTS}/{alices[0]['id']}")
        assert missing.json()["code"] == "event_not_found"
        # A capture into Bob's wallet: his side of it, without Alice's hold.
        hold = alice.post("/api/v1/holds", json={"wallet_uuid": payer, "amount": 2}).json()
        captured = alice.post(
            f"/api/v1/holds/{hold['hold_id']}/capture", json={"to_wallet_uuid": payee}
        )
        assert captured.status_code == 200, captured.text
        (alice_capture,) = read_all(alice, type="hold.captured")
        (bob_capture,) = read_all(bob, type="hold.captured")
        assert alice_capture["data"]["hold"]["hold_id"] == hold["hold_id"]
        assert [e["operation"] for e in alice_capture["data"]["entries"]] == ["CAPTURE"]
        assert [e["operation"] for e in bob_capture["data"]["entries"]] == ["CAPTURE_IN"]
        assert "hold" not in bob_capture["data"]


def test_a_transaction_open_across_a_read_is_not_skipped(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    """A writer that drew its event's id first and commits last: a reader that reads
    between is held before it, and sees both once it commits, in commit-safe order. (A
    feed that went by id alone would return the later event first, then never the
    earlier one.)"""
    with owner_client(keyed, database) as client:
        wallet = created(client)
        (row,) = database.fetch("SELECT owner FROM wallets WHERE id = $1", uuid.UUID(wallet))
        owner = row["owner"]
        cursor = client.get(EVENTS).json()["next_cursor"]

        async def scenario() -> tuple[list[Any], list[Any], list[Any]]:
            slow = await asyncpg.connect(database.url())
            try:
                transaction = slow.transaction()
                await transaction.start()
                # The slow writer: its event is written, its transaction not committed.
                early = await slow.fetchval(
                    "INSERT INTO events (type, owner, wallet_id) "
                    "VALUES ('operation.applied', $1, $2) RETURNING id",
                    owner,
                    uuid.UUID(wallet),
                )
                deposit = await asyncio.to_thread(
                    client.post, OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 1)
                )
                assert deposit.status_code == 200
                (late,) = await asyncio.to_thread(
                    database.fetch,
                    "SELECT id FROM events WHERE wallet_id = $1 AND id > $2",
                    uuid.UUID(wallet),
                    early,
                )
                assert late["id"] > early  # drawn after, committed before
                while_open = await asyncio.to_thread(client.get, EVENTS, params={"after": cursor})
                page = while_open.json()
                await transaction.commit()
            finally:
                await slow.close()
            after_commit = await asyncio.to_thread(read_all, client, page["next_cursor"])
            return page["items"], after_commit, [early, late["id"]]

        held_back, then, ids = asyncio.run(scenario())
    assert held_back == []  # the committed deposit waits behind the open transaction
    assert [event["id"] for event in then] == ids


def test_readers_following_writers_in_several_processes_see_every_event_once(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    """Deposits from many connections (two worker processes, each writing in batches)
    while a reader follows the feed: what it saw, page after page, is every event the
    owner's wallets got, each once, no matter the order they committed in."""
    key = key_of(database, f"owner-{uuid.uuid4().hex[:12]}")
    with httpx.Client(base_url=keyed.base_url, headers=key.headers, timeout=60) as client:
        wallets = [created(client) for _ in range(8)]
        start = client.get(EVENTS).json()["next_cursor"]
        start = read_cursor_at_end(client, start)

    async def run() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        done = asyncio.Event()
        async with httpx.AsyncClient(
            base_url=keyed.base_url, headers=key.headers, timeout=60
        ) as http:

            async def write(worker: int) -> None:
                for n in range(60):
                    wallet = wallets[(worker + n) % len(wallets)]
                    response = await http.post(
                        OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 1)
                    )
                    assert response.status_code == 200, response.text

            async def follow() -> None:
                after = start
                while True:
                    finished = done.is_set()
                    page = (await http.get(EVENTS, params={"after": after, "limit": 7})).json()
                    seen.extend(page["items"])
                    after = page["next_cursor"]
                    if finished and not page["items"]:
                        return

            reader = asyncio.create_task(follow())
            await asyncio.gather(*(write(worker) for worker in range(16)))
            done.set()
            await reader
        return seen

    seen = asyncio.run(run())
    ids = [event["id"] for event in seen]
    assert len(ids) == len(set(ids)) == 16 * 60
    rows = database.fetch(
        "SELECT count(*) AS n FROM wallet_operations WHERE wallet_id = ANY($1::uuid[])",
        [uuid.UUID(w) for w in wallets],
    )
    assert rows[0]["n"] == 16 * 60
    numbers: dict[str, list[int]] = {}
    for event in seen:
        (entry,) = event["data"]["entries"]
        numbers.setdefault(entry["wallet_uuid"], []).append(entry["seq"])
    # Per wallet, the events came in its ledger's order, every number once.
    for wallet in wallets:
        assert numbers[wallet] == list(range(1, len(numbers[wallet]) + 1))


def test_a_wallets_events_are_in_its_order_when_a_writer_waited_for_another(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    """A write over wallets A < B < X (an atomic batch: one transaction, locks in id
    order) locks A, and with it gets its transaction id, then waits for B; meanwhile a
    deposit to X, a later transaction, commits. The batch then writes X's next row: in the
    feed, after the deposit's event, as in X's ledger (a feed in the order of the
    transactions' own ids put it first)."""
    with owner_client(keyed, database) as client:
        a, b, x = sorted(created(client) for _ in range(3))
        cursor = read_cursor_at_end(client, client.get(EVENTS).json()["next_cursor"])

        def deposit() -> None:
            ok = client.post(OPERATION_PATH.format(x), json=operation("DEPOSIT", 2))
            assert ok.status_code == 200, ok.text

        batch = asyncio.run(batch_made_to_wait(client, database, (a, b, x), deposit))
        assert batch.status_code == 200, batch.text
        events = read_all(client, cursor)
    rows = [entry for event in events for entry in event["data"]["entries"]]
    assert [(r["wallet_uuid"], r["seq"]) for r in rows if r["wallet_uuid"] == x] == [(x, 1), (x, 2)]
    assert [r["amount"] for r in rows if r["wallet_uuid"] == x] == [2, 1]


def read_cursor_at_end(client: httpx.Client, after: str) -> str:
    while True:
        page = client.get(EVENTS, params={"after": after, "limit": 500}).json()
        if not page["items"]:
            return str(page["next_cursor"])
        after = page["next_cursor"]


def test_filters_long_poll_and_cursors(keyed: ServiceProcess, database: TestDatabase) -> None:
    with owner_client(keyed, database) as client:
        wallet = created(client, 5)
        assert summary(read_all(client, type="operation.applied")) == [
            ("operation.applied", [("DEPOSIT", 500)])
        ]
        both = read_all(client, type=["wallet.created", "operation.applied"])
        assert [event["type"] for event in both] == ["wallet.created", "operation.applied"]
        end = read_cursor_at_end(client, client.get(EVENTS).json()["next_cursor"])
        empty = client.get(EVENTS, params={"after": end})
        assert empty.json() == {"items": [], "next_cursor": end}
        # A filtered page that is not full goes on from the last event it examined, not
        # from its last match: the next look (a long-poll's) starts there.
        none = client.get(EVENTS, params={"type": "transfer.created"}).json()
        assert none == {"items": [], "next_cursor": end}

        def deposit_soon() -> None:
            time.sleep(0.5)
            client.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 1))

        async def poll() -> httpx.Response:
            writer = asyncio.create_task(asyncio.to_thread(deposit_soon))
            response = await asyncio.to_thread(
                client.get, EVENTS, params={"after": end, "wait": 10}
            )
            await writer
            return response

        # Asked before the deposit was sent, answered with it: the page waited for it.
        response = asyncio.run(poll())
        assert summary(response.json()["items"]) == [("operation.applied", [("DEPOSIT", 100)])]
        bad_params: list[dict[str, str | int]] = [
            {"after": "zz"},
            {"after": "1-8000000000000000"},
            {"limit": 0},
            {"limit": 501},
            {"type": "wallet.deleted"},
            {"wait": 31},
        ]
        for bad in bad_params:
            refused = client.get(EVENTS, params=bad)
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.json()["code"] == "validation_error"


def test_with_events_off_none_is_written(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    service = start_service(EVENTS_ENABLED="false")
    before = database.fetch("SELECT count(*) AS n FROM events")[0]["n"]
    with httpx.Client(base_url=service.base_url) as client:
        wallet = created(client, 5)
        assert client.post(OPERATION_PATH.format(wallet), json=operation("WITHDRAW", 1)).is_success
    assert database.fetch("SELECT count(*) AS n FROM events")[0]["n"] == before
    # The ledger is numbered all the same.
    rows = database.fetch(
        "SELECT seq FROM wallet_operations WHERE wallet_id = $1 ORDER BY id", uuid.UUID(wallet)
    )
    assert [row["seq"] for row in rows] == [1, 2]


def test_an_events_amounts_are_in_its_wallets_currency(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    """`data.currency` is the wallet's, and every amount of the event (its entries', its
    hold's, its monitor's) is in that currency's units: yen, fils."""
    with owner_client(keyed, database) as client:
        yen = client.post(f"{WALLETS}/create_wallet", json={"currency": "JPY"}).json()
        dinar = client.post(f"{WALLETS}/create_wallet", json={"currency": "KWD"}).json()
        for wallet, amount, threshold in ((yen, "1500", "1000"), (dinar, "1.234", "1.001")):
            path = f"{WALLETS}/{wallet['wallet_uuid']}"
            monitor = client.post(
                f"{path}/balance_monitors", json={"condition": "above", "threshold": threshold}
            )
            assert monitor.status_code == 201, monitor.text
            assert monitor.json()["currency"] == wallet["currency"]
            deposit = client.post(
                f"{path}/operation", json={"operation": "DEPOSIT", "amount": amount}
            )
            assert deposit.status_code == 200, deposit.text
            hold = client.post(
                "/api/v1/holds", json={"wallet_uuid": wallet["wallet_uuid"], "amount": amount}
            )
            assert hold.status_code == 201, hold.text
        events = read_all(client)
    texts = {
        (event["data"]["currency"], event["type"]): json.dumps(event["data"]) for event in events
    }
    by_type = {(event["data"]["currency"], event["type"]): event["data"] for event in events}
    assert by_type["JPY", "operation.applied"]["entries"][0]["amount"] == 1500
    assert by_type["KWD", "operation.applied"]["entries"][0]["amount"] == 1.234
    assert by_type["JPY", "hold.created"]["hold"]["amount"] == 1500
    assert by_type["KWD", "hold.created"]["hold"]["amount"] == 1.234
    assert by_type["KWD", "balance_monitor.triggered"]["monitor"]["threshold"] == 1.001
    assert '"available": 1.234' in texts["KWD", "balance_monitor.triggered"]
