"""API keys, owner-scoped wallets and rate limits, over HTTP, against a service running
with AUTH_MODE=keys (2 workers, real PostgreSQL); keys made with the operator's CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from openapi_spec_validator import validate

from tests.support import EVERY_SCOPE, Key, TestDatabase, create_key, keys_cli, worker_of
from wallet_api.devtools.server import ServiceProcess
from wallet_api.wallets.owners import UNKNOWN_SECONDS

WALLETS = "/api/v1/wallets"
TRANSFERS = "/api/v1/transfers"
REVERSALS = "/api/v1/reversals"
BATCH = "/api/v1/operations/batch"
#: How often the service under test reads the key table (a revocation's delay).
REFRESH_SECONDS = 1.0


@pytest.fixture(scope="module")
def keyed(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service(
        AUTH_MODE="keys",
        AUTH_KEYS_REFRESH_SECONDS=str(REFRESH_SECONDS),
        RATE_LIMIT_RATE="10000",
        RATE_LIMIT_BURST="10000",
    )


@pytest.fixture(scope="module")
def keys(database: TestDatabase) -> dict[str, Key]:
    run = uuid.uuid4().hex[:8]  # owners of their own: the database is the session's
    every_scope = EVERY_SCOPE
    made = {
        "alice": create_key(database, f"alice-{run}", *every_scope),
        "alice_read": create_key(database, f"alice-{run}", "--scope", "read"),
        "alice_write": create_key(database, f"alice-{run}", "--scope", "write"),
        "bob": create_key(database, f"bob-{run}", *every_scope),
        # Bob's key as `keys create` makes it by default: it may not create money.
        "bob_plain": create_key(database, f"bob-{run}"),
        "revoked": create_key(database, f"alice-{run}"),
        "expired": create_key(database, f"alice-{run}", "--expires", "1d"),
    }
    assert keys_cli(database, "revoke", made["revoked"].id).returncode == 0
    # `keys create` refuses an expiry that is not to come: this one expires in the database.
    database.fetch(
        "UPDATE api_keys SET expires_at = '2020-01-01T00:00:00Z' WHERE id = $1",
        made["expired"].id,
    )
    time.sleep(REFRESH_SECONDS + 0.5)  # every worker's copy of the table has both changes
    return made


@pytest.fixture
def http(keyed: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed.base_url, timeout=30) as client:
        yield client


def new_wallet(http: httpx.Client, key: Key, balance: int = 0) -> str:
    response = http.post(f"{WALLETS}/create_wallet", headers=key.headers)
    assert response.status_code == 201, response.text
    wallet = str(response.json()["wallet_uuid"])
    if balance:
        deposit = http.post(
            f"{WALLETS}/{wallet}/operation",
            json={"operation": "DEPOSIT", "amount": balance},
            headers=key.headers,
        )
        assert deposit.status_code == 200, deposit.text
    return wallet


@dataclass(frozen=True)
class Target:
    """Alice's things, which the matrix's requests aim at."""

    wallet: str
    other: str
    entry: int
    transfer: str


@pytest.fixture(scope="module")
def target(keyed: ServiceProcess, keys: dict[str, Key]) -> Target:
    alice = keys["alice"]
    with httpx.Client(base_url=keyed.base_url, timeout=30) as http:
        wallet, other = new_wallet(http, alice, 100), new_wallet(http, alice)
        moved = http.post(
            TRANSFERS,
            json={"from_wallet_uuid": wallet, "to_wallet_uuid": other, "amount": 10},
            headers=alice.headers,
        )
        assert moved.status_code == 201, moved.text
        history = http.get(f"{WALLETS}/{wallet}/operations", headers=alice.headers)
        entry = next(i["id"] for i in history.json()["items"] if i["operation"] == "DEPOSIT")
    return Target(wallet, other, entry, moved.json()["transfer_id"])


#: Every endpoint under /api: (name, method, path, body, Idempotency-Key?). Bodies aim at
#: Alice's wallets; `{wallet}` and the like are filled from the target.
ENDPOINTS: list[tuple[str, str, str, dict[str, Any] | None, bool]] = [
    ("create_wallet", "POST", f"{WALLETS}/create_wallet", None, False),
    ("get_wallet", "GET", f"{WALLETS}/{{wallet}}", None, False),
    (
        "operate (fast path)",
        "POST",
        f"{WALLETS}/{{wallet}}/operation",
        {"operation": "WITHDRAW", "amount": 1},
        False,
    ),
    (
        "operate (keyed)",
        "POST",
        f"{WALLETS}/{{wallet}}/operation",
        {"operation": "WITHDRAW", "amount": 1},
        True,
    ),
    ("list_operations", "GET", f"{WALLETS}/{{wallet}}/operations", None, False),
    (
        "list_operations (filtered)",
        "GET",
        f"{WALLETS}/{{wallet}}/operations?operation=DEPOSIT&from=2026-01-01T00:00:00Z",
        None,
        False,
    ),
    ("get_wallet (at a time)", "GET", f"{WALLETS}/{{wallet}}?at=2026-01-01T00:00:00Z", None, False),
    ("get_statement", "GET", f"{WALLETS}/{{wallet}}/statement", None, False),
    ("get_statement (csv)", "GET", f"{WALLETS}/{{wallet}}/statement?format=csv", None, False),
    (
        "apply_batch",
        "POST",
        BATCH,
        {"operations": [{"wallet_uuid": "{wallet}", "operation": "WITHDRAW", "amount": 1}]},
        False,
    ),
    (
        "apply_batch (atomic)",
        "POST",
        BATCH,
        {
            "atomic": True,
            "operations": [{"wallet_uuid": "{wallet}", "operation": "WITHDRAW", "amount": 1}],
        },
        False,
    ),
    (
        "create_transfer (fast path)",
        "POST",
        TRANSFERS,
        {"from_wallet_uuid": "{wallet}", "to_wallet_uuid": "{other}", "amount": 1},
        False,
    ),
    (
        "create_transfer (keyed)",
        "POST",
        TRANSFERS,
        {"from_wallet_uuid": "{wallet}", "to_wallet_uuid": "{other}", "amount": 1},
        True,
    ),
    ("get_transfer", "GET", f"{TRANSFERS}/{{transfer}}", None, False),
    ("reverse_entry", "POST", REVERSALS, {"entry_id": "{entry}", "amount": 1}, False),
    ("reverse_transfer", "POST", REVERSALS, {"transfer_id": "{transfer}", "amount": 1}, False),
]


def _fill(value: Any, target: Target) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, target) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, target) for v in value]
    if value == "{entry}":
        return target.entry
    if isinstance(value, str):
        return value.format(wallet=target.wallet, other=target.other, transfer=target.transfer)
    return value


def send(
    http: httpx.Client,
    endpoint: tuple[str, str, str, dict[str, Any] | None, bool],
    target: Target,
    headers: dict[str, str],
) -> httpx.Response:
    _, method, path, body, keyed = endpoint
    if keyed:
        headers = {**headers, "Idempotency-Key": f"matrix-{uuid.uuid4()}"}
    return http.request(method, _fill(path, target), json=_fill(body, target), headers=headers)


def snapshot(database: TestDatabase) -> tuple[int, int, int]:
    """What a refused request must not change: wallets, ledger rows, stored keys."""
    (row,) = database.fetch(
        "SELECT (SELECT count(*) FROM wallets) AS w, "
        "(SELECT count(*) FROM wallet_operations) AS o, "
        "(SELECT count(*) FROM idempotency_keys) AS k"
    )
    return row["w"], row["o"], row["k"]


CREDENTIALS: list[tuple[str, Callable[[dict[str, Key]], dict[str, str]], int, str]] = [
    ("no key", lambda keys: {}, 401, "api_key_required"),
    (
        "not bearer",
        lambda keys: {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        401,
        "invalid_api_key",
    ),
    ("malformed", lambda keys: {"Authorization": "Bearer wk_nope"}, 401, "invalid_api_key"),
    (
        "unknown",
        lambda keys: {"Authorization": f"Bearer wk_{'0' * 12}_{'A' * 43}"},
        401,
        "invalid_api_key",
    ),
    (
        "wrong secret",
        lambda keys: {"Authorization": f"Bearer wk_{keys['alice'].id}_{'A' * 43}"},
        401,
        "invalid_api_key",
    ),
    ("revoked", lambda keys: keys["revoked"].headers, 401, "api_key_revoked"),
    ("expired", lambda keys: keys["expired"].headers, 401, "api_key_expired"),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
@pytest.mark.parametrize("credential", CREDENTIALS, ids=[c[0] for c in CREDENTIALS])
def test_a_request_without_a_valid_key_is_refused_and_changes_nothing(
    *,
    http: httpx.Client,
    keys: dict[str, Key],
    target: Target,
    database: TestDatabase,
    endpoint: tuple[str, str, str, dict[str, Any] | None, bool],
    credential: tuple[str, Callable[[dict[str, Key]], dict[str, str]], int, str],
) -> None:
    _, headers_of, status, code = credential
    before = snapshot(database)
    response = send(http, endpoint, target, headers_of(keys))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="wallet-api"')
    assert ('error="invalid_token"' in challenge) == (code != "api_key_required")
    sent = headers_of(keys).get("Authorization", "").partition(" ")[2]
    assert not sent or sent not in response.text  # no key material in the problem document
    assert snapshot(database) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_a_key_without_the_scope_is_refused_with_403(
    http: httpx.Client,
    keys: dict[str, Key],
    target: Target,
    database: TestDatabase,
    endpoint: tuple[str, str, str, dict[str, Any] | None, bool],
) -> None:
    method = endpoint[1]
    key, needed = (
        (keys["alice_write"], "read") if method == "GET" else (keys["alice_read"], "write")
    )
    before = snapshot(database)
    assert_needs_scope(send(http, endpoint, target, key.headers), needed)
    assert snapshot(database) == before


def assert_needs_scope(response: httpx.Response, scope: str) -> None:
    """403 insufficient_scope, naming the scope the request needs."""
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "insufficient_scope"
    assert f'scope="{scope}"' in response.headers["www-authenticate"]


#: Every way to create money: the operation (fast path and keyed), batches (both kinds).
DEPOSITS: list[tuple[str, str, str, dict[str, Any] | None, bool]] = [
    ("operate (fast path)", "POST", f"{WALLETS}/{{wallet}}/operation", None, False),
    ("operate (keyed)", "POST", f"{WALLETS}/{{wallet}}/operation", None, True),
    ("apply_batch", "POST", BATCH, None, False),
    ("apply_batch (atomic)", "POST", BATCH, None, False),
]


def deposit_request(
    endpoint: tuple[str, str, str, dict[str, Any] | None, bool], wallet: str
) -> tuple[str, str, str, dict[str, Any] | None, bool]:
    name, method, path, _, keyed = endpoint
    item = {"operation": "DEPOSIT", "amount": 5}
    if path == BATCH:
        withdraw = {"wallet_uuid": wallet, "operation": "WITHDRAW", "amount": 1}
        items = [withdraw, {"wallet_uuid": wallet, **item}]  # one deposit among them
        body: dict[str, Any] = {"operations": items, "atomic": "atomic" in name}
    else:
        body = item
    return name, method, path.format(wallet=wallet), body, keyed


@pytest.mark.parametrize("endpoint", DEPOSITS, ids=[e[0] for e in DEPOSITS])
def test_creating_money_needs_the_deposit_scope(
    http: httpx.Client,
    keys: dict[str, Key],
    target: Target,
    database: TestDatabase,
    endpoint: tuple[str, str, str, dict[str, Any] | None, bool],
) -> None:
    """Money an owner could make at will would let it push another owner's wallet to its
    limit and read that wallet's balance off the refusals (docs/SECURITY.md): a key
    without `deposit` creates none, on any path, and the whole request changes nothing."""
    for key in (keys["bob_plain"], keys["alice_write"]):
        own = new_wallet(http, keys["bob"] if key is keys["bob_plain"] else keys["alice"], 10)
        before = snapshot(database)
        response = send(http, deposit_request(endpoint, own), target, key.headers)
        assert_needs_scope(response, "deposit")
        assert snapshot(database) == before
    with_scope = send(http, deposit_request(endpoint, own), target, keys["alice"].headers)
    assert with_scope.status_code == 200, with_scope.text


def test_without_the_deposit_scope_another_owners_balance_cannot_be_probed(
    http: httpx.Client, keys: dict[str, Key], target: Target
) -> None:
    """The probe of the review: pay the payee amounts near the limit and watch for
    `balance_limit_exceeded`. A key that cannot create money holds only what it was paid;
    its refusals speak of its own wallet."""
    attacker = keys["bob_plain"]
    wallet = new_wallet(http, attacker)
    probe = http.post(
        TRANSFERS,
        json={"from_wallet_uuid": wallet, "to_wallet_uuid": target.other, "amount": 9_999_999},
        headers=attacker.headers,
    )
    assert (probe.status_code, probe.json()["code"]) == (400, "insufficient_funds")
    assert probe.json()["detail"].endswith("its balance is 0.")
    # What it holds, it may spend and take out: only creating money is refused.
    paid = http.post(
        TRANSFERS,
        json={
            "from_wallet_uuid": new_wallet(http, keys["bob"], 3),
            "to_wallet_uuid": wallet,
            "amount": 3,
        },
        headers=keys["bob"].headers,
    )
    assert paid.status_code == 201, paid.text
    taken = http.post(
        f"{WALLETS}/{wallet}/operation",
        json={"operation": "WITHDRAW", "amount": 1},
        headers=attacker.headers,
    )
    assert (taken.status_code, taken.json()["balance"]) == (200, 2)


WRITES = [e for e in ENDPOINTS if e[1] == "POST"]


@pytest.mark.parametrize("endpoint", WRITES, ids=[e[0] for e in WRITES])
def test_a_write_key_sees_what_its_write_did_to_its_owners_wallets_only(
    http: httpx.Client,
    keys: dict[str, Key],
    database: TestDatabase,
    endpoint: tuple[str, str, str, dict[str, Any] | None, bool],
) -> None:
    """The scopes as documented (docs/SECURITY.md): `write` is answered with the balances
    its write left in its owner's wallets, as `read` would show them, and with none of
    another owner's; GET needs `read` (test_a_key_without_the_scope_is_refused_with_403)."""
    alice, writer = keys["alice"], keys["alice_write"]
    wallet, other = new_wallet(http, alice, 100), new_wallet(http, alice, 100)
    moved = http.post(
        TRANSFERS,
        json={"from_wallet_uuid": wallet, "to_wallet_uuid": other, "amount": 10},
        headers=alice.headers,
    ).json()
    history = http.get(f"{WALLETS}/{wallet}/operations", headers=alice.headers).json()
    entry = next(i["id"] for i in history["items"] if i["operation"] == "DEPOSIT")
    mine = Target(wallet, other, entry, moved["transfer_id"])
    response = send(http, endpoint, mine, writer.headers)
    assert response.status_code in (200, 201), response.text
    shown = _balances_in(endpoint, response.json(), mine)
    assert shown or endpoint[0] == "create_wallet"
    for wallet_id, balance in shown:
        read = http.get(f"{WALLETS}/{wallet_id}", headers=alice.headers).json()["balance"]
        assert Decimal(str(balance)) == Decimal(str(read)), (wallet_id, response.text)
    # A payment from a write key into another owner's wallet shows only the payer's side.
    if endpoint[0].startswith("create_transfer"):
        foreign = new_wallet(http, keys["bob"])
        body = {"from_wallet_uuid": wallet, "to_wallet_uuid": foreign, "amount": 1}
        paid = http.post(TRANSFERS, json=body, headers=writer.headers)
        assert paid.status_code == 201, paid.text
        assert paid.json()["to_balance"] is None


