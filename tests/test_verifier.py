"""`wallet-api verify`: the whole ledger checked by set-based SQL, non-zero on a mismatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable

import httpx

from tests.support import ROOT, TestDatabase, migrated, operation


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
    database.fetch("INSERT INTO wallets (id, balance) VALUES ($1, -500)", wallet)
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
