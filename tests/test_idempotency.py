"""Idempotency-Key: a retried request is answered from what the first one did, never
applied twice, under any concurrency, and kept for the configured retention."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import (
    Key,
    TestDatabase,
    assert_ledger_consistent,
    create_key,
    launch_service,
    migrated,
    operation,
)
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess

REPLAYED = "idempotent-replayed"


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


def post(
    client: httpx.Client, wallet: str, body: dict[str, object], key: str | None
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(f"/api/v1/wallets/{wallet}/operation", json=body, headers=headers)


def test_a_retried_deposit_is_answered_again_and_applied_once(
    client: httpx.Client, wallet: str, database: TestDatabase
) -> None:
    key = new_key()
    first = post(client, wallet, operation("DEPOSIT", "10.50"), key)
    assert first.json() == {"status": "success", "balance": 10.5}
    assert REPLAYED not in first.headers
    again = post(client, wallet, operation("DEPOSIT", 10.5), key)  # same amount, other form
    assert again.status_code == 200
    assert again.text == first.text
    assert again.headers[REPLAYED] == "true"
    assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 10.5}
    assert len(assert_ledger_consistent(database, wallet)) == 1


def test_a_replay_is_byte_for_byte_the_first_answer_whatever_the_balance(
    client: httpx.Client, wallet: str
) -> None:
    # The stored answer of a keyed deposit is rendered by the write statement (SQL) and the
    # first answer by Python: every shape of a balance must come out the same in both.
    deposits = ["0.05", "0.45", "0.5", "0.1", "1.9", "10", "12333.67", "9999999987653.32"]
    balances = []
    for amount in deposits:
        key = new_key()
        first = post(client, wallet, operation("DEPOSIT", amount), key)
        assert first.status_code == 200
        again = post(client, wallet, operation("DEPOSIT", amount), key)
        assert again.headers[REPLAYED] == "true"
        assert again.text == first.text
        balances.append(first.text)
    assert balances == [
        '{"status":"success","balance":0.05}',
        '{"status":"success","balance":0.5}',
        '{"status":"success","balance":1}',
        '{"status":"success","balance":1.1}',
        '{"status":"success","balance":3}',
        '{"status":"success","balance":13}',
        '{"status":"success","balance":12346.67}',
        '{"status":"success","balance":9999999999999.99}',
    ]


def test_a_refusal_is_replayed_even_after_the_balance_has_changed(
    client: httpx.Client, wallet: str
) -> None:
    key = new_key()
    refused = post(client, wallet, operation("WITHDRAW", 100), key)
    assert_problem(refused, 400, "insufficient_funds")
    post(client, wallet, operation("DEPOSIT", 500), None)
    replayed = post(client, wallet, operation("WITHDRAW", 100), key)
    assert replayed.status_code == 400
    assert replayed.headers[REPLAYED] == "true"
    assert replayed.json()["code"] == "insufficient_funds"
    assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 500}


def keyed_refusal(client: httpx.Client, case: str) -> tuple[str, dict[str, Any], int, str]:
    """A request that each keyed endpoint refuses, and how: (path, body, status, code)."""
    wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
    if case == "operation":
        return (
            f"/api/v1/wallets/{wallet}/operation",
            operation("WITHDRAW", 5),
            400,
            "insufficient_funds",
        )
    if case == "atomic batch":
        items = [{"wallet_uuid": wallet, **operation(kind, 5)} for kind in ("DEPOSIT", "WITHDRAW")]
        items.append({"wallet_uuid": wallet, **operation("WITHDRAW", 1)})
        return (
            "/api/v1/operations/batch",
            {"atomic": True, "operations": items},
            400,
            "insufficient_funds",
        )
    if case == "transfer":
        body = {"from_wallet_uuid": wallet, "to_wallet_uuid": str(uuid.uuid4()), "amount": 1}
        return "/api/v1/transfers", body, 404, "wallet_not_found"
    assert case == "reversal"
    assert post(client, wallet, operation("DEPOSIT", 5), None).status_code == 200
    entry = client.get(f"/api/v1/wallets/{wallet}/operations").json()["items"][0]["id"]
    assert client.post("/api/v1/reversals", json={"entry_id": entry}).status_code == 201
    return "/api/v1/reversals", {"entry_id": entry}, 409, "already_reversed"


@pytest.mark.parametrize("case", ["operation", "atomic batch", "transfer", "reversal"])
def test_a_replayed_problem_has_no_request_id_and_the_header_names_the_retry(
    client: httpx.Client, case: str
) -> None:
    """The first answer's problem document carries its own request's id; its replay is the
    stored document without any `request_id` (not the first request's), and its
    `X-Request-ID` header names the retry: the one the retry sent, or a new one."""
    path, body, status, code = keyed_refusal(client, case)
    key = {"Idempotency-Key": new_key()}
    first_id, retry_id = f"first-{uuid.uuid4()}", f"retry-{uuid.uuid4()}"
    first = client.post(path, json=body, headers={**key, "X-Request-ID": first_id})
    document = assert_problem(first, status, code)
    assert document["request_id"] == first_id
    stored = {name: value for name, value in document.items() if name != "request_id"}

    retry = client.post(path, json=body, headers={**key, "X-Request-ID": retry_id})
    unnamed = client.post(path, json=body, headers=key)
    for replay in (retry, unnamed):
        assert replay.status_code == status
        assert replay.headers[REPLAYED] == "true"
        assert replay.headers["content-type"] == "application/problem+json"
        assert replay.json() == stored  # no request_id at all
    assert retry.headers["x-request-id"] == retry_id
    assert unnamed.headers["x-request-id"] not in {first_id, retry_id}


@pytest.mark.parametrize(
    "other",
    [operation("DEPOSIT", 11), operation("WITHDRAW", 10)],
    ids=["other amount", "other operation"],
)
def test_a_key_reused_with_another_body_is_refused_and_changes_nothing(
    client: httpx.Client, wallet: str, other: dict[str, object]
) -> None:
    key = new_key()
    post(client, wallet, operation("DEPOSIT", 10), key)
    assert_problem(post(client, wallet, other, key), 422, "idempotency_key_reused")
    assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 10}


def test_a_key_names_one_request_across_wallets_and_endpoints(client: httpx.Client) -> None:
    first, second = (
        str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"]) for _ in range(2)
    )
    key = new_key()
    assert post(client, first, operation("DEPOSIT", 10), key).status_code == 200
    assert_problem(
        post(client, second, operation("DEPOSIT", 10), key), 422, "idempotency_key_reused"
    )
    created = client.post("/api/v1/wallets/create_wallet", headers={"Idempotency-Key": key})
    assert_problem(created, 422, "idempotency_key_reused")
    assert client.get(f"/api/v1/wallets/{second}").json() == {"balance": 0}


def test_create_wallet_with_a_key_creates_one_wallet(
    client: httpx.Client, database: TestDatabase
) -> None:
    key = new_key()
    first = client.post("/api/v1/wallets/create_wallet", headers={"Idempotency-Key": key})
    again = client.post("/api/v1/wallets/create_wallet", headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers[REPLAYED] == "true"
    assert again.headers.get("location") == first.headers.get("location")
    rows = database.fetch(
        "SELECT count(*) AS n FROM wallets WHERE id = $1", uuid.UUID(first.json()["wallet_uuid"])
    )
    assert rows[0]["n"] == 1


@pytest.mark.parametrize(
    "key",
    ["", "with space", "tab\tinside", "ключ", "x" * 256],
    ids=["empty", "inner space", "tab", "non-ascii", "256 chars"],
)
def test_a_malformed_key_is_422(client: httpx.Client, wallet: str, key: str) -> None:
    response = client.post(
        f"/api/v1/wallets/{wallet}/operation",
        json=operation("DEPOSIT", 1),
        headers={b"Idempotency-Key": key.encode()},  # raw bytes: UTF-8 for the non-ASCII case
    )
    assert_problem(response, 422, "validation_error")
    assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 0}


def test_the_longest_key_is_accepted(client: httpx.Client, wallet: str) -> None:
    assert post(client, wallet, operation("DEPOSIT", 1), "k" * 255).status_code == 200


def test_fifty_concurrent_requests_with_one_key_apply_once(
    any_service: ServiceProcess, client: httpx.Client, database: TestDatabase
) -> None:
    wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
    key = new_key()

    async def scenario() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(
            base_url=any_service.base_url, limits=limits, timeout=30
        ) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        f"/api/v1/wallets/{wallet}/operation",
                        json=operation("DEPOSIT", 7),
                        headers={"Idempotency-Key": key},
                    )
                    for _ in range(50)
                )
            )

    sessions_before = service_sessions(database)
    responses = asyncio.run(scenario())
    assert {r.status_code for r in responses} == {200}
    assert {r.text for r in responses} == {'{"status":"success","balance":7}'}
    assert sum(REPLAYED not in r.headers for r in responses) == 1
    assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 7}
    assert len(assert_ledger_consistent(database, wallet)) == 1
    # A replay meets the key's unique violation first when coalesced (its write does not
    # look keys up), and racing requests do in both modes: an ordinary error, which must
    # not cost the pool its connections.
    replay = client.post(
        f"/api/v1/wallets/{wallet}/operation",
        json=operation("DEPOSIT", 7),
        headers={"Idempotency-Key": key},
    )
    assert replay.headers[REPLAYED] == "true"
    assert sessions_before <= service_sessions(database), "connections were replaced"


def service_sessions(database: TestDatabase) -> set[int]:
    """The process ids of the service's database sessions."""
    rows = database.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'wallet-api' AND datname = $1",
        database.name,
    )
    return {row["pid"] for row in rows}


