"""`wallet-api verify`: the whole ledger checked by set-based SQL, non-zero on a mismatch."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from tests.support import ROOT, TestDatabase, migrated, operation
from wallet_api.posting.entries import CREDIT_KINDS, UNMOVING_KINDS


def verify(database: TestDatabase) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wallet_api.cli", "verify"],
        cwd=ROOT,
        env={**os.environ, **database.environment()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_verifier_passes_a_consistent_ledger_and_catches_a_corrupted_balance(
    client: httpx.Client, wallet: str, database: TestDatabase
) -> None:
    before = json.loads(verify(database).stdout)
    for kind, amount in [("DEPOSIT", 100), ("WITHDRAW", "30.25"), ("DEPOSIT", 1)]:
        client.post(f"/api/v1/wallets/{wallet}/operation", json=operation(kind, amount))
    clean = verify(database)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert report["consistent"] is True
    assert report["operations"] - before["operations"] == 3
    assert report["wallets"] == before["wallets"]

    # Behind the service's back: the balance no longer matches the ledger.
    database.fetch("UPDATE wallets SET balance = balance + 1 WHERE id = $1", uuid.UUID(wallet))
    try:
        broken = verify(database)
        assert broken.returncode == 1
        report = json.loads(broken.stdout)
        assert report["balance_mismatches"] == 1
        assert report["wallets_to_inspect"] == [wallet]
    finally:
        database.fetch("UPDATE wallets SET balance = balance - 1 WHERE id = $1", uuid.UUID(wallet))


def test_the_verifier_catches_a_broken_chain_of_balances(
    client: httpx.Client, wallet: str, database: TestDatabase
) -> None:
    client.post(f"/api/v1/wallets/{wallet}/operation", json=operation("DEPOSIT", 5))
    client.post(f"/api/v1/wallets/{wallet}/operation", json=operation("DEPOSIT", 5))
    first = "SELECT min(id) FROM wallet_operations WHERE wallet_id = $1"
    database.fetch(
        f"UPDATE wallet_operations SET balance_after = balance_after + 1 WHERE id = ({first})",
        uuid.UUID(wallet),
    )
    try:
        broken = verify(database)
        assert broken.returncode == 1
        assert json.loads(broken.stdout)["chain_breaks"] >= 1
    finally:
        database.fetch(
            f"UPDATE wallet_operations SET balance_after = balance_after - 1 WHERE id = ({first})",
            uuid.UUID(wallet),
        )
    assert verify(database).returncode == 0


def test_the_verifier_catches_a_negative_balance_that_adds_up(
    make_database: Callable[[], TestDatabase],
) -> None:
    """A balance below zero whose ledger is otherwise consistent (it adds up, its chain
    holds): only the negative-balance check can catch it. The schema's CHECK constraints
    refuse such rows, so they are dropped first, as a faulty migration or a hand-made
    repair might."""
    database = migrated(make_database())
    database.fetch("ALTER TABLE wallets DROP CONSTRAINT ck_wallets_balance_not_negative")
    database.fetch(
        "ALTER TABLE wallet_operations "
        "DROP CONSTRAINT ck_wallet_operations_balance_after_not_negative"
    )
    wallet = uuid.uuid4()
    database.fetch(
        "INSERT INTO wallets (id, currency, currency_exponent, balance)"
        " VALUES ($1, 'USD', 2, -500)",
        wallet,
    )
    database.fetch(
        "INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after) "
        "VALUES ($1, 'WITHDRAW', 500, -500)",
        wallet,
    )
    broken = verify(database)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    report = json.loads(broken.stdout)
    assert report["negative_balances"] == 1
    assert report["balance_mismatches"] == 0
    assert report["chain_breaks"] == 0
    assert report["wallets_to_inspect"] == [str(wallet)]


def test_the_verifier_catches_a_transfer_that_creates_money(
    client: httpx.Client, database: TestDatabase
) -> None:
    """A transfer's credit made larger, with the destination's balance and chain edited to
    agree: every wallet adds up, only the transfer checks (legs that match, money
    conserved) can catch it."""
    source = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
    destination = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
    client.post(f"/api/v1/wallets/{source}/operation", json=operation("DEPOSIT", 10))
    made = client.post(
        "/api/v1/transfers",
        json={"from_wallet_uuid": source, "to_wallet_uuid": destination, "amount": 4},
    ).json()
    assert verify(database).returncode == 0
    edits = [
        (
            "UPDATE wallet_operations SET amount = amount {0} 1, balance_after = balance_after "
            "{0} 1 WHERE transfer_id = $1 AND operation = 'TRANSFER_IN'",
            uuid.UUID(made["transfer_id"]),
        ),
        ("UPDATE wallets SET balance = balance {0} 1 WHERE id = $1", uuid.UUID(destination)),
    ]
    for edit, target in edits:
        database.fetch(edit.format("+"), target)
    try:
        broken = verify(database)
        assert broken.returncode == 1
        report = json.loads(broken.stdout)
        assert report["balance_mismatches"] == report["chain_breaks"] == 0
        assert report["unmatched_transfers"] == 1
        assert report["money_created"] == 1
        assert report["transfers_to_inspect"] == [made["transfer_id"]]
    finally:
        for edit, target in edits:
            database.fetch(edit.format("-"), target)
    assert verify(database).returncode == 0


def test_the_verifier_catches_a_reversal_larger_than_its_entry(
    client: httpx.Client, wallet: str, database: TestDatabase
) -> None:
    client.post(f"/api/v1/wallets/{wallet}/operation", json=operation("DEPOSIT", 10))
    (deposit,) = database.fetch(
        "SELECT max(id) AS id FROM wallet_operations WHERE wallet_id = $1", uuid.UUID(wallet)
    )
    assert client.post("/api/v1/reversals", json={"entry_id": deposit["id"]}).status_code == 201
    edit = "UPDATE wallet_operations SET amount = amount {} 1 WHERE reverses_id = $1"
    database.fetch(edit.format("+"), deposit["id"])
    try:
        broken = verify(database)
        assert broken.returncode == 1
        assert json.loads(broken.stdout)["bad_reversals"] == 1
    finally:
        database.fetch(edit.format("-"), deposit["id"])
    assert verify(database).returncode == 0


# Each rule of the ledger check (docs/OPERATIONS.md, "Checking the ledger"), broken alone:
# a ledger written by hand in SQL in which exactly one rule fails and every other holds,
# so that only that rule can report it. Amounts are minor units.

#: The verifier's counts, one per rule; `money_created` is the conservation of money.
RULES = (
    "balance_mismatches",
    "chain_breaks",
    "negative_balances",
    "unmatched_transfers",
    "bad_reversals",
    "money_created",
    "held_mismatches",
    "bad_holds",
    "negative_available",
    "currency_crossings",
)


@dataclass(frozen=True)
class Row:
    """A ledger row to write: `wallet`, `counterparty` and `transfer` are names (one letter
    a wallet, `t...` a transfer), `reverses` the label of the row it compensates."""

    wallet: str
    operation: str
    amount: int
    transfer: str | None = None
    counterparty: str | None = None
    label: str | None = None
    reverses: str | None = None
    balance_after: int | None = None  # None: the previous one plus the signed amount
    hold: str | None = None  # the hold's name (`h...`), for a hold's rows


@dataclass(frozen=True)
class HoldSpec:
    """A holds row to write: its name, wallet, amount, what was captured of it, what it
    still holds, and its status (active ones expire in an hour)."""

    name: str
    wallet: str
    amount: int
    captured: int = 0
    remaining: int | None = None  # None: amount - captured
    status: str = "active"


def deposit(wallet: str, amount: int, label: str | None = None) -> Row:
    return Row(wallet, "DEPOSIT", amount, label=label)


def leg(
    operation: str,
    wallet: str,
    other: str,
    amount: int,
    transfer: str,
    *,
    label: str | None = None,
    reverses: str | None = None,
) -> Row:
    """A transfer's leg (TRANSFER_IN/OUT) or its reversal's (REVERSAL_IN/OUT) on `wallet`,
    naming `other`."""
    return Row(wallet, operation, amount, transfer, other, label, reverses)


def write_ledger(
    database: TestDatabase,
    rows: list[Row],
    balances: dict[str, int] | None = None,
    holds: tuple[HoldSpec, ...] = (),
    held: dict[str, int] | None = None,
    *,
    currencies: dict[str, tuple[str, int]] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Replace the ledger by `rows`, in order: each `balance_after` the one before plus its
    signed amount unless given, each wallet's balance the sum of its ledger unless
    `balances` says otherwise, what it holds the sum of its active `holds` unless `held`
    says otherwise. The wallets' and transfers' ids by name."""
    names = {row.wallet for row in rows} | {r.counterparty for r in rows if r.counterparty}
    wallets = {name: uuid.uuid4() for name in sorted(names | set(balances or {}))}
    transfers = {row.transfer: uuid.uuid4() for row in rows if row.transfer}
    hold_ids = {spec.name: uuid.uuid4() for spec in holds}
    running = dict.fromkeys(wallets, 0)
    chain = []
    for row in rows:
        if row.operation in CREDIT_KINDS:
            running[row.wallet] += row.amount
        elif row.operation not in UNMOVING_KINDS:
            running[row.wallet] -= row.amount
        chain.append(running[row.wallet] if row.balance_after is None else row.balance_after)
    final = {**running, **(balances or {})}
    holding = dict.fromkeys(wallets, 0)
    for spec in holds:
        if spec.status == "active":
            holding[spec.wallet] += _remaining(spec)
    holding.update(held or {})

    async def write() -> None:
        connection = await asyncpg.connect(database.url())
        try:
            async with connection.transaction():
                await connection.execute(
                    "TRUNCATE wallet_operations, holds, balance_monitors, wallets"
                )
                await connection.executemany(
                    "INSERT INTO wallets"
                    " (id, currency, currency_exponent, balance, held, holds_expire_at)"
                    " VALUES ($1, $5, $6, $2, $3,"
                    " CASE WHEN $4 THEN now() + interval '1 hour' END)",
                    [
                        (
                            wallets[name],
                            final[name],
                            holding[name],
                            any(s.wallet == name and s.status == "active" for s in holds),
                            *(currencies or {}).get(name, ("USD", 2)),
                        )
                        for name in wallets
                    ],
                )
                await connection.executemany(
                    "INSERT INTO holds (id, wallet_id, amount, captured, remaining, status, "
                    "expires_at, closed_at) VALUES ($1, $2, $3, $4, $5, $6::text, "
                    "now() + interval '1 hour', CASE WHEN $6::text <> 'active' THEN now() END)",
                    [
                        (
                            hold_ids[spec.name],
                            wallets[spec.wallet],
                            spec.amount,
                            spec.captured,
                            _remaining(spec),
                            spec.status,
                        )
                        for spec in holds
                    ],
                )
                ids: dict[str, int] = {}
                for row, balance_after in zip(rows, chain, strict=True):
                    written = await connection.fetchval(
                        "INSERT INTO wallet_operations (wallet_id, operation, amount, "
                        "balance_after, transfer_id, counterparty_wallet_id, reverses_id, "
                        "hold_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                        wallets[row.wallet],
                        row.operation,
                        row.amount,
                        balance_after,
                        transfers.get(row.transfer or ""),
                        wallets.get(row.counterparty or ""),
                        ids[row.reverses] if row.reverses else None,
                        hold_ids.get(row.hold or ""),
                    )
                    if row.label:
                        ids[row.label] = written
        finally:
            await connection.close()

    asyncio.run(write())
    return (
        {name: str(id_) for name, id_ in wallets.items()},
        {name: str(id_) for name, id_ in transfers.items()},
    )


