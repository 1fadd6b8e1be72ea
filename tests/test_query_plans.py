"""The write path's reads of a wallet's holds go through the index of its active holds
(`ix_holds_active_wallet_id_expires_at`): what one wallet's write costs must not grow with
the holds it closed long ago, nor with other wallets' active holds. Read from the plans
PostgreSQL chooses on a table that holds many of both. On a database of its own: its
wallets are made with balances and no ledger rows, which the session's database (checked
by `wallet-api verify`) must not hold."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import TestDatabase, migrated
from wallet_api.posting.repository import _HELD_NOW, _NOTE_HOLD_EXPIRIES

INDEX = "ix_holds_active_wallet_id_expires_at"
#: Closed holds of the wallet read, and active holds of other wallets, beside its one active
#: hold: enough that reading through them would cost the planner more than the index.
CLOSED_HOLDS = 5000
OTHER_WALLETS = 500
OTHER_ACTIVE_HOLDS = 5000


@pytest.fixture(scope="module")
def wallet(make_database: Callable[[], TestDatabase]) -> tuple[TestDatabase, uuid.UUID]:
    """A database whose wallet has one active hold, which has expired (so that the sum of
    its holds is read, not the stored figure), many closed ones, and other wallets with
    many active ones."""
    database = migrated(make_database())
    wallet = uuid.uuid4()
    others = [uuid.uuid4() for _ in range(OTHER_WALLETS)]
    database.fetch(
        "INSERT INTO wallets (id, balance, held, holds_expire_at)"
        " SELECT id, 1000000, 1, now() - interval '1 second' FROM unnest($1::uuid[]) AS t(id)",
        [wallet, *others],
    )
    database.fetch(
        "INSERT INTO holds (id, wallet_id, amount, remaining, captured, status, expires_at,"
        " closed_at) SELECT gen_random_uuid(), $1, 1, 0, 1, 'captured', now() + interval '1 day',"
        " now() FROM generate_series(1, $2)",
        wallet,
        CLOSED_HOLDS,
    )
    database.fetch(
        "INSERT INTO holds (id, wallet_id, amount, remaining, status, expires_at)"
        " SELECT gen_random_uuid(), ($1::uuid[])[1 + i % cardinality($1::uuid[])], 1, 1,"
        " 'active', now() + i * interval '1 second' FROM generate_series(1, $2) AS i",
        others,
        OTHER_ACTIVE_HOLDS,
    )
    database.fetch(
        "INSERT INTO holds (id, wallet_id, amount, remaining, status, expires_at)"
        " VALUES (gen_random_uuid(), $1, 1, 1, 'active', now() - interval '1 second')",
        wallet,
    )
    database.fetch("ANALYZE holds")
    return database, wallet


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def reads_of_holds(database: TestDatabase, sql: str, wallet: uuid.UUID) -> list[str]:
    """How the statement's plan reads the holds table: the index of each index scan of it,
    or the type of a scan that uses none (a bitmap's heap scan reads through the index its
    own child scan names)."""
    indexes = {
        row["indexname"]
        for row in database.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'holds'")
    }
    (row,) = database.fetch(f"EXPLAIN (FORMAT JSON) {sql}", [wallet])
    (document,) = json.loads(row[0])
    reads = []
    for node in nodes(document["Plan"]):
        if node.get("Index Name") in indexes:
            reads.append(node["Index Name"])
        elif node.get("Relation Name") == "holds" and node["Node Type"] != "Bitmap Heap Scan":
            reads.append(node["Node Type"])
    return reads


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(_HELD_NOW, id="what-its-holds-set-aside-now"),
        pytest.param(_NOTE_HOLD_EXPIRIES, id="its-first-expiry-after-a-change"),
    ],
)
def test_a_wallets_active_holds_are_read_through_their_index(
    wallet: tuple[TestDatabase, uuid.UUID], statement: str
) -> None:
    database, wallet_id = wallet
    reads = reads_of_holds(database, statement, wallet_id)
    assert reads, "the statement reads no holds: this test no longer tests it"
    assert set(reads) == {INDEX}, reads
