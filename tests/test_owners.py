"""The owner matrix: every endpoint that moves or sets aside money, crossed with whose
wallets, entries, transfers and holds a request names, over HTTP against a service with
AUTH_MODE=keys.

The caller is always Alice's key (every scope). Each wallet a request names is one of four
kinds: Alice's own, another owner's (Bob's), one without an owner (inserted in SQL, its
history made by the service without keys, which checks no owner), or none at all. Each
cell's answer is derived from the documents' rules (RULES below, each with the sentence
it follows), not from what the code does: the status and `code`, the `detail` a missing
thing gets (so that another owner's and an ownerless one cannot be told from it), and then

- when refused: nothing changed (the balance of every wallet involved, the ledger's row
  count; without an Idempotency-Key, the stored keys too: a keyed refusal is kept for
  its replay);
- when applied: each wallet moved by exactly the amount the request asked, and the answer
  shows the balances of Alice's own wallets only;
- always: no money left a wallet that is not Alice's.

Below the matrix, the cases the matrix must not let pass: the theft (another owner's
money moved into the caller's own wallet), the payer refunding itself by naming its own
`TRANSFER_OUT` entry, and refusals that would tell the other party's balance (a refund
over the payer's limit, a payment over the payee's).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import EVERY_SCOPE, Key, TestDatabase
from tests.support import create_key as create_support_key
from wallet_api.devtools.server import ServiceProcess

WALLETS = "/api/v1/wallets"
TRANSFERS = "/api/v1/transfers"
REVERSALS = "/api/v1/reversals"
BATCH = "/api/v1/operations/batch"
HOLDS = "/api/v1/holds"

OWN, OTHER, NOBODY, MISSING = "own", "other", "ownerless", "missing"
#: The kinds of wallet a request can name; the payer and payee of an existing transfer are
#: one of the first three (a missing wallet has no history).
ROLES = (OWN, OTHER, NOBODY, MISSING)
EXISTING = (OWN, OTHER, NOBODY)
FAST, KEYED = "fast path", "keyed"
#: The largest balance (docs/API.md, Money), in cents.
MAX_CENTS = 999_999_999_999_999

#: The documents' rules the expected answers follow, each with its sentence.
RULES: dict[str, str] = {
    "own-wallet": (
        'SECURITY.md, a key with `write`: "withdraw from its owner\'s wallets"; with '
        "`deposit`: \"also deposit to its owner's wallets (alone, as an operation, or in a "
        'batch)"'
    ),
    "not-yours": (
        "API.md, Who may call: \"Another owner's wallet, transfer or ledger entry is "
        'answered exactly as one that does not exist (`404`)." and "Wallets created '
        'without keys have no owner, and no key reaches them." SECURITY.md: "the same '
        '`code` and the same `detail` but for the id"'
    ),
    "missing": (
        'API.md, Errors: "404 `wallet_not_found`: no wallet with that id (for a transfer, '
        'the `detail` says which side)"; "`transfer_not_found`, `entry_not_found`: no '
        'transfer, or no ledger entry, with that id"'
    ),
    "batch-items": (
        'API.md, Who may call: "Batch items are checked one by one." Batches: "`atomic`: '
        "all apply, or none. The first refused operation (by position) refuses the batch: "
        "the response is its problem document, with its status, a `detail` that names it "
        '(`Operation 1: …`) and its `index`."'
    ),
    "debits-only-own": (
        'API.md, Who may call: "A transfer debits only the caller\'s own wallet"; '
        'SECURITY.md, `write` cannot: "debit another owner\'s wallet"'
    ),
    "credits-anyone": (
        "API.md, Who may call: \"[a transfer] may credit anyone's (a payment); the answer "
        "then leaves the payee's balance out (`to_balance: null`)\"; SECURITY.md, `write` "
        'can: "transfer from them to any wallet whose id it knows"'
    ),
    "refund-by-payee": (
        'API.md, Who may call: "A transfer is reversed (refunded) by its payee"; Reversals: '
        '"either leg of a transfer reverses the whole transfer"; SECURITY.md: "a '
        "refund's [answers] leave out the payer's [balance]\""
    ),
    "reverse-own-entry": (
        'API.md, Who may call: "a deposit or a withdrawal [is reversed] by its wallet\'s owner"'
    ),
    "hold-own": (
        "API.md, Holds: \"Owners: a hold is its wallet's owner's; another owner's hold is a "
        '`404 hold_not_found`, as a missing one is"'
    ),
    "capture-pays-anyone": (
        "API.md, Holds: \"a capture into another owner's wallet is allowed (`to_balance` is "
        'then null), as transfers are"'
    ),
    "reversal-not-reversible": (
        'API.md, Reversals: "`422 entry_not_reversible` (a reversal itself)"; SECURITY.md: '
        "another owner's entry is answered as a missing one \"before anything else about "
        "it is judged (a reversal's amount, whether it can be reversed)\""
    ),
}

#: What a missing thing's `detail` reads, its id replaced by "…" (docs/API.md, Errors and
#: Transfers; the reversal's wording is the service's: the rule is only that another
#: owner's thing reads as a missing one).
WALLET_GONE = "Wallet … does not exist."
SOURCE_GONE = "The source wallet … does not exist."
DESTINATION_GONE = "The destination wallet … does not exist."
ENTRY_GONE = "Ledger entry … does not exist."
TRANSFER_GONE = "Transfer … does not exist."
HOLD_GONE = "Hold … does not exist."
#: An entry id no ledger reaches.
NO_ENTRY = 2**62


# --------------------------------------------------------------------------------------
# The service, the keys, the wallets


def create_key(database: TestDatabase, owner: str) -> Key:
    return create_support_key(database, owner, *EVERY_SCOPE)


def cents(amount: Any) -> int:
    return int(Decimal(str(amount)) * 100)


@dataclass(frozen=True)
class State:
    """What a refused request must not change."""

    balances: dict[str, int]  # cents, of the named wallets that exist
    ledger_rows: int
    stored_keys: int


class Ledger:
    """One connection of the module's own to the database, outside the service."""

    def __init__(self, database: TestDatabase) -> None:
        self._loop = asyncio.new_event_loop()
        self._connection: asyncpg.Connection = self._loop.run_until_complete(
            asyncpg.connect(database.url())
        )

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return self._loop.run_until_complete(self._connection.fetch(sql, *args))

    def state(self, wallets: list[str]) -> State:
        (row,) = self.fetch(
            "SELECT (SELECT count(*) FROM wallet_operations) AS rows, "
            "(SELECT count(*) FROM idempotency_keys) AS keys, "
            "(SELECT coalesce(json_object_agg(id, balance), '{}')::text FROM wallets "
            " WHERE id = ANY($1::uuid[])) AS balances",
            [uuid.UUID(wallet) for wallet in wallets],
        )
        return State(json.loads(row["balances"]), row["rows"], row["keys"])

    def entry(self, wallet: str, operation: str) -> int:
        (row,) = self.fetch(
            "SELECT max(id) AS id FROM wallet_operations WHERE wallet_id = $1 AND operation = $2",
            uuid.UUID(wallet),
            operation,
        )
        assert row["id"] is not None, (wallet, operation)
        return int(row["id"])

    def transfer_entry(self, transfer_id: str, operation: str) -> tuple[int, str]:
        (row,) = self.fetch(
            "SELECT id, wallet_id FROM wallet_operations WHERE transfer_id = $1 AND operation = $2",
            uuid.UUID(transfer_id),
            operation,
        )
        return int(row["id"]), str(row["wallet_id"])

    def close(self) -> None:
        self._loop.run_until_complete(self._connection.close())
        self._loop.close()


