"""The schema is Alembic's alone: up, down and up again, no drift, constraints that hold."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

# The models register their tables on the metadata.
import wallet_api.auth.models
import wallet_api.events.models
import wallet_api.holds.models
import wallet_api.monitors.models
import wallet_api.wallets.models
import wallet_api.webhooks.models  # noqa: F401
from tests.support import ROOT, TestDatabase, alembic, migrated
from wallet_api.auth import repository
from wallet_api.auth.keys import Scope
from wallet_api.core.database import metadata
from wallet_api.devtools.server import run_alembic

SCHEMA_TABLES = [
    "alembic_version",
    "api_keys",
    "balance_monitors",
    "events",
    "holds",
    "idempotency_keys",
    "wallet_operations",
    "wallets",
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
    "webhook_feed",
]
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


#: The schema as PostgreSQL's catalog describes it: what a migration must leave exactly.
SCHEMA_SQL = {
    "columns": """
        SELECT table_name, column_name, data_type, character_maximum_length, is_nullable,
               column_default, is_identity, col_description(
                   (table_schema || '.' || table_name)::regclass, ordinal_position) AS comment
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> 'alembic_version'
        ORDER BY table_name, column_name
    """,
    "constraints": """
        SELECT conrelid::regclass::text AS table_name, conname, pg_get_constraintdef(oid) AS def
        FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text <> 'alembic_version'
        ORDER BY 1, 2
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'alembic_version'
        ORDER BY 1, 2
    """,
}


def schema(database: TestDatabase) -> dict[str, list[tuple[object, ...]]]:
    return {
        part: [tuple(row.values()) for row in database.fetch(sql)]
        for part, sql in SCHEMA_SQL.items()
    }


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    history = alembic_history()
    return [line.split(" -> ")[1].split(" ")[0].rstrip(",") for line in reversed(history)]


def alembic_history() -> list[str]:

    result = subprocess.run(
        [str(Path(sys.executable).with_name("alembic")), "history"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in result.stdout.splitlines() if " -> " in line]


def test_each_migration_downgrades_exactly_to_the_schema_before_it(
    empty_database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up one step, down one step, up again, for every revision: the step down restores
    the catalog exactly as it was (no column, constraint or index left behind), and the
    step up gives the same schema each time."""
    steps = revisions()
    assert len(steps) >= 2
    # Alembic's commands in this process (three a revision): what the command line runs,
    # without a second's interpreter start each time. The command line itself is
    # test_upgrade_downgrade_upgrade's.
    for name, value in empty_database.environment().items():
        monkeypatch.setenv(name, value)
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False  # the test's logging stays pytest's
    before = schema(empty_database)
    for revision in steps:
        command.upgrade(config, revision)
        after = schema(empty_database)
        assert after != before, f"{revision} changed nothing"
        command.downgrade(config, "-1")
        assert schema(empty_database) == before, f"{revision} did not downgrade exactly"
        command.upgrade(config, revision)
        assert schema(empty_database) == after
        before = after


def test_migrations_build_exactly_the_schema_the_models_describe(
    database: TestDatabase, make_database: Callable[[], TestDatabase]
) -> None:
    """What `alembic check` does not compare (CHECK constraints, their expressions,
    comments, identity columns) compared through the catalog: the models' own schema,
    built in a scratch database, against the migrated one."""
    from_models = make_database()

    async def create_all() -> None:
        engine = create_async_engine(
            from_models.url().replace("postgresql://", "postgresql+asyncpg://", 1)
        )
        try:
            async with engine.begin() as connection:
                await connection.run_sync(metadata.create_all)
        finally:
            await engine.dispose()

    asyncio.run(create_all())
    assert schema(database) == schema(from_models)


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
    database.fetch(
        "INSERT INTO wallets (id, currency, currency_exponent) VALUES ($1, 'USD', 2)", wallet_id
    )
    with pytest.raises(asyncpg.CheckViolationError, match="balance_not_negative"):
        database.fetch("UPDATE wallets SET balance = -1 WHERE id = $1", wallet_id)
    with pytest.raises(asyncpg.CheckViolationError, match="balance_within_limit"):
        database.fetch("UPDATE wallets SET balance = 10^15 WHERE id = $1", wallet_id)