def _remaining(spec: HoldSpec) -> int:
    return spec.amount - spec.captured if spec.remaining is None else spec.remaining


@pytest.fixture(scope="module")
def ledger_database(make_database: Callable[[], TestDatabase]) -> TestDatabase:
    """A database of this module's own for hand-written ledgers, without the two CHECK
    constraints that would refuse some of them (as a faulty migration or a hand-made
    repair might leave it): a balance_after below zero, a leg naming its own wallet."""
    database = migrated(make_database())
    for constraint in ("balance_after_not_negative", "counterparty_is_another"):
        database.fetch(
            f"ALTER TABLE wallet_operations DROP CONSTRAINT ck_wallet_operations_{constraint}"
        )
    return database


def test_a_hand_written_ledger_that_keeps_every_rule_is_consistent(
    ledger_database: TestDatabase,
) -> None:
    """The writer below the cases: what it writes is consistent unless a case breaks it
    (transfers and reversals of each kind, in full and in part)."""
    write_ledger(
        ledger_database,
        [
            deposit("A", 1000),
            leg("TRANSFER_OUT", "A", "B", 600, "t1", label="out"),
            leg("TRANSFER_IN", "B", "A", 600, "t1", label="in"),
            leg("REVERSAL_OUT", "B", "A", 200, "t1", reverses="in"),
            leg("REVERSAL_IN", "A", "B", 200, "t1", reverses="out"),
            leg("TRANSFER_OUT", "B", "A", 100, "t2", label="out2"),
            leg("TRANSFER_IN", "A", "B", 100, "t2", label="in2"),
            leg("REVERSAL_OUT", "A", "B", 100, "t2", reverses="in2"),
            leg("REVERSAL_IN", "B", "A", 100, "t2", reverses="out2"),
            Row("B", "WITHDRAW", 150, label="withdrawal"),
            Row("B", "REVERSAL_IN", 50, reverses="withdrawal"),
            deposit("C", 70, label="deposit"),
            Row("C", "REVERSAL_OUT", 70, reverses="deposit"),
        ],
    )
    clean = verify(ledger_database)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert report["consistent"] is True
    assert {rule: report[rule] for rule in RULES} == dict.fromkeys(RULES, 0)