@dataclass
class World:
    http: httpx.Client  # the service with keys: every request of a cell
    open: httpx.Client  # the service without keys: what no key may do, to set cells up
    ledger: Ledger
    alice: Key  # the caller
    bob: Key  # another owner
    shared: dict[tuple[str, ...], Any] = field(default_factory=dict)

    def wallet(self, role: str, balance: int = 100) -> str:
        """A new wallet of that kind, holding `balance` (deposited without keys)."""
        if role == MISSING:
            return str(uuid.uuid4())
        if role == NOBODY:
            (row,) = self.ledger.fetch(
                "INSERT INTO wallets (id, currency, currency_exponent)"
                " VALUES (gen_random_uuid(), 'USD', 2) RETURNING id"
            )
            wallet = str(row["id"])
        else:
            key = self.alice if role == OWN else self.bob
            made = self.http.post(f"{WALLETS}/create_wallet", headers=key.headers)
            assert made.status_code == 201, made.text
            wallet = str(made.json()["wallet_uuid"])
        if balance:
            self.set_up(
                f"{WALLETS}/{wallet}/operation", {"operation": "DEPOSIT", "amount": balance}
            )
        return wallet

    def reused(self, *what: str, make: Callable[[], Any]) -> Any:
        """Something that refused requests may share: a refusal changes nothing."""
        if what not in self.shared:
            self.shared[what] = make()
        return self.shared[what]

    def shared_wallet(self, role: str, slot: str = "wallet") -> str:
        """A wallet of that kind that refused requests share."""
        wallet: str = self.reused(slot, role, make=lambda: self.wallet(role))
        return wallet

    def set_up(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A write by the service without keys (it checks no owner)."""
        response = self.open.post(path, json=body)
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    def pay(self, payer: str, payee: str, amount: int = 10) -> str:
        made = self.set_up(
            TRANSFERS, {"from_wallet_uuid": payer, "to_wallet_uuid": payee, "amount": amount}
        )
        return str(made["transfer_id"])


@pytest.fixture(scope="module")
def keyed(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service(AUTH_MODE="keys", RATE_LIMIT_RATE="100000", RATE_LIMIT_BURST="100000")


@pytest.fixture(scope="module")
def world(
    keyed: ServiceProcess, service: ServiceProcess, database: TestDatabase
) -> Iterator[World]:
    run = uuid.uuid4().hex[:8]  # owners of their own: the database is the session's
    ledger = Ledger(database)
    with (
        httpx.Client(base_url=keyed.base_url, timeout=30) as http,
        httpx.Client(base_url=service.base_url, timeout=30) as open_,
    ):
        yield World(
            http,
            open_,
            ledger,
            create_key(database, f"alice-{run}"),
            create_key(database, f"bob-{run}"),
        )
    ledger.close()


# --------------------------------------------------------------------------------------
# A cell: its request, what it names, and what it must answer


@dataclass(frozen=True)
class Expect:
    status: int
    code: str | None  # None: applied
    rule: str
    detail: str | None = None  # a refusal's, the id as "…"


@dataclass
class Case:
    """A cell's request, set up: the wallets it involves (id: kind) and, if it applies,
    how much each moves (cents)."""

    method: str
    path: str
    body: dict[str, Any]
    wallets: dict[str, str]
    moves: dict[str, int]
    names: list[str] = field(default_factory=list)  # ids a refusal's detail may name
    headers: dict[str, str] = field(default_factory=dict)
    #: Ledger rows it writes when applied; None: one per wallet it moves (a hold writes a
    #: row and moves no balance).
    rows: int | None = None


def anonymised(text: str, ids: list[str]) -> str:
    for thing in sorted(ids, key=len, reverse=True):
        text = text.replace(thing, "…")
    return text


def judge(world: World, case: Case, expect: Expect) -> httpx.Response:
    """Send the cell's request as Alice and hold the answer to the documents."""
    assert expect.rule in RULES
    before = world.ledger.state(list(case.wallets))
    response = world.http.request(
        case.method,
        case.path,
        json=case.body,
        headers={**world.alice.headers, **case.headers},
    )
    after = world.ledger.state(list(case.wallets))
    body = response.json()
    assert response.status_code == expect.status, (RULES[expect.rule], response.text)
    applied = expect.code is None
    if not applied:
        assert body["code"] == expect.code, (RULES[expect.rule], response.text)
        if expect.detail is not None:
            assert anonymised(body["detail"], case.names) == expect.detail, response.text
        changed = (after.balances, after.ledger_rows) != (before.balances, before.ledger_rows)
        assert not changed, ("a refusal changed something", RULES[expect.rule])
        if "Idempotency-Key" not in case.headers:  # (a keyed refusal is kept for its replay)
            assert after.stored_keys == before.stored_keys
    else:  # each wallet moved by what was asked of it, one ledger row each
        moved = {w: after.balances[w] - before.balances[w] for w in before.balances}
        assert moved == {w: case.moves.get(w, 0) for w in before.balances}, response.text
        rows = after.ledger_rows - before.ledger_rows
        expected_rows = case.rows
        if expected_rows is None:
            expected_rows = sum(1 for amount in case.moves.values() if amount)
        assert rows == expected_rows, response.text
    for wallet, role in case.wallets.items():  # money never leaves a wallet not Alice's
        if role != OWN and wallet in before.balances:
            assert after.balances[wallet] >= before.balances[wallet], (role, response.text)
    # The answer shows balances of Alice's own wallets only, each as the ledger has it.
    for wallet, balance in shown_balances(body, case):
        if case.wallets.get(wallet) == OWN:
            assert balance is not None, response.text
            assert cents(balance) == after.balances[wallet], response.text
        else:
            assert balance is None, (wallet, case.wallets.get(wallet), response.text)
    return response


def shown_balances(body: Any, case: Case) -> list[tuple[str, Any]]:
    """(wallet, balance) for each balance an answer shows."""
    if not isinstance(body, dict):
        return []
    if "from_balance" in body:
        return [
            (body["from_wallet_uuid"], body["from_balance"]),
            (body["to_wallet_uuid"], body["to_balance"]),
        ]
    if "legs" in body:
        return [(leg["wallet_uuid"], leg["balance_after"]) for leg in body["legs"]]
    if "hold_id" in body:  # a hold: its wallet's balance, and a capture's payee's
        shown = []
        if body["balances"] is not None:  # a hold as read: no balances at all
            shown.append((body["wallet_uuid"], body["balances"]["balance"]))
        if body["capture"] is not None and body["capture"]["to_wallet_uuid"] is not None:
            shown.append((body["capture"]["to_wallet_uuid"], body["capture"]["to_balance"]))
        return shown
    if "balance" in body and case.path.endswith("/operation"):
        return [(case.path.split("/")[-2], body["balance"])]
    return []


def param(name: str, *values: Any) -> Any:
    return pytest.param(*values, id=name)


# --------------------------------------------------------------------------------------
# The operation endpoint: one deposit or withdrawal, on its fast path and keyed


def operate_expect(role: str) -> Expect:
    if role == OWN:
        return Expect(200, None, "own-wallet")
    return Expect(
        404, "wallet_not_found", "missing" if role == MISSING else "not-yours", WALLET_GONE
    )


OPERATE_CELLS = [
    param(f"{way}-{kind}-{role}", way, kind, role)
    for way in (FAST, KEYED)
    for kind in ("DEPOSIT", "WITHDRAW")
    for role in ROLES
]


@pytest.mark.parametrize(("way", "kind", "role"), OPERATE_CELLS)
def test_operation(world: World, way: str, kind: str, role: str) -> None:
    expect = operate_expect(role)
    wallet = world.wallet(role) if expect.code is None else world.shared_wallet(role)
    case = Case(
        "POST",
        f"{WALLETS}/{wallet}/operation",
        {"operation": kind, "amount": 1},
        {wallet: role},
        {wallet: 100 if kind == "DEPOSIT" else -100},
        names=[wallet],
        headers={"Idempotency-Key": f"owners-{uuid.uuid4()}"} if way == KEYED else {},
    )
    judge(world, case, expect)


# --------------------------------------------------------------------------------------
# The batch endpoint, atomic and not: one item on each kind of wallet, and one foreign
# item between two of Alice's


BATCH_CELLS = [
    param(f"{'atomic' if atomic else 'each'}-{kind}-{role}", atomic, (kind,), (role,))
    for atomic in (False, True)
    for kind in ("DEPOSIT", "WITHDRAW")
    for role in ROLES
] + [
    param(
        f"{'atomic' if atomic else 'each'}-mixed-{role}",
        atomic,
        ("DEPOSIT", "WITHDRAW", "DEPOSIT"),
        (OWN, role, OWN),
    )
    for atomic in (False, True)
    for role in (OTHER, NOBODY, MISSING)
]


@pytest.mark.parametrize(("atomic", "kinds", "roles"), BATCH_CELLS)
def test_batch(world: World, atomic: bool, kinds: tuple[str, ...], roles: tuple[str, ...]) -> None:
    refused = [index for index, role in enumerate(roles) if role != OWN]
    applies = not (atomic and refused)
    wallets = [
        world.wallet(role) if role == OWN and applies else world.shared_wallet(role)
        for role in roles
    ]
    amounts = [index + 1 for index in range(len(roles))]
    items = [
        {"wallet_uuid": wallet, "operation": kind, "amount": amount}
        for wallet, kind, amount in zip(wallets, kinds, amounts, strict=True)
    ]
    moves: dict[str, int] = {}
    for wallet, kind, amount, role in zip(wallets, kinds, amounts, roles, strict=True):
        if role == OWN and applies:
            moves[wallet] = moves.get(wallet, 0) + (100 if kind == "DEPOSIT" else -100) * amount
    rule = "batch-items"
    if atomic and refused:
        first = refused[0]
        expect = Expect(404, "wallet_not_found", rule, f"Operation {first}: {WALLET_GONE}")
    else:
        expect = Expect(200, None, rule)
    case = Case(
        "POST",
        BATCH,
        {"operations": items, "atomic": atomic},
        dict(zip(wallets, roles, strict=True)),
        moves,
        names=wallets,
    )
    response = judge(world, case, expect)
    body = response.json()
    if atomic and refused:
        assert body["index"] == refused[0]
        return
    results = body["results"]
    assert [result["status"] for result in results] == [
        200 if role == OWN else 404 for role in roles
    ], response.text
    for result, role in zip(results, roles, strict=True):
        if role != OWN:
            assert result["body"]["code"] == "wallet_not_found"
            assert anonymised(result["body"]["detail"], wallets) == WALLET_GONE
            assert "balance" not in result["body"]
    # Each of Alice's items shows her wallet's balance after it (one item a wallet here).
    now = world.ledger.state(list(moves)).balances
    for wallet, result, role in zip(wallets, results, roles, strict=True):
        if role == OWN:
            assert cents(result["body"]["balance"]) == now[wallet], response.text


# --------------------------------------------------------------------------------------
# Transfers, on the fast path (no Idempotency-Key) and keyed: every source and destination


def transfer_expect(source: str, destination: str) -> Expect:
    if source != OWN:
        rule = "missing" if source == MISSING else "debits-only-own"
        return Expect(404, "wallet_not_found", rule, SOURCE_GONE)
    if destination == MISSING:
        return Expect(404, "wallet_not_found", "missing", DESTINATION_GONE)
    return Expect(201, None, "credits-anyone")


TRANSFER_CELLS = [
    param(f"{way}-{source}-to-{destination}", way, source, destination)
    for way in (FAST, KEYED)
    for source in ROLES
    for destination in ROLES
]


@pytest.mark.parametrize(("way", "source", "destination"), TRANSFER_CELLS)
def test_transfer(world: World, way: str, source: str, destination: str) -> None:
    expect = transfer_expect(source, destination)
    if expect.code is None:
        payer, payee = world.wallet(source), world.wallet(destination)
    else:  # shared, from two slots: two wallets of a kind when both sides are of it
        payer = world.shared_wallet(source)
        payee = world.shared_wallet(destination, "payee")
    case = Case(
        "POST",
        TRANSFERS,
        {"from_wallet_uuid": payer, "to_wallet_uuid": payee, "amount": 1},
        {payer: source, payee: destination},
        {payer: -100, payee: 100},
        names=[payer, payee],
        headers={"Idempotency-Key": f"owners-{uuid.uuid4()}"} if way == KEYED else {},
    )
    response = judge(world, case, expect)
    if expect.code is None:
        assert response.headers["location"] == f"{TRANSFERS}/{response.json()['transfer_id']}"


# --------------------------------------------------------------------------------------
# Holds: one opened on each kind of wallet; captured (into no payee and into each kind),
# voided and read, each of a hold on each kind of wallet


HOLD_CELLS = [param(f"{way}-{role}", way, role) for way in (FAST, KEYED) for role in ROLES]


@pytest.mark.parametrize(("way", "role"), HOLD_CELLS)
def test_hold(world: World, way: str, role: str) -> None:
    if role == OWN:
        expect = Expect(201, None, "hold-own")
    else:
        rule = "missing" if role == MISSING else "not-yours"
        expect = Expect(404, "wallet_not_found", rule, WALLET_GONE)
    wallet = world.wallet(role) if expect.code is None else world.shared_wallet(role)
    case = Case(
        "POST",
        HOLDS,
        {"wallet_uuid": wallet, "amount": 1},
        {wallet: role},
        {},
        names=[wallet],
        headers={"Idempotency-Key": f"owners-{uuid.uuid4()}"} if way == KEYED else {},
        rows=1,  # the HOLD row: the balance stays, what is available falls
    )
    judge(world, case, expect)


def hold_on(world: World, role: str, amount: int = 30) -> tuple[str, str]:
    """A new hold of `amount` cents on a new wallet of that kind (opened without keys),
    and its wallet; a missing hold's id and a missing wallet for MISSING."""
    wallet = world.wallet(role)
    if role == MISSING:
        return str(uuid.uuid4()), wallet
    made = world.set_up(HOLDS, {"wallet_uuid": wallet, "amount": str(Decimal(amount) / 100)})
    return str(made["hold_id"]), wallet


def foreign_hold_expect(role: str) -> Expect:
    return Expect(404, "hold_not_found", "missing" if role == MISSING else "not-yours", HOLD_GONE)


CAPTURE_CELLS = [
    param(f"{role}-hold-to-{payee or 'nobody'}", role, payee)
    for role in ROLES
    for payee in (None, *ROLES)
    if role == OWN or payee in (None, OWN)
]


@pytest.mark.parametrize(("role", "payee_role"), CAPTURE_CELLS)
def test_capture(world: World, role: str, payee_role: str | None) -> None:
    hold, wallet = hold_on(world, role)
    payee = None if payee_role is None else world.wallet(payee_role)
    body = {} if payee is None else {"to_wallet_uuid": payee}
    wallets = {wallet: role} | ({} if payee is None or payee_role is None else {payee: payee_role})
    if role != OWN:
        expect = foreign_hold_expect(role)
    elif payee_role == MISSING:
        expect = Expect(404, "wallet_not_found", "missing")
    else:
        expect = Expect(200, None, "hold-own" if payee is None else "capture-pays-anyone")
    moves = {wallet: -30} | ({} if payee is None else {payee: 30})
    case = Case("POST", f"{HOLDS}/{hold}/capture", body, wallets, moves, names=[hold, wallet])
    response = judge(world, case, expect)
    if expect.code is None:
        assert response.json()["status"] == "captured", response.text


VOID_CELLS = [param(role, role) for role in ROLES]


@pytest.mark.parametrize("role", VOID_CELLS)
def test_void_and_read(world: World, role: str) -> None:
    hold, wallet = hold_on(world, role)
    expect = Expect(200, None, "hold-own") if role == OWN else foreign_hold_expect(role)
    read = world.http.get(f"{HOLDS}/{hold}", headers=world.alice.headers)
    listed = world.http.get(f"{WALLETS}/{wallet}/holds", headers=world.alice.headers)
    balances = world.http.get(f"{WALLETS}/{wallet}/balances", headers=world.alice.headers)
    if role == OWN:
        assert read.status_code == listed.status_code == balances.status_code == 200
        assert [each["hold_id"] for each in listed.json()["items"]] == [hold], listed.text
    else:
        assert read.status_code == 404, read.text
        assert read.json()["code"] == "hold_not_found"
        assert anonymised(read.json()["detail"], [hold]) == HOLD_GONE
        for refused in (listed, balances):  # the wallet itself is not the caller's
            assert refused.status_code == 404, refused.text
            assert anonymised(refused.json()["detail"], [wallet]) == WALLET_GONE
    case = Case("POST", f"{HOLDS}/{hold}/void", {}, {wallet: role}, {}, names=[hold], rows=1)
    response = judge(world, case, expect)
    if expect.code is None:
        assert response.json()["status"] == "voided", response.text


# --------------------------------------------------------------------------------------
# Reversals: of a deposit or a withdrawal, of either leg of a transfer or the transfer by
# its id (every payer and payee), and of a reversal


ENTRY_CELLS = [
    param(f"{kind}-{role}", kind, role) for kind in ("DEPOSIT", "WITHDRAW") for role in EXISTING
] + [param("no-such-entry", "DEPOSIT", MISSING)]


@pytest.mark.parametrize(("kind", "role"), ENTRY_CELLS)
def test_reverse_deposit_or_withdrawal(world: World, kind: str, role: str) -> None:
    if role == MISSING:
        expect = Expect(404, "entry_not_found", "missing", ENTRY_GONE)
        case = Case("POST", REVERSALS, {"entry_id": NO_ENTRY}, {}, {}, names=[str(NO_ENTRY)])
        judge(world, case, expect)
        return
    applies = role == OWN
    expect = (
        Expect(201, None, "reverse-own-entry")
        if applies
        else Expect(404, "entry_not_found", "not-yours", ENTRY_GONE)
    )

    def entry() -> tuple[str, int]:
        wallet = world.wallet(role)
        if kind == "WITHDRAW":
            world.set_up(f"{WALLETS}/{wallet}/operation", {"operation": "WITHDRAW", "amount": 7})
        return wallet, world.ledger.entry(wallet, kind)

    wallet, entry_id = entry() if applies else world.reused("entry", kind, role, make=entry)
    amount = 100 if kind == "DEPOSIT" else 7
    case = Case(
        "POST",
        REVERSALS,
        {"entry_id": entry_id},
        {wallet: role},
        {wallet: -cents(amount) if kind == "DEPOSIT" else cents(amount)},
        names=[str(entry_id)],
    )
    judge(world, case, expect)


NAMED = ("TRANSFER_OUT", "TRANSFER_IN", "transfer_id")
TRANSFER_REVERSAL_CELLS = [
    param(f"{named}-payer-{payer}-payee-{payee}", named, payer, payee)
    for named in NAMED
    for payer in EXISTING
    for payee in EXISTING
] + [param("no-such-transfer", "transfer_id", MISSING, MISSING)]


def refund_expect(named: str, payee: str) -> Expect:
    code, detail = (
        ("transfer_not_found", TRANSFER_GONE)
        if named == "transfer_id"
        else ("entry_not_found", ENTRY_GONE)
    )
    if payee == MISSING:
        return Expect(404, code, "missing", detail)
    if payee == OWN:
        return Expect(201, None, "refund-by-payee")
    return Expect(404, code, "refund-by-payee", detail)


@pytest.mark.parametrize(("named", "payer", "payee"), TRANSFER_REVERSAL_CELLS)
def test_reverse_transfer(world: World, named: str, payer: str, payee: str) -> None:
    expect = refund_expect(named, payee)
    if payee == MISSING:
        missing = str(uuid.uuid4())
        judge(
            world,
            Case("POST", REVERSALS, {"transfer_id": missing}, {}, {}, names=[missing]),
            expect,
        )
        return

    def transfer() -> tuple[str, str, str]:
        source, destination = world.wallet(payer), world.wallet(payee)
        return source, destination, world.pay(source, destination)

    source, destination, transfer_id = (
        transfer() if expect.code is None else world.reused("transfer", payer, payee, make=transfer)
    )
    if named == "transfer_id":
        body: dict[str, Any] = {"transfer_id": transfer_id}
        names = [transfer_id]
    else:
        entry_id, _ = world.ledger.transfer_entry(transfer_id, named)
        body, names = {"entry_id": entry_id}, [str(entry_id)]
    case = Case(
        "POST",
        REVERSALS,
        body,
        {source: payer, destination: payee},
        {source: 1000, destination: -1000},
        names=names,
    )
    judge(world, case, expect)


REVERSAL_ENTRY_CELLS = [
    param(
        f"of-{kind}-{role}",
        kind,
        role,
        role,
        "REVERSAL_OUT" if kind == "DEPOSIT" else "REVERSAL_IN",
    )
    for kind in ("DEPOSIT", "WITHDRAW")
    for role in EXISTING
] + [
    param(f"of-refund-{leg}-payer-{payer}-payee-{payee}", "TRANSFER", payer, payee, leg)
    for leg in ("REVERSAL_OUT", "REVERSAL_IN")  # on the payee's wallet; on the payer's
    for payer in EXISTING
    for payee in EXISTING
]


@pytest.mark.parametrize(("kind", "payer", "payee", "leg"), REVERSAL_ENTRY_CELLS)
def test_reverse_a_reversal(world: World, kind: str, payer: str, payee: str, leg: str) -> None:
    """A reversal entry is its wallet's: its owner is told it cannot be reversed, anyone
    else that it does not exist."""
    if kind == "TRANSFER":
        source, destination = world.wallet(payer), world.wallet(payee)
        world.set_up(REVERSALS, {"transfer_id": world.pay(source, destination)})
        wallets = {source: payer, destination: payee}
        holder = destination if leg == "REVERSAL_OUT" else source
    else:
        holder = world.wallet(payer)
        if kind == "WITHDRAW":
            world.set_up(f"{WALLETS}/{holder}/operation", {"operation": "WITHDRAW", "amount": 7})
        world.set_up(REVERSALS, {"entry_id": world.ledger.entry(holder, kind)})
        wallets = {holder: payer}
    entry_id = world.ledger.entry(holder, leg)
    expect = (
        Expect(422, "entry_not_reversible", "reversal-not-reversible")
        if wallets[holder] == OWN
        else Expect(404, "entry_not_found", "reversal-not-reversible", ENTRY_GONE)
    )
    case = Case("POST", REVERSALS, {"entry_id": entry_id}, wallets, {}, names=[str(entry_id)])
    judge(world, case, expect)


# --------------------------------------------------------------------------------------
# The cases the matrix must not let pass, spelled out


@pytest.mark.parametrize("way", [FAST, KEYED])
@pytest.mark.parametrize("victim_role", [OTHER, NOBODY])
def test_a_key_cannot_move_another_owners_money_into_its_own_wallet(
    world: World, way: str, victim_role: str
) -> None:
    """The theft: a transfer whose source is not the caller's and whose destination is.
    Refused as from a missing source; the victim keeps every cent."""
    victim, own = world.wallet(victim_role, 50), world.wallet(OWN, 0)
    before = world.ledger.state([victim, own])
    headers = {"Idempotency-Key": f"theft-{uuid.uuid4()}"} if way == KEYED else {}
    response = world.http.post(
        TRANSFERS,
        json={"from_wallet_uuid": victim, "to_wallet_uuid": own, "amount": 50},
        headers={**world.alice.headers, **headers},
    )
    assert (response.status_code, response.json()["code"]) == (404, "wallet_not_found")
    assert response.json()["detail"] == f"The source wallet {victim} does not exist."
    assert world.ledger.state([victim, own]) == before
    assert before.balances == {victim: 5000, own: 0}


def test_the_payer_cannot_refund_itself_by_naming_its_own_transfer_out_entry(
    world: World,
) -> None:
    """The payer owns the wallet of the `TRANSFER_OUT` leg, but a refund is the payee's:
    to the payer either leg, and the transfer, is one that does not exist."""
    payer, payee = world.wallet(OWN, 30), world.wallet(OTHER, 0)
    transfer_id = world.pay(payer, payee, 30)
    out_entry, _ = world.ledger.transfer_entry(transfer_id, "TRANSFER_OUT")
    in_entry, _ = world.ledger.transfer_entry(transfer_id, "TRANSFER_IN")
    before = world.ledger.state([payer, payee])
    for body, code, detail in (
        ({"entry_id": out_entry}, "entry_not_found", f"Ledger entry {out_entry} does not exist."),
        ({"entry_id": out_entry, "amount": 1}, "entry_not_found", None),
        ({"entry_id": in_entry}, "entry_not_found", None),
        ({"transfer_id": transfer_id}, "transfer_not_found", None),
    ):
        refused = world.http.post(REVERSALS, json=body, headers=world.alice.headers)
        assert (refused.status_code, refused.json()["code"]) == (404, code), refused.text
        if detail is not None:
            assert refused.json()["detail"] == detail
        assert world.ledger.state([payer, payee]) == before
    assert before.balances == {payer: 0, payee: 3000}
    # The payee may: by either leg (here the payer's own TRANSFER_OUT).
    refund = world.http.post(REVERSALS, json={"entry_id": out_entry}, headers=world.bob.headers)
    assert refund.status_code == 201, refund.text
    assert world.ledger.state([payer, payee]).balances == {payer: 3000, payee: 0}


def every_value(document: Any) -> Iterator[str]:
    """Every key and scalar of a JSON document, as text."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield str(key)
            yield from every_value(value)
    elif isinstance(document, list):
        for value in document:
            yield from every_value(value)
    else:
        yield str(document)


def assert_balance_left_out(document: Any, balance_cents: int) -> None:
    shown = f"{Decimal(balance_cents) / 100}"
    told = [text for text in every_value(document) if shown in text or str(balance_cents) in text]
    assert not told, (shown, document)


@pytest.mark.parametrize("named", ["transfer_id", "TRANSFER_IN", "TRANSFER_OUT"])
def test_a_refused_refund_leaves_the_payers_balance_out(world: World, named: str) -> None:
    """A refund credits the payer; over the payer's limit it is refused, and the payee
    is not told the payer's balance (docs/SECURITY.md: "a refund's leave out the
    payer's"). The payee's own shortfall is told in full: the balance is its own."""
    payer, payee = world.wallet(OTHER, 0), world.wallet(OWN, 0)
    holding = MAX_CENTS - 51  # 9,999,999,999,999.48: not the limit's own digits
    deposit = {"operation": "DEPOSIT", "amount": str(Decimal(holding) / 100)}
    world.set_up(f"{WALLETS}/{payer}/operation", deposit)
    transfer_id = world.pay(payer, payee, 1)
    body: dict[str, Any] = (
        {"transfer_id": transfer_id}
        if named == "transfer_id"
        else {"entry_id": world.ledger.transfer_entry(transfer_id, named)[0]}
    )
    # The payer has money come in meanwhile: giving back the 1 would pass its limit.
    world.set_up(f"{WALLETS}/{payer}/operation", {"operation": "DEPOSIT", "amount": 1})
    before = world.ledger.state([payer, payee])
    assert before.balances == {payer: holding, payee: 100}
    refused = world.http.post(REVERSALS, json=body, headers=world.alice.headers)
    assert (refused.status_code, refused.json()["code"]) == (400, "balance_limit_exceeded")
    assert refused.json()["detail"] == (
        f"Cannot reverse 1 to wallet {payer}: its balance would exceed the limit 9999999999999.99."
    )
    assert_balance_left_out(refused.json(), holding)
    assert world.ledger.state([payer, payee]) == before
    # The payee spent what it was paid: its own balance is told.
    world.set_up(f"{WALLETS}/{payee}/operation", {"operation": "WITHDRAW", "amount": "0.75"})
    short = world.http.post(REVERSALS, json=body, headers=world.alice.headers)
    assert (short.status_code, short.json()["code"]) == (400, "insufficient_funds")
    assert short.json()["detail"].endswith("its balance is 0.25."), short.text
    assert_balance_left_out(short.json(), holding)


@pytest.mark.parametrize("way", [FAST, KEYED])
def test_a_refused_payment_leaves_the_payees_balance_out(world: World, way: str) -> None:
    """A payment over the payee's limit is refused without the payee's balance."""
    payer, payee = world.wallet(OWN, 1), world.wallet(OTHER, 0)
    holding = MAX_CENTS - 59  # 9,999,999,999,999.40
    world.set_up(
        f"{WALLETS}/{payee}/operation",
        {"operation": "DEPOSIT", "amount": str(Decimal(holding) / 100)},
    )
    before = world.ledger.state([payer, payee])
    headers = {"Idempotency-Key": f"over-{uuid.uuid4()}"} if way == KEYED else {}
    refused = world.http.post(
        TRANSFERS,
        json={"from_wallet_uuid": payer, "to_wallet_uuid": payee, "amount": 1},
        headers={**world.alice.headers, **headers},
    )
    assert (refused.status_code, refused.json()["code"]) == (400, "balance_limit_exceeded")
    assert refused.json()["detail"] == (
        f"Cannot transfer 1 to wallet {payee}: its balance would exceed the limit 9999999999999.99."
    )
    assert_balance_left_out(refused.json(), holding)
    assert world.ledger.state([payer, payee]).balances == before.balances