def _balances_in(
    endpoint: tuple[str, str, str, dict[str, Any] | None, bool], body: Any, target: Target
) -> list[tuple[str, Any]]:
    """(wallet, balance) for each balance an answer shows (operations and batches on the
    target's wallet, as ENDPOINTS aim them)."""
    if "results" in body:
        return [(target.wallet, item["body"]["balance"]) for item in body["results"]]
    if "balance" in body:
        return [(target.wallet, body["balance"])]
    if "from_balance" in body:
        return [
            (body["from_wallet_uuid"], body["from_balance"]),
            (body["to_wallet_uuid"], body["to_balance"]),
        ]
    return [(leg["wallet_uuid"], leg["balance_after"]) for leg in body.get("legs", ())]


#: What another owner gets for each of Alice's things: exactly what an unknown one gets.
FOREIGN = {
    "get_wallet": (404, "wallet_not_found"),
    "operate (fast path)": (404, "wallet_not_found"),
    "operate (keyed)": (404, "wallet_not_found"),
    "list_operations": (404, "wallet_not_found"),
    "list_operations (filtered)": (404, "wallet_not_found"),
    "get_wallet (at a time)": (404, "wallet_not_found"),
    "get_statement": (404, "wallet_not_found"),
    "get_statement (csv)": (404, "wallet_not_found"),
    "apply_batch (atomic)": (404, "wallet_not_found"),
    "create_transfer (fast path)": (404, "wallet_not_found"),
    "create_transfer (keyed)": (404, "wallet_not_found"),
    "get_transfer": (404, "transfer_not_found"),
    "reverse_entry": (404, "entry_not_found"),
    "reverse_transfer": (404, "transfer_not_found"),
}


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_another_owners_wallet_is_answered_as_an_unknown_one(
    http: httpx.Client,
    keys: dict[str, Key],
    target: Target,
    database: TestDatabase,
    name: str,
) -> None:
    endpoint = next(e for e in ENDPOINTS if e[0] == name)
    status, code = FOREIGN[name]
    before = snapshot(database)
    as_bob = send(http, endpoint, target, keys["bob"].headers)
    assert (as_bob.status_code, as_bob.json()["code"]) == (status, code), as_bob.text
    # The same request about things that do not exist gets the same answer, word for word
    # but for the id.
    unknown = Target(str(uuid.uuid4()), target.other, 2**62, str(uuid.uuid4()))
    as_nobody = send(http, endpoint, unknown, keys["bob"].headers)
    assert as_nobody.status_code == status
    assert as_nobody.json()["code"] == code

    def anonymised(text: str, things: Target) -> str:
        for thing in (things.wallet, things.transfer, str(things.entry)):
            text = text.replace(thing, "…")
        return text

    assert anonymised(as_bob.json()["detail"], target) == anonymised(
        as_nobody.json()["detail"], unknown
    )
    assert snapshot(database) == before