def test_a_hand_written_ledger_of_holds_that_keeps_every_rule_is_consistent(
    ledger_database: TestDatabase,
) -> None:
    """Holds of each fate: active, captured in part into a payee with the rest released,
    captured in part twice and still active, voided, expired and released."""
    write_ledger(
        ledger_database,
        [
            deposit("A", 1000),
            Row("A", "HOLD", 100, hold="h1"),
            Row("A", "HOLD", 200, hold="h2"),
            Row("A", "CAPTURE", 150, counterparty="B", hold="h2"),
            Row("B", "CAPTURE_IN", 150, counterparty="A", hold="h2"),
            Row("A", "RELEASE", 50, hold="h2"),
            Row("A", "HOLD", 90, hold="h3"),
            Row("A", "CAPTURE", 20, hold="h3"),
            Row("A", "CAPTURE", 30, hold="h3"),
            Row("A", "HOLD", 40, hold="h4"),
            Row("A", "RELEASE", 40, hold="h4"),
            Row("A", "HOLD", 10, hold="h5"),
            Row("A", "RELEASE", 10, hold="h5"),
        ],
        holds=(
            HoldSpec("h1", "A", 100),
            HoldSpec("h2", "A", 200, captured=150, remaining=0, status="captured"),
            HoldSpec("h3", "A", 90, captured=50),
            HoldSpec("h4", "A", 40, remaining=0, status="voided"),
            HoldSpec("h5", "A", 10, remaining=0, status="expired"),
        ),
    )
    clean = verify(ledger_database)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert {rule: report[rule] for rule in RULES} == dict.fromkeys(RULES, 0)