def test_the_transfers_migration_upgrades_a_populated_ledger_in_place(
    empty_database: TestDatabase,
) -> None:
    """A database of the schema before transfers, with wallets, ledger rows and kept
    responses: upgraded, every row is still there as it was, the ledger verifies, and the
    new rows' constraints hold. Down again is refused while transfers exist (the old schema
    cannot hold them), and works once they are gone."""
    database = empty_database
    assert alembic(database, "upgrade", "d0c19789eea3").returncode == 0
    wallets = [uuid.uuid4() for _ in range(3)]
    for wallet in wallets:
        database.fetch("INSERT INTO wallets (id, balance) VALUES ($1, 700)", wallet)
        for operation, amount, balance_after, key in [
            ("DEPOSIT", 1000, 1000, None),
            ("WITHDRAW", 300, 700, f"key-{wallet}"),
        ]:
            database.fetch(
                "INSERT INTO wallet_operations "
                "(wallet_id, operation, amount, balance_after, idempotency_key) "
                "VALUES ($1, $2, $3, $4, $5)",
                wallet,
                operation,
                amount,
                balance_after,
                key,
            )
        database.fetch(
            "INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body) "
            'VALUES ($1, \'f\', 200, \'{"status":"success","balance":7}\')',
            f"key-{wallet}",
        )
    rows_sql = "SELECT * FROM wallet_operations ORDER BY id"
    before = [dict(row) for row in database.fetch(rows_sql)]
    keys_before = database.fetch("SELECT * FROM idempotency_keys ORDER BY key")

    upgrade = alembic(database, "upgrade", "head")
    assert upgrade.returncode == 0, upgrade.stderr
    after = [dict(row) for row in database.fetch(rows_sql)]
    new_columns = {
        "transfer_id",
        "counterparty_wallet_id",
        "reverses_id",
        "description",
        "api_key_id",
        "hold_id",
        "seq",
        "metadata",
    }
    assert [{k: v for k, v in row.items() if k not in new_columns} for row in after] == before
    assert all(row[column] is None for row in after for column in new_columns)
    assert database.fetch("SELECT * FROM idempotency_keys ORDER BY key") == keys_before
    assert_verifies(database)
    # Each wallet's numbering goes on from the rows it had (two each): the next is its 3rd.
    assert {row["seq"] for row in database.fetch("SELECT seq FROM wallets")} == {2}
    # Built and validated while the table stayed writable, and usable.
    (indexes,) = database.fetch(
        "SELECT count(*) FILTER (WHERE i.indisvalid) AS valid, count(*) AS built "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname IN "
        "('ix_wallet_operations_transfer_id', 'uq_wallet_operations_reverses_id')"
    )
    assert (indexes["valid"], indexes["built"]) == (2, 2)
    unvalidated = database.fetch(
        "SELECT conname FROM pg_constraint WHERE NOT convalidated "
        "AND conrelid = 'wallet_operations'::regclass"
    )
    assert unvalidated == []

    # A transfer's legs as the service writes them, and rows the constraints refuse.
    source, destination = wallets[0], wallets[1]
    transfer_id = uuid.uuid4()
    database.fetch(
        "INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after, "
        "transfer_id, counterparty_wallet_id) VALUES "
        "($1, 'TRANSFER_OUT', 100, 600, $3, $2), ($2, 'TRANSFER_IN', 100, 800, $3, $1)",
        source,
        destination,
        transfer_id,
    )
    for bad in [
        "($1, 'TRANSFER_OUT', 1, 1, NULL, NULL, NULL)",  # a leg without its transfer
        "($1, 'TRANSFER_OUT', 1, 1, gen_random_uuid(), $1, NULL)",  # to itself
        "($1, 'REVERSAL_IN', 1, 1, NULL, NULL, NULL)",  # a reversal of nothing
        "($1, 'DEPOSIT', 1, 1, gen_random_uuid(), NULL, NULL)",  # half a transfer link
        "($1, 'REFUND', 1, 1, NULL, NULL, NULL)",  # an unknown kind
    ]:
        with pytest.raises(asyncpg.CheckViolationError):
            database.fetch(
                "INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after, "
                f"transfer_id, counterparty_wallet_id, reverses_id) VALUES {bad}",
                source,
            )

    refused = alembic(database, "downgrade", "d0c19789eea3")
    assert refused.returncode != 0
    assert "transfers or reversals" in refused.stderr
    database.fetch("DELETE FROM wallet_operations WHERE transfer_id IS NOT NULL")
    down = alembic(database, "downgrade", "d0c19789eea3")
    assert down.returncode == 0, down.stderr
    assert [dict(row) for row in database.fetch(rows_sql)] == before


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """alembic.ini and migrations/ in a folder of their own: a revision the test makes
    Alembic write lands there, never in the repository."""

    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    shutil.copytree(
        ROOT / "migrations", tmp_path / "migrations", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def revision_files(project: Path) -> list[str]:
    return sorted(path.name for path in (project / "migrations" / "versions").glob("*.py"))


def test_autogenerate_with_nothing_to_change_writes_no_revision_and_says_so(
    database: TestDatabase, project_copy: Path
) -> None:
    before = revision_files(project_copy)
    result = run_alembic(
        project_copy, database.environment(), "revision", "--autogenerate", "-m", "nothing"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert revision_files(project_copy) == before
    assert "No changes in the schema: no revision written" in result.stdout + result.stderr


def test_autogenerate_with_a_change_writes_its_revision(
    make_database: Callable[[], TestDatabase], project_copy: Path
) -> None:
    """The hook that drops an empty revision keeps one with something in it: a table in
    the database that no model describes is a change (dropping it). The revision comes
    out formatted and lint-clean (docs/OPERATIONS.md, "Migrations"): `ruff check` and
    `ruff format --check` pass on it with the repository's configuration, which the copy
    carries as the repository does."""

    shutil.copy(ROOT / "pyproject.toml", project_copy / "pyproject.toml")
    database = migrated(make_database())
    database.fetch("CREATE TABLE stray (id integer)")
    before = revision_files(project_copy)
    result = run_alembic(
        project_copy, database.environment(), "revision", "--autogenerate", "-m", "stray"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (written,) = set(revision_files(project_copy)) - set(before)
    path = project_copy / "migrations" / "versions" / written
    text = path.read_text()
    assert "op.drop_table('stray')" in text or 'op.drop_table("stray")' in text
    for check in (["check"], ["format", "--check"]):
        ruff = subprocess.run(
            [sys.executable, "-m", "ruff", *check, str(path)],
            cwd=project_copy,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert ruff.returncode == 0, f"ruff {' '.join(check)}:\n{ruff.stdout}{ruff.stderr}\n{text}"


def assert_verifies(database: TestDatabase) -> None:
    from tests.test_verifier import verify

    report = verify(database)
    assert report.returncode == 0, report.stdout + report.stderr


def test_the_deposit_scope_keeps_what_existing_keys_could_do(empty_database: TestDatabase) -> None:
    """Keys that could write before the `deposit` scope existed keep creating money (no
    client is cut off by the upgrade); a read-only key gets nothing; the downgrade takes
    the scope away again."""
    database = empty_database
    assert alembic(database, "upgrade", "c4e8b1f2a6d3").returncode == 0
    insert = "INSERT INTO api_keys (id, owner, scopes, secret_sha256) VALUES ($1, 'o', $2, $3)"
    for key_id, scopes in (("0000000000aa", ["read", "write"]), ("0000000000bb", ["read"])):
        database.fetch(insert, key_id, scopes, "0" * 64)
    assert alembic(database, "upgrade", "7d2b9e4c1a60").returncode == 0
    rows = database.fetch("SELECT id, scopes FROM api_keys ORDER BY id")
    assert [sorted(row["scopes"]) for row in rows] == [["deposit", "read", "write"], ["read"]]
    assert alembic(database, "downgrade", "c4e8b1f2a6d3").returncode == 0
    rows = database.fetch("SELECT id, scopes FROM api_keys ORDER BY id")
    assert [sorted(row["scopes"]) for row in rows] == [["read", "write"], ["read"]]


def test_a_scope_of_a_later_version_grants_nothing_and_breaks_nothing(
    empty_database: TestDatabase,
) -> None:
    """A rolling upgrade: a newer version's migration may add a scope this one does not
    know; its keys still load (no 500 for every keyed request), without that scope."""
    database = empty_database
    assert alembic(database, "upgrade", "head").returncode == 0
    database.fetch("ALTER TABLE api_keys DROP CONSTRAINT ck_api_keys_scopes_known")
    database.fetch(
        "INSERT INTO api_keys (id, owner, scopes, secret_sha256) "
        "VALUES ('0000000000cc', 'o', ARRAY['read', 'write', 'refund'], $1)",
        "0" * 64,
    )

    async def load() -> frozenset[Scope]:
        connection = await asyncpg.connect(database.url())
        try:
            (key,) = await repository.all_keys(connection)  # type: ignore[arg-type]
        finally:
            await connection.close()
        return key.scopes

    assert asyncio.run(load()) == {Scope.READ, Scope.WRITE}


def test_the_ledger_time_revision_puts_each_wallets_rows_in_time_order(
    empty_database: TestDatabase,
) -> None:
    """Rows written before revision f3c1a9e57b20 whose time precedes an earlier row of
    their wallet (a transaction that began first and took the lock second) are dated at
    that row's time; every row is kept, each wallet's latest time noted; the ledger still
    verifies. Downgrade and upgrade again change nothing more."""
    database = empty_database
    assert alembic(database, "upgrade", "d2a6f0c8e413").returncode == 0
    a, b = uuid.uuid4(), uuid.uuid4()
    database.fetch("INSERT INTO wallets (id, balance, seq) VALUES ($1, 6, 3), ($2, 1, 1)", a, b)
    insert = (
        "INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after, created_at,"
        " seq) VALUES ($1, 'DEPOSIT', $2, $3, $4::text::timestamptz, $5)"
    )
    for wallet, amount, after, at, seq in (
        (a, 1, 1, "2026-12-01 00:00:00.010+00", 1),
        (a, 2, 3, "2026-12-01 00:00:00.030+00", 2),
        (a, 3, 6, "2026-12-01 00:00:00.020+00", 3),  # began first, locked second
        (b, 1, 1, "2026-12-01 00:00:00.005+00", 1),
    ):
        database.fetch(insert, wallet, amount, after, at, seq)
    assert alembic(database, "upgrade", "f3c1a9e57b20").returncode == 0
    rows = database.fetch(
        "SELECT wallet_id, amount, to_char(created_at AT TIME ZONE 'UTC', 'SS.MS') AS at"
        " FROM wallet_operations ORDER BY id"
    )
    assert [(row["wallet_id"], row["amount"], row["at"]) for row in rows] == [
        (a, 1, "00.010"),
        (a, 2, "00.030"),
        (a, 3, "00.030"),
        (b, 1, "00.005"),
    ]
    latest = database.fetch(
        "SELECT id, to_char(last_entry_at AT TIME ZONE 'UTC', 'SS.MS') AS at FROM wallets"
    )
    assert {row["id"]: row["at"] for row in latest} == {a: "00.030", b: "00.005"}
    assert alembic(database, "upgrade", "head").returncode == 0  # the verifier's schema
    assert_verifies(database)
    assert alembic(database, "downgrade", "d2a6f0c8e413").returncode == 0
    assert alembic(database, "upgrade", "head").returncode == 0
    assert len(database.fetch("SELECT id FROM wallet_operations")) == 4


def test_the_currency_revision_gives_every_wallet_the_default_currency(
    empty_database: TestDatabase,
) -> None:
    """Wallets made before currencies get DEFAULT_CURRENCY as it is configured when the
    revision runs (their amounts are the specification's), every row kept; a wallet made
    after it must name one; the downgrade drops the column, keeping every row."""
    database = empty_database
    assert alembic(database, "upgrade", "c7a2e9f4b815").returncode == 0
    wallets = [uuid.uuid4() for _ in range(3)]
    for wallet in wallets:
        database.fetch("INSERT INTO wallets (id, balance, seq) VALUES ($1, 250, 1)", wallet)
        database.fetch(
            "INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after, seq)"
            " VALUES ($1, 'DEPOSIT', 250, 250, 1)",
            wallet,
        )
    upgraded = run_alembic(
        Path(__file__).resolve().parents[1],
        {**database.environment(), "DEFAULT_CURRENCY": "EUR"},
        "upgrade",
        "head",
    )
    assert upgraded.returncode == 0, upgraded.stderr
    rows = database.fetch(
        "SELECT id, currency, currency_exponent, balance FROM wallets ORDER BY id"
    )
    assert [tuple(row) for row in rows] == [(wallet, "EUR", 2, 250) for wallet in sorted(wallets)]
    assert "DEFAULT_CURRENCY=EUR" in upgraded.stdout + upgraded.stderr  # told, not assumed
    assert_verifies(database)
    with pytest.raises(asyncpg.NotNullViolationError):
        database.fetch("INSERT INTO wallets (id) VALUES ($1)", uuid.uuid4())
    with pytest.raises(asyncpg.CheckViolationError, match="currency_is_a_code"):
        database.fetch(
            "INSERT INTO wallets (id, currency, currency_exponent) VALUES ($1, 'usd', 2)",
            uuid.uuid4(),
        )
    assert alembic(database, "downgrade", "c7a2e9f4b815").returncode == 0
    assert len(database.fetch("SELECT id FROM wallets")) == 3
    assert len(database.fetch("SELECT id FROM wallet_operations")) == 3
