"""The schema is Alembic's alone: up, down and up again, no drift, constraints that hold."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg
import pytest

from tests.support import TestDatabase, alembic

SCHEMA_TABLES = ["alembic_version", "idempotency_keys", "wallet_operations", "wallets"]
TABLES_SQL = (
    "SELECT table_name FROM information_schema.tables "
    "WHERE table_schema = 'public' ORDER BY table_name"
)


@pytest.fixture
def empty_database(make_database: Callable[[], TestDatabase]) -> TestDatabase:
    return make_database()


def tables(database: TestDatabase) -> list[str]:
    return [row["table_name"] for row in database.fetch(TABLES_SQL)]


def test_upgrade_downgrade_upgrade(empty_database: TestDatabase) -> None:
    assert alembic(empty_database, "upgrade", "head").returncode == 0
    assert tables(empty_database) == SCHEMA_TABLES

    downgrade = alembic(empty_database, "downgrade", "base")
    assert downgrade.returncode == 0, downgrade.stderr
    assert tables(empty_database) == ["alembic_version"]

    assert alembic(empty_database, "upgrade", "head").returncode == 0
    assert tables(empty_database) == SCHEMA_TABLES


def test_models_and_migrations_do_not_drift(database: TestDatabase) -> None:
    check = alembic(database, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_constraints_follow_the_naming_convention(database: TestDatabase) -> None:
    names = {
        row["conname"]
        for row in database.fetch(
            "SELECT conname FROM pg_constraint WHERE conrelid IN "
            "('wallets'::regclass, 'wallet_operations'::regclass)"
        )
    }
    assert {
        "pk_wallets",
        "ck_wallets_balance_not_negative",
        "ck_wallets_balance_within_limit",
        "pk_wallet_operations",
        "fk_wallet_operations_wallet_id_wallets",
        "ck_wallet_operations_amount_positive",
    } <= names


def test_database_refuses_a_negative_balance_whatever_writes_it(database: TestDatabase) -> None:
    wallet_id = uuid.uuid4()
    database.fetch("INSERT INTO wallets (id) VALUES ($1)", wallet_id)
    with pytest.raises(asyncpg.CheckViolationError, match="balance_not_negative"):
        database.fetch("UPDATE wallets SET balance = -1 WHERE id = $1", wallet_id)
    with pytest.raises(asyncpg.CheckViolationError, match="balance_within_limit"):
        database.fetch("UPDATE wallets SET balance = 10^15 WHERE id = $1", wallet_id)