@dataclass(frozen=True)
class Broken:
    """A ledger breaking one rule: what the verifier must report, and nothing else."""

    rule: str
    count: int
    rows: list[Row]
    wallets: tuple[str, ...] = ()
    transfers: tuple[str, ...] = ()
    balances: dict[str, int] | None = None  # None: each wallet's ledger's sum
    holds: tuple[HoldSpec, ...] = ()
    held: dict[str, int] | None = None  # None: each wallet's active holds' sum
    currencies: dict[str, tuple[str, int]] | None = None  # None: USD (2 digits) each


ONE_RULE_BROKEN = [
    pytest.param(
        # Two transfers between a USD and a JPY wallet, of one amount each way: every
        # balance adds up and each currency's money is conserved, but money crossed.
        Broken(
            "currency_crossings",
            4,
            rows=[
                deposit("A", 100),
                deposit("B", 100),
                leg("TRANSFER_OUT", "A", "B", 10, "t1"),
                leg("TRANSFER_IN", "B", "A", 10, "t1"),
                leg("TRANSFER_OUT", "B", "A", 10, "t2"),
                leg("TRANSFER_IN", "A", "B", 10, "t2"),
            ],
            wallets=("A", "B"),
            currencies={"B": ("JPY", 0)},
        ),
        id="transfers-across-currencies",
    ),
    pytest.param(
        # What the wallet says it holds is not the sum of its active holds.
        Broken(
            "held_mismatches",
            1,
            rows=[deposit("A", 20), Row("A", "HOLD", 10, hold="h")],
            wallets=("A",),
            holds=(HoldSpec("h", "A", 10),),
            held={"A": 9},
        ),
        id="held-not-its-holds",
    ),
    pytest.param(
        # The ledger captured 4 of the hold, the hold says 3 (and still holds 6).
        Broken(
            "bad_holds",
            1,
            rows=[
                deposit("A", 20),
                Row("A", "HOLD", 10, hold="h"),
                Row("A", "CAPTURE", 4, hold="h"),
            ],
            holds=(HoldSpec("h", "A", 10, captured=3, remaining=6),),
        ),
        id="hold-not-its-ledger",
    ),
    pytest.param(
        # A voided hold whose release the ledger lacks: closed twice, or never released.
        Broken(
            "bad_holds",
            1,
            rows=[deposit("A", 20), Row("A", "HOLD", 10, hold="h")],
            holds=(HoldSpec("h", "A", 10, remaining=0, status="voided"),),
        ),
        id="closed-hold-not-released",
    ),
    pytest.param(
        # A hold of 10 on a wallet of 5: the ledger adds up, what is available does not.
        Broken(
            "negative_available",
            1,
            rows=[deposit("A", 5), Row("A", "HOLD", 10, hold="h")],
            wallets=("A",),
            holds=(HoldSpec("h", "A", 10),),
        ),
        id="more-held-than-the-balance",
    ),
    pytest.param(
        # A balance that is not its ledger's sum: one a cent short, one (without a ledger)
        # a cent over, so that no money is made and only the balances disagree.
        Broken(
            "balance_mismatches",
            2,
            rows=[deposit("A", 100)],
            wallets=("A", "C"),
            balances={"A": 99, "C": 1},
        ),
        id="balances-not-their-ledgers",
    ),
    pytest.param(
        # The first row's balance_after one too high: the chain breaks there and at the
        # next row; the balance is still the ledger's sum.
        Broken(
            "chain_breaks",
            2,
            rows=[Row("A", "DEPOSIT", 5, balance_after=6), deposit("A", 5)],
            wallets=("A",),
        ),
        id="chain-of-balances-broken",
    ),
    pytest.param(
        # Below zero on the way, at 100 at the end: balance, chain and sums all hold.
        Broken(
            "negative_balances",
            1,
            rows=[Row("A", "WITHDRAW", 500), deposit("A", 600)],
            wallets=("A",),
        ),
        id="negative-on-the-way",
    ),
    pytest.param(
        # One leg out and one in, of one amount: 10 out, 7 in. Partial reversals of 5
        # (to A) and 2 (from B) bring the transfer's net back to zero; each reversal is
        # at most its leg, on its wallet, the other way; every wallet adds up.
        Broken(
            "unmatched_transfers",
            1,
            rows=[
                deposit("A", 10),
                leg("TRANSFER_OUT", "A", "B", 10, "t", label="out"),
                leg("TRANSFER_IN", "B", "A", 7, "t", label="in"),
                leg("REVERSAL_IN", "A", "B", 5, "t", reverses="out"),
                leg("REVERSAL_OUT", "B", "A", 2, "t", reverses="in"),
            ],
            transfers=("t",),
        ),
        id="legs-of-two-amounts",
    ),
    pytest.param(
        # Two legs out of 5 and one in of 5, the second out reversed in full: net zero.
        Broken(
            "unmatched_transfers",
            1,
            rows=[
                deposit("A", 10),
                leg("TRANSFER_OUT", "A", "B", 5, "t"),
                leg("TRANSFER_OUT", "A", "B", 5, "t", label="second"),
                leg("TRANSFER_IN", "B", "A", 5, "t"),
                leg("REVERSAL_IN", "A", "B", 5, "t", reverses="second"),
            ],
            transfers=("t",),
        ),
        id="two-legs-out",
    ),
    pytest.param(
        # One leg out of 5 and two in of 5, the second in reversed in full: net zero.
        Broken(
            "unmatched_transfers",
            1,
            rows=[
                deposit("A", 5),
                leg("TRANSFER_OUT", "A", "B", 5, "t"),
                leg("TRANSFER_IN", "B", "A", 5, "t"),
                leg("TRANSFER_IN", "B", "A", 5, "t", label="second"),
                leg("REVERSAL_OUT", "B", "A", 5, "t", reverses="second"),
            ],
            transfers=("t",),
        ),
        id="two-legs-in",
    ),
    pytest.param(
        # The leg out names a third wallet, not the one the money went to.
        Broken(
            "unmatched_transfers",
            1,
            rows=[
                deposit("A", 5),
                leg("TRANSFER_OUT", "A", "C", 5, "t"),
                leg("TRANSFER_IN", "B", "A", 5, "t"),
            ],
            transfers=("t",),
        ),
        id="leg-names-a-third-wallet",
    ),
    pytest.param(
        # Each leg names its own wallet: the transfer's wallets and the wallets named
        # are the same two, but neither leg names the other's.
        Broken(
            "unmatched_transfers",
            1,
            rows=[
                deposit("A", 5),
                leg("TRANSFER_OUT", "A", "A", 5, "t"),
                leg("TRANSFER_IN", "B", "B", 5, "t"),
            ],
            transfers=("t",),
        ),
        id="legs-name-their-own-wallets",
    ),
    pytest.param(
        # Matching legs of 10, reversals that do not net to zero: t1's gives back 5 and
        # takes 3 (2 made), t2's gives back 3 and takes 5 (2 lost). Money is conserved
        # over the ledger, every reversal is within its leg: only the net of each
        # transfer and its reversal tells.
        Broken(
            "unmatched_transfers",
            2,
            rows=[
                deposit("A", 10),
                leg("TRANSFER_OUT", "A", "B", 10, "t1", label="out1"),
                leg("TRANSFER_IN", "B", "A", 10, "t1", label="in1"),
                leg("REVERSAL_IN", "A", "B", 5, "t1", reverses="out1"),
                leg("REVERSAL_OUT", "B", "A", 3, "t1", reverses="in1"),
                deposit("C", 10),
                leg("TRANSFER_OUT", "C", "D", 10, "t2", label="out2"),
                leg("TRANSFER_IN", "D", "C", 10, "t2", label="in2"),
                leg("REVERSAL_IN", "C", "D", 3, "t2", reverses="out2"),
                leg("REVERSAL_OUT", "D", "C", 5, "t2", reverses="in2"),
            ],
            transfers=("t1", "t2"),
        ),
        id="reversals-not-netting-to-zero",
    ),
    pytest.param(
        # A deposit of 5 reversed by 8.
        Broken(
            "bad_reversals",
            1,
            rows=[
                deposit("A", 10),
                deposit("A", 5, label="d"),
                Row("A", "REVERSAL_OUT", 8, reverses="d"),
            ],
        ),
        id="reversal-larger-than-its-entry",
    ),
    pytest.param(
        # A's deposit "reversed" on B.
        Broken(
            "bad_reversals",
            1,
            rows=[
                deposit("A", 10, label="d"),
                deposit("B", 10),
                Row("B", "REVERSAL_OUT", 5, reverses="d"),
            ],
        ),
        id="reversal-on-another-wallet",
    ),
    pytest.param(
        # A deposit "reversed" by a credit.
        Broken(
            "bad_reversals",
            1,
            rows=[deposit("A", 10, label="d"), Row("A", "REVERSAL_IN", 5, reverses="d")],
        ),
        id="reversal-in-the-same-direction",
    ),
]


