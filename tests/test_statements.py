"""Statements (`GET /api/v1/wallets/{id}/statement`): the opening balance, every entry of
the period and the closing balance, in JSON and in CSV, consistent with each other and
with the history, in one snapshot while writes go on; bounded per worker."""

from __future__ import annotations

import csv
import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    OPERATION_PATH,
    TestDatabase,
    deposit_many,
    launch_service,
    migrated,
    operation,
    two_owners,
)
from tests.support import created_wallet as created
from tests.test_ledger_time import change, every_entry
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess
from wallet_api.statements.repository import CSV_COLUMNS

WALLETS = "/api/v1/wallets"


def statement(client: httpx.Client, wallet: str, **params: Any) -> httpx.Response:
    return client.get(f"{WALLETS}/{wallet}/statement", params=params)


def cents(value: object) -> int:
    return int(Decimal(str(value)) * 100)


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def assert_adds_up(opening: int, changes: list[int], afters: list[int], closing: int) -> None:
    """Each entry's balance after is the one before it plus its change; the closing is
    the opening plus every change."""
    balance = opening
    for each, after in zip(changes, afters, strict=True):
        balance += each
        assert balance == after
    assert closing - opening == sum(changes)
    assert balance == closing


@pytest.fixture(scope="module")
def ledger(service: ServiceProcess) -> Iterator[tuple[httpx.Client, str, list[dict[str, Any]]]]:
    """A wallet with deposits, withdrawals, transfers both ways, a hold captured in part
    and a description a spreadsheet would run; its history, oldest first."""
    with httpx.Client(base_url=service.base_url, timeout=60) as client:
        wallet, other = created(client, 100), created(client, 100)
        for n in range(1, 13):
            kind = "WITHDRAW" if n % 3 == 0 else "DEPOSIT"
            ok = client.post(OPERATION_PATH.format(wallet), json=operation(kind, f"{n}.25"))
            assert ok.status_code == 200, ok.text
        for source, target in ((wallet, other), (other, wallet)):
            moved = client.post(
                "/api/v1/transfers",
                json={
                    "from_wallet_uuid": source,
                    "to_wallet_uuid": target,
                    "amount": 7,
                    "description": "=HYPERLINK(1)",
                },
            )
            assert moved.status_code == 201, moved.text
        hold = client.post("/api/v1/holds", json={"wallet_uuid": wallet, "amount": 20})
        assert hold.status_code == 201, hold.text
        captured = client.post(
            f"/api/v1/holds/{hold.json()['hold_id']}/capture", json={"amount": 5}
        )
        assert captured.status_code == 200, captured.text
        yield client, wallet, every_entry(client, wallet)[::-1]


