"""A refused password is one line naming the cause and what to do, exit status 2 (README
§More about make run; OPERATIONS §The command line), for every command that reaches the
database. On a PostgreSQL of the test's own whose pg_hba.conf asks for a password
(SCRAM): the suite's server may trust every local connection, and then refuses none."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support import ROOT
from tests.test_command_line import assert_one_line, run
from wallet_api.devtools.postgres import PostgresAddress, RestartableEmbeddedPostgres

pytestmark = pytest.mark.own_servers

USER = "teller"
DATABASE = "teller_books"


async def _ask_for_passwords(server: RestartableEmbeddedPostgres, password: str) -> None:
    """A role with `password`, its database, and pg_hba.conf asking every role but the
    superuser for its password; returns once a wrong password is refused."""
    admin = await asyncpg.connect(server.address.url("postgres"), timeout=10)
    try:
        await admin.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{password}'")
        await admin.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        (server.data_dir / "pg_hba.conf").write_text(
            "local all postgres trust\nlocal all all scram-sha-256\n"
        )
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()
    wrong = PostgresAddress(server.address.host, server.address.port, USER, "not-it")
    deadline = time.monotonic() + 30  # polled: the server rereads pg_hba.conf on a signal
    while True:
        try:
            connection = await asyncpg.connect(wrong.url(DATABASE), timeout=10)
        except asyncpg.InvalidPasswordError:
            return
        await connection.close()
        assert time.monotonic() < deadline, "pg_hba.conf was never reread"
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def password_server() -> Iterator[tuple[PostgresAddress, str]]:
    """The server, and the password of USER on it."""
    parent = Path(tempfile.mkdtemp(prefix="wallet-api-test-password-"))
    password = f"right-{uuid.uuid4().hex}"
    try:
        with RestartableEmbeddedPostgres(parent / "pgdata") as server:
            asyncio.run(_ask_for_passwords(server, password))
            yield server.address, password
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize(
    "command",
    [
        ("wallet_api.cli", "verify"),
        ("wallet_api.cli", "migrate"),
        ("wallet_api.cli", "keys", "list"),
        ("alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"),
    ],
)
def test_a_refused_password_is_one_line_naming_the_cause_and_the_fix(
    command: tuple[str, ...], password_server: tuple[PostgresAddress, str], tmp_path: Path
) -> None:
    address, password = password_server
    wrong = f"wrong-{uuid.uuid4().hex}"
    settings = {**address.environment(DATABASE), "DB_USER": USER, "DB_PASSWORD": wrong}
    # `migrate` reads alembic.ini from its working directory, as `make migrate` runs it.
    cwd = ROOT if command[-1] == "migrate" else tmp_path
    refused = run(*command, cwd=cwd, **settings)
    assert_one_line(
        refused,
        f"refused user '{USER}'",
        f'password authentication failed for user "{USER}"',
        "check DB_USER and DB_PASSWORD",
    )
    assert wrong not in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    # The right password gets through: what stops the command then is something else.
    if command[1] == "verify":
        accepted = run(*command, cwd=cwd, **{**settings, "DB_PASSWORD": password})
        assert_one_line(accepted, "has no wallet tables", "make migrate")