@pytest.mark.parametrize("case", ONE_RULE_BROKEN)
def test_the_verifier_catches_each_rule_broken_alone(
    ledger_database: TestDatabase, case: Broken
) -> None:
    """Every other rule holds, so only the case's rule can report the ledger: its count,
    and the wallets or transfers it names, are the whole report."""
    wallet_ids, transfer_ids = write_ledger(
        ledger_database, case.rows, case.balances, case.holds, case.held, currencies=case.currencies
    )
    broken = verify(ledger_database)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    report = json.loads(broken.stdout)
    assert report["consistent"] is False
    assert {r: report[r] for r in RULES} == {**dict.fromkeys(RULES, 0), case.rule: case.count}
    assert report["wallets_to_inspect"] == sorted(wallet_ids[name] for name in case.wallets)
    assert report["transfers_to_inspect"] == sorted(transfer_ids[name] for name in case.transfers)


def test_the_summary_names_at_most_20_wallets_and_20_transfers(
    make_database: Callable[[], TestDatabase],
) -> None:
    """docs/OPERATIONS.md, "Checking the ledger": the JSON summary names up to 20 wallets
    and up to 20 transfers to inspect, however many are wrong; the counts are whole. On
    a database of its own: 25 wallets whose balance their ledger does not give, and 25
    transfers without their leg in."""
    database = migrated(make_database())
    rows: list[Row] = []
    balances: dict[str, int] = {}
    for index in range(25):
        rows.append(deposit(f"mismatched-{index}", 10))
        balances[f"mismatched-{index}"] = 11
        rows.append(deposit(f"payer-{index}", 10))
        rows.append(leg("TRANSFER_OUT", f"payer-{index}", f"payee-{index}", 4, f"half-{index}"))
    wallets, transfers = write_ledger(database, rows, balances)
    broken = verify(database)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    report = json.loads(broken.stdout)
    assert report["balance_mismatches"] == 25
    assert report["unmatched_transfers"] == 25
    mismatched = {wallets[f"mismatched-{index}"] for index in range(25)}
    assert len(set(report["wallets_to_inspect"])) == len(report["wallets_to_inspect"]) == 20
    assert set(report["wallets_to_inspect"]) <= mismatched
    assert len(set(report["transfers_to_inspect"])) == len(report["transfers_to_inspect"]) == 20
    assert set(report["transfers_to_inspect"]) <= set(transfers.values())