def test_nothing_of_another_owners_entry_is_told_before_the_404(
    http: httpx.Client, keys: dict[str, Key], target: Target
) -> None:
    """A reversal asked of another owner's entry is refused as a missing entry whatever
    it asks: not `reversal_exceeds_entry` (which would tell the entry's amount), not
    `entry_not_reversible` (which would tell what it is)."""
    alice, bob = keys["alice"], keys["bob"]
    history = http.get(f"{WALLETS}/{target.other}/operations", headers=alice.headers).json()
    incoming = next(i["id"] for i in history["items"] if i["operation"] == "TRANSFER_IN")
    for body in (
        {"entry_id": target.entry, "amount": "9999999999999.99"},
        {"transfer_id": target.transfer, "amount": "9999999999999.99"},
        {"entry_id": incoming, "amount": "9999999999999.99"},
    ):
        refused = http.post(REVERSALS, json=body, headers=bob.headers)
        assert refused.status_code == 404, refused.text
        assert "amount" not in refused.json()["detail"]


def test_a_refused_payment_does_not_tell_the_payees_balance(
    http: httpx.Client, keys: dict[str, Key], target: Target
) -> None:
    bob, alice = keys["bob"], keys["alice"]
    payee_balance = http.get(f"{WALLETS}/{target.other}", headers=alice.headers).json()
    rich = new_wallet(http, bob, 9_999_999_999_999)
    over = http.post(
        TRANSFERS,
        json={
            "from_wallet_uuid": rich,
            "to_wallet_uuid": target.other,
            "amount": 9_999_999_999_999,
        },
        headers={**bob.headers, "Idempotency-Key": f"over-{uuid.uuid4()}"},
    )
    assert (over.status_code, over.json()["code"]) == (400, "balance_limit_exceeded")
    assert f"balance {payee_balance['balance']}" not in over.json()["detail"]
    assert "its balance would exceed the limit" in over.json()["detail"]
    # The payer's own shortfall is still told in full.
    poor = new_wallet(http, bob, 1)
    short = http.post(
        TRANSFERS,
        json={"from_wallet_uuid": poor, "to_wallet_uuid": target.other, "amount": 2},
        headers=bob.headers,
    )
    assert short.json()["detail"].endswith("its balance is 1.")