#: The retention of the forgetful service, and how often it purges.
SHORT_TTL_SECONDS = 2
PURGE_EVERY_SECONDS = 0.3


@pytest.fixture(scope="module")
def forgetful_service(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service(
        IDEMPOTENCY_KEY_TTL=str(SHORT_TTL_SECONDS),
        IDEMPOTENCY_PURGE_INTERVAL=str(PURGE_EVERY_SECONDS),
    )


def test_keys_are_kept_for_their_retention_then_purged(
    forgetful_service: ServiceProcess, database: TestDatabase
) -> None:
    """Purges run every 0.3 s; the key survives every one of them until it is 2 s old, and
    is gone soon after."""
    with httpx.Client(base_url=forgetful_service.base_url, timeout=30) as client:
        wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
        key = new_key()
        sent = time.monotonic()
        assert post(client, wallet, operation("DEPOSIT", 1), key).status_code == 200
        while database.fetch("SELECT 1 FROM idempotency_keys WHERE key = $1", key):
            assert time.monotonic() - sent < SHORT_TTL_SECONDS + 10, "the key was not purged"
            time.sleep(0.05)
        assert time.monotonic() - sent >= SHORT_TTL_SECONDS, "purged before its retention"
        # Forgotten: the same key now names a new request.
        assert post(client, wallet, operation("DEPOSIT", 2), key).json()["balance"] == 3


#: Expired keys the purge finds: the oldest held by the test's transaction, the others free.
HELD_KEYS = 5
FREE_KEYS = 2500


def expired_keys(database: TestDatabase) -> list[str]:
    rows = database.fetch(
        "SELECT key FROM idempotency_keys WHERE starts_with(key, 'expired-') ORDER BY created_at"
    )
    return [row["key"] for row in rows]


def purges(database: TestDatabase) -> list[int]:
    """How many keys each purge statement deleted so far, in order (0: none found)."""
    return [row["deleted"] for row in database.fetch("SELECT deleted FROM test_purges ORDER BY n")]


def test_the_purge_takes_1000_keys_at_a_time_and_never_waits_for_a_held_one(
    make_database: Callable[[], TestDatabase], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """On a database of the test's own, 2,505 expired keys, the oldest 5 held by the test's
    transaction (FOR UPDATE, as a request holds the key it is writing). The service's
    purges (every 0.2 s in each worker, retention 1 hour) delete the 2,500 others while
    those are held, at most 1,000 per statement (a statement-level trigger counts each
    statement's deletions), then keep running, deleting nothing, rather than waiting for
    the held ones; keyed requests are answered meanwhile. Released, the 5 go too."""
    database = migrated(make_database())
    database.fetch("CREATE TABLE test_purges (n serial PRIMARY KEY, deleted bigint NOT NULL)")
    database.fetch(
        """
        CREATE FUNCTION test_count_purged() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO test_purges (deleted) SELECT count(*) FROM gone;
            RETURN NULL;
        END $$
        """
    )
    database.fetch(
        "CREATE TRIGGER test_count_purged AFTER DELETE ON idempotency_keys "
        "REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION test_count_purged()"
    )
    database.fetch(
        "INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body, "
        "created_at) SELECT 'expired-' || n, repeat('0', 64), 200, '{}', "
        "now() - interval '2 days' + n * interval '1 second' FROM generate_series(1, $1) n",
        HELD_KEYS + FREE_KEYS,
    )
    held = expired_keys(database)[:HELD_KEYS]

    def while_held(service: ServiceProcess) -> None:
        with httpx.Client(base_url=service.base_url, timeout=30) as client:
            wallet = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
            deadline = time.monotonic() + 15  # about 1 s when the purge works
            while expired_keys(database) != held:
                assert time.monotonic() < deadline, f"{len(expired_keys(database))} keys left"
                assert post(client, wallet, operation("DEPOSIT", 1), new_key()).status_code == 200
                time.sleep(0.1)
            # Not waiting on the held keys: more purges run, and find nothing to delete.
            ran = len(purges(database))
            while len(purges(database)) < ran + 4:
                assert time.monotonic() < deadline, "the purges stopped"
                assert post(client, wallet, operation("DEPOSIT", 1), new_key()).status_code == 200
                time.sleep(0.1)
        counts = purges(database)
        assert sum(counts) == FREE_KEYS
        assert max(counts) == 1000, counts  # 1,000 at a time
        assert expired_keys(database) == held

    log_path = tmp_path_factory.mktemp("purge") / "gunicorn.log"
    settings = {"IDEMPOTENCY_KEY_TTL": "3600", "IDEMPOTENCY_PURGE_INTERVAL": "0.2"}
    # The keys are held before the service starts: its first purge, 0.2 s after its start,
    # would otherwise delete them (the oldest first) before the test holds them.
    loop = asyncio.new_event_loop()
    holder = loop.run_until_complete(asyncpg.connect(database.url()))
    try:
        holding = holder.transaction()
        loop.run_until_complete(holding.start())
        locked = loop.run_until_complete(
            holder.fetch("SELECT key FROM idempotency_keys WHERE key = ANY($1) FOR UPDATE", held)
        )
        assert len(locked) == HELD_KEYS
        with launch_service(database, log_path, settings).serving() as service:
            while_held(service)
            loop.run_until_complete(holding.rollback())
            deadline = time.monotonic() + 30
            while expired_keys(database):  # released: purged too
                assert time.monotonic() < deadline, "the released keys were not purged"
                time.sleep(0.1)
    finally:
        loop.run_until_complete(holder.close())
        loop.close()
    assert sum(purges(database)) == FREE_KEYS + HELD_KEYS
    assert max(purges(database)) == 1000


@pytest.fixture(scope="module")
def keyed_service(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service(
        AUTH_MODE="keys", RATE_LIMIT_RATE="10000", RATE_LIMIT_BURST="10000", DB_POOL_SIZE="2"
    )


@pytest.fixture(scope="module")
def two_owners(keyed_service: ServiceProcess, database: TestDatabase) -> tuple[Key, Key]:
    """A key of each of two owners, with every scope (a DEPOSIT needs `deposit`)."""
    run = uuid.uuid4().hex[:8]
    every_scope = ("--scope", "read", "--scope", "write", "--scope", "deposit")
    return (
        create_key(database, f"alice-{run}", *every_scope),
        create_key(database, f"bob-{run}", *every_scope),
    )


@dataclass(frozen=True)
class Owned:
    """An owner's key, a wallet of theirs holding 100 (by one deposit), and another."""

    key: Key
    wallet: str
    other: str
    deposit: int

    @classmethod
    def make(cls, http: httpx.Client, key: Key) -> Owned:
        wallet, other = (
            str(
                http.post("/api/v1/wallets/create_wallet", headers=key.headers).json()[
                    "wallet_uuid"
                ]
            )
            for _ in range(2)
        )
        deposited = http.post(
            f"/api/v1/wallets/{wallet}/operation",
            json=operation("DEPOSIT", 100),
            headers=key.headers,
        )
        assert deposited.status_code == 200, deposited.text
        history = http.get(f"/api/v1/wallets/{wallet}/operations", headers=key.headers)
        return cls(key, wallet, other, int(history.json()["items"][0]["id"]))


#: Each keyed endpoint's request on an owner's own things, and its success status.
KEYED_REQUESTS: dict[str, Callable[[Owned], tuple[str, dict[str, Any] | None, int]]] = {
    "create_wallet": lambda mine: ("/api/v1/wallets/create_wallet", None, 201),
    "operation": lambda mine: (
        f"/api/v1/wallets/{mine.wallet}/operation",
        operation("DEPOSIT", 5),
        200,
    ),
    "batch": lambda mine: (
        "/api/v1/operations/batch",
        {
            "operations": [
                {"wallet_uuid": mine.wallet, **operation("DEPOSIT", 5)},
                {"wallet_uuid": mine.other, **operation("DEPOSIT", 1)},
            ]
        },
        200,
    ),
    "atomic batch": lambda mine: (
        "/api/v1/operations/batch",
        {
            "atomic": True,
            "operations": [
                {"wallet_uuid": mine.wallet, **operation("DEPOSIT", 5)},
                {"wallet_uuid": mine.other, **operation("DEPOSIT", 1)},
            ],
        },
        200,
    ),
    "transfer": lambda mine: (
        "/api/v1/transfers",
        {"from_wallet_uuid": mine.wallet, "to_wallet_uuid": mine.other, "amount": 5},
        201,
    ),
    "reversal": lambda mine: ("/api/v1/reversals", {"entry_id": mine.deposit, "amount": 5}, 201),
}


@pytest.mark.parametrize("endpoint", list(KEYED_REQUESTS))
def test_two_owners_equal_keys_are_two_keys_on_every_keyed_endpoint(
    keyed_service: ServiceProcess,
    two_owners: tuple[Key, Key],
    database: TestDatabase,
    endpoint: str,
) -> None:
    """Alice and Bob each send their own request with the same Idempotency-Key: each is
    executed on its own owner's things (neither a replay of the other's nor refused as the
    key reused), and each one's retry replays its own answer."""
    key = {"Idempotency-Key": f"shared-{uuid.uuid4()}"}
    with httpx.Client(base_url=keyed_service.base_url, timeout=30) as http:
        alice, bob = (Owned.make(http, owner) for owner in two_owners)

        def state(mine: Owned) -> list[object]:
            return [
                (database.stored_balance(w), len(database.ledger(w)))
                for w in (mine.wallet, mine.other)
            ]

        before = state(alice)
        assert state(bob) == before
        answers: dict[Owned, httpx.Response] = {}
        for mine in (alice, bob):
            path, body, status = KEYED_REQUESTS[endpoint](mine)
            answer = http.post(path, json=body, headers={**mine.key.headers, **key})
            assert answer.status_code == status, answer.text
            assert REPLAYED not in answer.headers
            answers[mine] = answer
        if endpoint == "create_wallet":  # two wallets, each its own creator's
            created = {mine: answers[mine].json()["wallet_uuid"] for mine in (alice, bob)}
            assert created[alice] != created[bob]
            for mine in (alice, bob):
                read = http.get(f"/api/v1/wallets/{created[mine]}", headers=mine.key.headers)
                assert read.json() == {"balance": 0}
        else:  # each request changed its own owner's wallets, alike
            assert state(alice) == state(bob) != before

        for mine in (alice, bob):
            path, body, status = KEYED_REQUESTS[endpoint](mine)
            again = http.post(path, json=body, headers={**mine.key.headers, **key})
            assert again.status_code == status
            assert again.headers[REPLAYED] == "true"
            assert again.json() == answers[mine].json()
        assert state(alice) == state(bob)