def test_a_json_statement_adds_up_and_is_the_history_of_its_period(
    ledger: tuple[httpx.Client, str, list[dict[str, Any]]],
) -> None:
    client, wallet, history = ledger
    times = [datetime.fromisoformat(e["created_at"]) for e in history]
    for since, until in ((None, None), (times[3], times[-2]), (times[0], None), (None, times[5])):
        params = {
            **({"from": since.isoformat()} if since else {}),
            **({"to": until.isoformat()} if until else {}),
        }
        response = statement(client, wallet, **params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        expected = [
            e
            for e, t in zip(history, times, strict=True)
            if (since is None or t >= since) and (until is None or t < until)
        ]
        assert [e["id"] for e in body["entries"]] == [e["id"] for e in expected]
        for entry, known in zip(body["entries"], expected, strict=True):
            assert cents(entry["change"]) == change(known)
            assert entry["amount"] == known["amount"]
            assert datetime.fromisoformat(entry["created_at"]) == datetime.fromisoformat(
                known["created_at"]
            )
            assert entry.get("description") == known.get("description")
        assert_adds_up(
            cents(body["opening_balance"]),
            [cents(e["change"]) for e in body["entries"]],
            [cents(e["balance_after"]) for e in body["entries"]],
            cents(body["closing_balance"]),
        )
        opening = (
            0
            if since is None
            else cents(
                client.get(
                    f"{WALLETS}/{wallet}",
                    params={"at": (since - timedelta(microseconds=1)).isoformat()},
                ).json()["balance"]
            )
        )
        assert cents(body["opening_balance"]) == opening
        assert body["wallet_uuid"] == wallet
    kinds = {e["operation"] for e in history}
    assert kinds >= {"DEPOSIT", "WITHDRAW", "TRANSFER_IN", "TRANSFER_OUT", "HOLD", "CAPTURE"}


def test_a_csv_statement_has_stable_columns_and_adds_up(
    ledger: tuple[httpx.Client, str, list[dict[str, Any]]],
) -> None:
    client, wallet, history = ledger
    since = datetime.fromisoformat(history[2]["created_at"])
    response = statement(client, wallet, format="csv", **{"from": since.isoformat()})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.text.splitlines()[0] == ",".join(CSV_COLUMNS)
    rows = csv_rows(response.text)
    opening, *entries, closing = rows
    assert (opening["operation"], closing["operation"]) == ("OPENING_BALANCE", "CLOSING_BALANCE")
    assert [int(row["entry_id"]) for row in entries] == [e["id"] for e in history[2:]]
    assert_adds_up(
        cents(opening["balance_after"]),
        [cents(row["change"]) for row in entries],
        [cents(row["balance_after"]) for row in entries],
        cents(closing["balance_after"]),
    )
    json_form = statement(client, wallet, **{"from": since.isoformat()}).json()
    assert cents(closing["balance_after"]) == cents(json_form["closing_balance"])
    assert all(len(row["amount"].split(".")[1]) == 2 for row in entries)  # 12.50, not 12.5
    # A description a spreadsheet would run as a formula is written after a quote.
    described = [row["description"] for row in entries if row["description"]]
    assert described
    assert set(described) == {"'=HYPERLINK(1)"}


def test_a_statement_is_one_snapshot_while_writes_go_on(service: ServiceProcess) -> None:
    """Thousands of entries (more than one chunk of each form) read while deposits keep
    coming: each form adds up, every entry once, in the ledger's order."""
    with httpx.Client(base_url=service.base_url, timeout=60) as client:
        wallet = created(client)
        deposit_many(client, wallet, 5)
        stop = threading.Event()

        def keep_writing() -> None:
            with httpx.Client(base_url=service.base_url, timeout=60) as http:
                while not stop.is_set():
                    http.post(OPERATION_PATH.format(wallet), json=operation("DEPOSIT", 1))

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            bodies = [statement(client, wallet) for _ in range(3)]
            texts = [statement(client, wallet, format="csv") for _ in range(3)]
        finally:
            stop.set()
            writer.join()
    for response in bodies:
        body = response.json()
        ids = [e["id"] for e in body["entries"]]
        assert len(ids) >= 5000
        assert ids == sorted(set(ids))
        assert [e["seq"] for e in body["entries"]] == list(range(1, len(ids) + 1))
        assert_adds_up(
            0,
            [cents(e["change"]) for e in body["entries"]],
            [cents(e["balance_after"]) for e in body["entries"]],
            cents(body["closing_balance"]),
        )
    for response in texts:
        opening, *entries, closing = csv_rows(response.text)
        assert len(entries) >= 5000
        assert [int(row["seq"]) for row in entries] == list(range(1, len(entries) + 1))
        assert_adds_up(
            cents(opening["balance_after"]),
            [cents(row["change"]) for row in entries],
            [cents(row["balance_after"]) for row in entries],
            cents(closing["balance_after"]),
        )


def test_statements_refuse_what_they_cannot_give(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    keyed = start_service(AUTH_MODE="keys")
    with two_owners(keyed, database) as (owner, other):
        wallet = created(owner, 3)
        assert statement(owner, wallet).status_code == 200
        for form in ("json", "csv"):
            assert_problem(statement(other, wallet, format=form), 404, "wallet_not_found")
        assert_problem(statement(owner, str(uuid.uuid4())), 404, "wallet_not_found")
        backwards = {"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
        assert_problem(statement(owner, wallet, **backwards), 422, "validation_error")
        assert_problem(statement(owner, wallet, format="xml"), 422, "validation_error")
        naive = statement(owner, wallet, **{"from": "2026-12-01T00:00:00"})
        assert_problem(naive, 422, "validation_error")


#: Entries of the statements that the readers do not read: their CSV (about 15 MB each)
#: must not fit in what the kernel buffers between the worker and a reader (the worker's
#: send buffer grows to `net.ipv4.tcp_wmem`'s maximum, 4 MB by default; a reader's receive
#: buffer stays near its default while it reads nothing): a statement sent whole is done,
#: and gives its place back (30,000 entries, 2.3 MB, sometimes did).
UNREAD_ENTRIES = 200_000


def test_a_worker_sends_a_bounded_number_of_statements_at_once(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    """With one worker: four statements that their readers do not read hold its four
    places; a fifth is refused (429, Retry-After); once they are closed, it is served."""
    single = start_service(WORKERS_COUNT="1")
    with httpx.Client(base_url=single.base_url, timeout=60) as client:
        wallet = created(client)
        # Written in SQL (a deposit of 1.00 each, a microsecond apart, the wallet moved to
        # match: the ledger still adds up): quicker than 200 batches through the service.
        database.fetch(
            "WITH moved AS (UPDATE wallets SET balance = 100 * $2, seq = $2,"
            " last_entry_at = now() + $2 * interval '1 microsecond' WHERE id = $1::uuid)"
            " INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after,"
            " created_at, seq) SELECT $1::uuid, 'DEPOSIT', 100, 100 * g,"
            " now() + g * interval '1 microsecond', g FROM generate_series(1, $2::bigint) AS g",
            wallet,
            UNREAD_ENTRIES,
        )
        path = f"{WALLETS}/{wallet}/statement"
        readers = [httpx.Client(base_url=single.base_url, timeout=60) for _ in range(4)]
        streams = [reader.stream("GET", path, params={"format": "csv"}) for reader in readers]
        try:
            for stream in streams:
                assert stream.__enter__().status_code == 200
            refused = statement(client, wallet)
            assert_problem(refused, 429, "too_many_statements")
            assert refused.headers["retry-after"] == "1"
        finally:
            for stream, reader in zip(streams, readers, strict=True):
                stream.__exit__(None, None, None)
                reader.close()
        for _ in range(100):
            served = statement(client, wallet, **{"to": "2026-01-01T00:00:00Z"})
            if served.status_code != 429:
                break
            threading.Event().wait(0.1)
        assert served.status_code == 200, served.text


def test_a_statement_cut_off_mid_stream_is_counted_with_the_status_it_was_sent_with(
    make_database: Callable[[], TestDatabase], tmp_path: Path
) -> None:
    """A CSV statement whose database session ends while it streams (an administrator's
    `pg_terminate_backend`): the client got 200 and a cut-off body, and the metrics count
    the request under the status it was sent with (200), not as a 500 answered to no
    one."""
    database = migrated(make_database())
    wallet = _large_ledger(database)
    with (
        launch_service(
            database, tmp_path / "service.log", {"WORKERS_COUNT": "1"}
        ).serving() as service,
        httpx.Client(base_url=service.base_url, timeout=60) as client,
    ):
        with client.stream("GET", f"{WALLETS}/{wallet}/statement", params={"format": "csv"}) as got:
            assert got.status_code == 200
            deadline = time.monotonic() + 30
            copying: list[Any] = []
            while not copying and time.monotonic() < deadline:  # the COPY waits on its reader
                copying = database.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY%' AND pid <> "
                    "pg_backend_pid()"
                )
                threading.Event().wait(0.05)
            assert copying, "the statement's COPY was never seen running"
            database.fetch("SELECT pg_terminate_backend($1)", copying[0]["pid"])
            with pytest.raises(httpx.HTTPError):
                got.read()
        metrics = client.get("/metrics").text
    route = f'method="GET",route="{WALLETS}/{{wallet_uuid}}/statement"'
    assert f'wallet_http_request_duration_seconds_count{{{route},status="200"}} 1.0' in metrics
    assert f'{route},status="500"' not in metrics


def _large_ledger(database: TestDatabase) -> uuid.UUID:
    """A wallet of 200,000 entries (a CSV statement of about 60 MB: more than every
    buffer on its way holds), written in SQL (200,000 requests would take long)."""
    wallet = uuid.uuid4()
    database.fetch(
        "WITH made AS (INSERT INTO wallets (id, currency, currency_exponent, balance, seq)"
        " VALUES ($1, 'USD', 2, 200000, 200000))"
        " INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after, seq,"
        " description) SELECT $1, 'DEPOSIT', 1, g, g, repeat('x', 200)"
        " FROM generate_series(1, 200000) AS g",
        wallet,
    )
    return wallet


def test_a_statement_read_slowly_outlasts_the_statement_timeout(
    make_database: Callable[[], TestDatabase], tmp_path: Path
) -> None:
    """A CSV statement of 200,000 entries (about 60 MB: more than every buffer on its way
    holds) whose reader waits 2 seconds before it reads, from a service whose statement
    timeout is half a second: its `COPY` waits on the reader, under the statement's own
    limit (15 minutes), and the whole statement arrives, its closing line included. On a
    database of its own."""
    database = migrated(make_database())
    wallet = _large_ledger(database)
    settings = {"DB_STATEMENT_TIMEOUT_MS": "500", "WORKERS_COUNT": "1"}
    with (
        launch_service(database, tmp_path / "service.log", settings).serving() as patient,
        httpx.Client(base_url=patient.base_url, timeout=60) as client,
        client.stream("GET", f"{WALLETS}/{wallet}/statement", params={"format": "csv"}) as got,
    ):
        assert got.status_code == 200
        time.sleep(2)  # every buffer on the way fills: the copy waits on its reader
        text = got.read().decode()
    _, *entries, closing = csv_rows(text)
    assert len(entries) == 200_000
    assert closing["operation"] == "CLOSING_BALANCE"
    assert cents(closing["balance_after"]) == 200_000