def test_an_atomic_batch_does_not_lock_another_owners_wallet(
    keyed: ServiceProcess, keys: dict[str, Key], target: Target, database: TestDatabase
) -> None:
    """Refused as missing without waiting for the row: another owner's wallet is not
    locked (nor held up) by a batch that names it."""
    bob = keys["bob"]

    async def send() -> httpx.Response:
        async with (
            httpx.AsyncClient(base_url=keyed.base_url, timeout=3) as client,
            database.row_locked(target.wallet),
        ):
            return await client.post(
                BATCH,
                json={
                    "atomic": True,
                    "operations": [
                        {"wallet_uuid": target.wallet, "operation": "DEPOSIT", "amount": 1}
                    ],
                },
                headers=bob.headers,
            )

    response = asyncio.run(send())
    assert response.status_code == 404, response.text


def test_batch_items_are_checked_one_by_one(
    http: httpx.Client, keys: dict[str, Key], target: Target, database: TestDatabase
) -> None:
    bob = keys["bob"]
    own = new_wallet(http, bob)
    response = http.post(
        BATCH,
        json={
            "operations": [
                {"wallet_uuid": own, "operation": "DEPOSIT", "amount": 3},
                {"wallet_uuid": target.wallet, "operation": "WITHDRAW", "amount": 1},
                {"wallet_uuid": own, "operation": "DEPOSIT", "amount": 4},
            ]
        },
        headers=bob.headers,
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [200, 404, 200]
    assert results[1]["body"]["code"] == "wallet_not_found"
    assert http.get(f"{WALLETS}/{own}", headers=bob.headers).json()["balance"] == 7


def test_transfers_credit_another_owner_without_showing_their_balance(
    http: httpx.Client, keys: dict[str, Key], target: Target, database: TestDatabase
) -> None:
    bob, alice = keys["bob"], keys["alice"]
    payer = new_wallet(http, bob, 20)
    paid = http.post(
        TRANSFERS,
        json={"from_wallet_uuid": payer, "to_wallet_uuid": target.other, "amount": 5},
        headers=bob.headers,
    )
    assert paid.status_code == 201, paid.text
    assert paid.json()["from_balance"] == 15
    assert paid.json()["to_balance"] is None  # the payee's balance is not the payer's to see
    transfer = paid.json()["transfer_id"]
    as_payer = http.get(f"{TRANSFERS}/{transfer}", headers=bob.headers).json()
    as_payee = http.get(f"{TRANSFERS}/{transfer}", headers=alice.headers).json()
    assert (as_payer["from_balance"], as_payer["to_balance"]) == (15, None)
    assert as_payee["from_balance"] is None
    assert Decimal(str(as_payee["to_balance"])) > 0
    # A refund is the payee's to give; to the payer the transfer cannot be reversed.
    by_payer = http.post(REVERSALS, json={"transfer_id": transfer}, headers=bob.headers)
    assert (by_payer.status_code, by_payer.json()["code"]) == (404, "transfer_not_found")
    refund = http.post(REVERSALS, json={"transfer_id": transfer}, headers=alice.headers)
    assert refund.status_code == 201, refund.text
    balances = {leg["wallet_uuid"]: leg["balance_after"] for leg in refund.json()["legs"]}
    assert balances[payer] is None  # the payer's balance is not the payee's to see
    assert http.get(f"{WALLETS}/{payer}", headers=bob.headers).json()["balance"] == 20


def test_the_ledger_records_the_key_of_each_operation(
    http: httpx.Client, keys: dict[str, Key], database: TestDatabase
) -> None:
    alice, alice_write = keys["alice"], keys["alice_write"]
    wallet = new_wallet(http, alice, 5)  # the deposit by `alice`
    http.post(
        f"{WALLETS}/{wallet}/operation",
        json={"operation": "WITHDRAW", "amount": 2},
        headers={**alice_write.headers, "Idempotency-Key": f"k-{uuid.uuid4()}"},
    )
    rows = database.fetch(
        "SELECT operation, api_key_id FROM wallet_operations WHERE wallet_id = $1 ORDER BY id",
        uuid.UUID(wallet),
    )
    assert [(r["operation"], r["api_key_id"]) for r in rows] == [
        ("DEPOSIT", alice.id),
        ("WITHDRAW", alice_write.id),
    ]
    (owner,) = database.fetch("SELECT owner FROM wallets WHERE id = $1", uuid.UUID(wallet))
    assert owner["owner"] == alice.owner


def test_idempotency_keys_are_scoped_per_owner(http: httpx.Client, keys: dict[str, Key]) -> None:
    alice, bob = keys["alice"], keys["bob"]
    shared = {"Idempotency-Key": f"shared-{uuid.uuid4()}"}
    first = http.post(f"{WALLETS}/create_wallet", headers={**alice.headers, **shared})
    other = http.post(f"{WALLETS}/create_wallet", headers={**bob.headers, **shared})
    again = http.post(f"{WALLETS}/create_wallet", headers={**alice.headers, **shared})
    assert first.status_code == other.status_code == again.status_code == 201
    assert "idempotent-replayed" not in other.headers  # Bob's request ran: his own key
    assert other.json() != first.json()
    assert again.headers["idempotent-replayed"] == "true"  # Alice's replay is Alice's
    assert again.json() == first.json()
    # The same key on an operation: each owner's is applied once, on their own wallet,
    # and the history shows the key as it was sent.
    wallets = {name: new_wallet(http, key) for name, key in (("alice", alice), ("bob", bob))}
    key = {"Idempotency-Key": f"op-{uuid.uuid4()}"}
    for name, owner_key in (("alice", alice), ("bob", bob)):
        for _ in range(2):
            applied = http.post(
                f"{WALLETS}/{wallets[name]}/operation",
                json={"operation": "DEPOSIT", "amount": 1},
                headers={**owner_key.headers, **key},
            )
            assert applied.status_code == 200, applied.text
        history = http.get(f"{WALLETS}/{wallets[name]}/operations", headers=owner_key.headers)
        assert [i["idempotency_key"] for i in history.json()["items"]] == [key["Idempotency-Key"]]


def test_revocation_reaches_both_workers_within_the_refresh_interval(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    key = create_key(database, f"carol-{uuid.uuid4().hex[:8]}")

    def status_by_worker(count: int) -> dict[str, set[int]]:
        """The answers of at least `count` requests, each on a new connection, until both
        workers have answered (which of them accepts a connection is the kernel's choice:
        a run of them can go to one)."""
        seen: dict[str, set[int]] = {}
        for sent in range(count * 20):
            with httpx.Client(base_url=keyed.base_url, timeout=10) as fresh:
                response = fresh.post(f"{WALLETS}/create_wallet", headers=key.headers)
            seen.setdefault(worker_of(response), set()).add(response.status_code)
            if sent + 1 >= count and len(seen) == 2:
                break
        return seen

    before = status_by_worker(16)
    assert len(before) == 2
    assert all(statuses == {201} for statuses in before.values())
    assert keys_cli(database, "revoke", key.id).returncode == 0
    revoked_at = time.monotonic()
    time.sleep(REFRESH_SECONDS + 0.5)  # the documented bound, and the time to read the table
    after = status_by_worker(16)
    assert len(after) == 2
    assert all(statuses == {401} for statuses in after.values()), after
    assert time.monotonic() - revoked_at < REFRESH_SECONDS + 5


def test_a_new_key_works_at_once(keyed: ServiceProcess, database: TestDatabase) -> None:
    key = create_key(database, f"dave-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=keyed.base_url, timeout=10) as http:
        assert http.post(f"{WALLETS}/create_wallet", headers=key.headers).status_code == 201


def test_the_keys_cli_lists_without_secrets_and_refuses_bad_input(
    database: TestDatabase, keys: dict[str, Key]
) -> None:
    listed = keys_cli(database, "list")
    assert listed.returncode == 0
    shown = {key["id"]: key for key in json.loads(listed.stdout)}
    assert shown[keys["revoked"].id]["status"] == "revoked"
    assert shown[keys["expired"].id]["status"] == "expired"
    assert shown[keys["alice_read"].id]["scopes"] == ["read"]
    assert shown[keys["alice"].id]["scopes"] == ["deposit", "read", "write"]
    assert shown[keys["bob_plain"].id]["scopes"] == ["read", "write"]  # the default
    for key in keys.values():
        assert key.token.split("_", 2)[2] not in listed.stdout
    assert keys_cli(database, "revoke", "000000000000").returncode == 2
    assert keys_cli(database, "create", "--owner", "has space").returncode == 2
    assert keys_cli(database, "create", "--owner", "x", "--rate", "0").returncode == 2
    alone = keys_cli(database, "create", "--owner", "x", "--scope", "deposit")
    assert (alone.returncode, alone.stdout) == (2, "")
    assert "deposit needs write" in alone.stderr


def test_no_key_material_in_the_service_log(
    keyed: ServiceProcess, keys: dict[str, Key], http: httpx.Client, target: Target
) -> None:
    for key in keys.values():  # every kind of answer: applied, refused, each 401
        for endpoint in ENDPOINTS:
            send(http, endpoint, target, key.headers)
    log = keyed.log_text()
    assert "request" in log  # the access log was written
    for key in keys.values():
        secret = key.token.split("_", 2)[2]
        assert secret not in log
        assert key.token not in log


def test_the_document_requires_a_bearer_key(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    operation = document["paths"]["/api/v1/wallets/{wallet_uuid}"]["get"]
    assert operation["security"] == [{"apiKey": []}]
    assert {"401", "403", "429"} <= set(operation["responses"])
    assert "security" not in document["paths"]["/health/live"]["get"]


def test_keys_required_start_without_the_warning(keyed: ServiceProcess) -> None:
    assert "running without authentication" not in keyed.log_text()


def test_a_wallet_without_an_owner_is_refused_as_a_missing_one_is_without_the_database(
    keyed: ServiceProcess, keys: dict[str, Key], database: TestDatabase
) -> None:
    """Both are remembered as out of reach after the first look, and answered from memory
    ever after, as another owner's wallet is (docs/SECURITY.md: all take the same time to
    refuse). By construction, not by a stopwatch: once each worker has refused both ids
    and the entries are old enough to be read again, the wallets table is locked against
    every reader, and both are still refused at once; a worker that asked the database
    before answering would wait on the lock. The read again happens behind the answer:
    an owner given to the wallet afterwards counts."""
    (row,) = database.fetch(
        "INSERT INTO wallets (id, currency, currency_exponent)"
        " VALUES (gen_random_uuid(), 'USD', 2) RETURNING id"
    )
    ownerless, missing = str(row["id"]), str(uuid.uuid4())
    alice = keys["alice"]

    def answer(wallet: str, timeout: float) -> httpx.Response:
        with httpx.Client(base_url=keyed.base_url, timeout=timeout) as fresh:  # any worker
            return fresh.get(f"{WALLETS}/{wallet}", headers=alice.headers)

    def refused(wallet: str, timeout: float) -> str:
        response = answer(wallet, timeout)
        assert (response.status_code, response.json()["code"]) == (404, "wallet_not_found")
        return worker_of(response)

    for wallet in (ownerless, missing):
        seen: set[str] = set()
        for _ in range(400):
            seen.add(refused(wallet, 10))
            if len(seen) == 2:
                break
        assert len(seen) == 2, "the requests never reached both workers"
    time.sleep(UNKNOWN_SECONDS + 0.5)  # every entry is due to be read again

    async def probe_while_locked() -> None:
        connection = await asyncpg.connect(database.url())
        try:
            async with connection.transaction():
                await connection.execute("LOCK TABLE wallets IN ACCESS EXCLUSIVE MODE")
                for _ in range(10):
                    for wallet in (ownerless, missing):
                        await asyncio.to_thread(refused, wallet, 2)
        finally:
            await connection.close()

    asyncio.run(probe_while_locked())
    database.fetch("UPDATE wallets SET owner = $1 WHERE id = $2", alice.owner, row["id"])
    deadline = time.monotonic() + 60  # a bound for a loaded machine; the wait is 5 s
    while answer(ownerless, 10).status_code != 200:
        assert time.monotonic() < deadline, "the owner given to the wallet never counted"
        time.sleep(0.2)


def test_reversing_its_owners_withdrawal_needs_only_write(
    http: httpx.Client, keys: dict[str, Key], database: TestDatabase
) -> None:
    """A payout that came back (docs/SECURITY.md, "Why deposit is a scope"): a key with
    `write` but not `deposit` reverses its owner's withdrawal, keyed or not. It puts back
    what the withdrawal took, once, and the ledger names the key that did it."""
    scopes = {key["id"]: key["scopes"] for key in json.loads(keys_cli(database, "list").stdout)}
    for key, funder, keyed in (
        (keys["bob_plain"], keys["bob"], False),
        (keys["alice_write"], keys["alice"], True),
    ):
        assert "write" in scopes[key.id]
        assert "deposit" not in scopes[key.id]
        wallet = new_wallet(http, funder, 10)
        withdrawn = http.post(
            f"{WALLETS}/{wallet}/operation",
            json={"operation": "WITHDRAW", "amount": 4},
            headers=key.headers,
        )
        assert (withdrawn.status_code, withdrawn.json()["balance"]) == (200, 6), withdrawn.text
        history = http.get(f"{WALLETS}/{wallet}/operations", headers=funder.headers).json()
        entry = next(i["id"] for i in history["items"] if i["operation"] == "WITHDRAW")
        headers = dict(key.headers)
        if keyed:
            headers["Idempotency-Key"] = f"back-{uuid.uuid4()}"
        reversal = http.post(REVERSALS, json={"entry_id": entry}, headers=headers)
        assert reversal.status_code == 201, reversal.text
        (back,) = reversal.json()["legs"]
        assert (back["operation"], back["amount"], back["balance_after"]) == ("REVERSAL_IN", 4, 10)
        assert http.get(f"{WALLETS}/{wallet}", headers=funder.headers).json()["balance"] == 10
        rows = database.fetch(
            "SELECT operation, api_key_id FROM wallet_operations WHERE wallet_id = $1 ORDER BY id",
            uuid.UUID(wallet),
        )
        assert [(r["operation"], r["api_key_id"]) for r in rows][-1] == ("REVERSAL_IN", key.id)
        # Once: the withdrawal is not reversed again.
        again = http.post(REVERSALS, json={"entry_id": entry}, headers=key.headers)
        assert (again.status_code, again.json()["code"]) == (409, "already_reversed"), again.text


def test_only_the_secrets_sha256_is_stored(http: httpx.Client, database: TestDatabase) -> None:
    """docs/SECURITY.md, "What the service does": the row of a key made by `wallet-api keys
    create` holds no secret, only its hex SHA-256; and that is what a request's key is
    checked against (the key works at once)."""
    key = create_key(database, f"erin-{uuid.uuid4().hex[:8]}")
    prefix, key_id, secret = key.token.split("_", 2)
    assert (prefix, key_id) == ("wk", key.id)
    (row,) = database.fetch(
        "SELECT to_jsonb(k)::text AS stored, secret_sha256 FROM api_keys k WHERE id = $1",
        key.id,
    )
    assert secret not in row["stored"], row["stored"]
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert http.post(f"{WALLETS}/create_wallet", headers=key.headers).status_code == 201


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def test_metrics_carry_no_wallet_ids_and_no_keys(
    keyed: ServiceProcess, http: httpx.Client, keys: dict[str, Key], target: Target
) -> None:
    """docs/SECURITY.md, "What the operator must protect": `/metrics` answers without a
    key, and after traffic of every kind (applied, refused by scope, by owner, each 401,
    an unknown path under a wallet's) it names no wallet, transfer, key id or secret."""
    credentials = [key.headers for key in keys.values()]
    credentials += [headers_of(keys) for _, headers_of, _, _ in CREDENTIALS]
    for headers in credentials:
        for endpoint in ENDPOINTS:
            send(http, endpoint, target, headers)
    unmatched = http.get(f"{WALLETS}/{target.wallet}/nowhere", headers=keys["alice"].headers)
    assert unmatched.status_code == 404
    metrics = httpx.get(keyed.base_url + "/metrics", timeout=30)
    assert metrics.status_code == 200
    text = metrics.text
    assert "wallet_http_request_duration_seconds_count" in text
    assert _UUID.search(text) is None, _UUID.search(text)
    for key in keys.values():
        _, key_id, secret = key.token.split("_", 2)
        assert re.search(rf"(?<![0-9a-f]){key_id}(?![0-9a-f])", text) is None, key_id
        assert secret not in text
