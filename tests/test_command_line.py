"""The command line's expected failures: which database the tools use, and what they say
when it is not there (one line naming the cause and the fix, exit status 2), run as an
operator runs them: `wallet-api`, `alembic` and Gunicorn as processes."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, TestDatabase, plain_environment
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess, free_port


def run(*command: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=cwd,
        env={**plain_environment(), **settings},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 2, nothing on stdout, and one line on stderr holding every fragment."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wallet-api: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory with no `.data` and no `.env`: no `make run` has run here."""
    return tmp_path


@pytest.mark.parametrize(
    "command",
    [
        ("wallet_api.cli", "verify"),
        ("wallet_api.cli", "migrate"),
        ("wallet_api.cli", "keys", "list"),
        ("alembic", "-c", str(ROOT / "alembic.ini"), "current"),
    ],
)
def test_without_db_host_the_tools_want_the_embedded_server_of_make_run(
    command: tuple[str, ...], elsewhere: Path
) -> None:
    """Not a server that happens to listen on 127.0.0.1:5432 (this machine may run one)."""
    result = run(*command, cwd=elsewhere)
    assert_one_line(result, "DB_HOST is not set", "start it with `make run`, or set DB_HOST")


def test_the_tools_find_the_embedded_server_that_make_run_started(
    database: TestDatabase, tmp_path: Path
) -> None:
    """With DB_HOST unset, `verify` reads the database of the server running on
    `.data/postgres` in its working directory. Here that folder is a link to a running
    embedded server's data, when the suite runs on one."""
    if not database.address.host.startswith("/"):
        pytest.skip("the suite runs on TEST_DATABASE_URL's server, not an embedded one")
    data = Path(database.address.host)
    (tmp_path / ".data").mkdir()
    (tmp_path / ".data" / "postgres").symlink_to(data)
    result = run("wallet_api.cli", "verify", cwd=tmp_path, DB_NAME=database.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"consistent": true' in result.stdout


def test_a_missing_database_is_one_line_for_verify_and_alembic(
    database: TestDatabase, elsewhere: Path
) -> None:
    settings = {**database.environment(), "DB_NAME": "no_such_database"}
    for command in (
        ("wallet_api.cli", "verify"),
        ("alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"),
    ):
        assert_one_line(
            run(*command, cwd=elsewhere, **settings),
            "database 'no_such_database' does not exist",
            "set DB_NAME",
        )


def test_an_unreachable_server_is_one_line_and_its_traceback_only_at_debug(
    elsewhere: Path,
) -> None:
    settings = {"DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()), "DB_CONNECT_TIMEOUT": "2"}
    assert_one_line(
        run("wallet_api.cli", "verify", cwd=elsewhere, **settings),
        f"cannot connect to PostgreSQL at 127.0.0.1:{settings['DB_PORT']}",
        "Check DB_HOST and DB_PORT",
    )
    debug = run("wallet_api.cli", "verify", cwd=elsewhere, LOG_LEVEL="debug", **settings)
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr


def test_verify_on_a_database_without_the_schema_could_not_check(
    make_database: Callable[[], TestDatabase], elsewhere: Path
) -> None:
    empty = make_database()  # created, never migrated
    assert_one_line(
        run("wallet_api.cli", "verify", cwd=elsewhere, **empty.environment()),
        "has no wallet tables",
        "make migrate",
    )


def test_a_bad_setting_is_named_with_exit_status_2(elsewhere: Path) -> None:
    result = run("wallet_api.cli", "verify", cwd=elsewhere, WORKERS_COUNT="many")
    assert result.returncode == 2
    assert "WORKERS_COUNT='many'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_serve_on_a_port_in_use_is_one_line_before_anything_starts(
    database: TestDatabase, taken_port: int
) -> None:
    result = run(
        "wallet_api.cli",
        "serve",
        cwd=ROOT,
        HOST="127.0.0.1",
        PORT=str(taken_port),
        **database.environment(),
    )
    assert_one_line(result, f"cannot listen on 127.0.0.1:{taken_port}", "set PORT")


def test_serve_with_a_missing_database_is_one_line(database: TestDatabase) -> None:
    settings = {**database.environment(), "DB_NAME": "no_such_database"}
    result = run(
        "wallet_api.cli", "serve", cwd=ROOT, HOST="127.0.0.1", PORT=str(free_port()), **settings
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("wallet-api: database 'no_such_database' does not exist on "), last
    assert last.endswith("or set DB_NAME"), last


@pytest.fixture(scope="module")
def unready_service(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service(
        wait_path="/health/live",
        WORKERS_COUNT="1",
        DB_HOST="127.0.0.1",
        DB_PORT=str(free_port()),  # nothing listens there
        DB_CONNECT_TIMEOUT="1",
    )


def test_readiness_logs_its_changes_not_every_probe(unready_service: ServiceProcess) -> None:
    for _ in range(5):
        response = httpx.get(unready_service.base_url + "/health/ready", timeout=10)
        assert_problem(response, 503, "database_unavailable")
    log = unready_service.log_text()
    assert log.count("not ready: The database is unavailable.") == 1, log
    assert "Traceback" not in log
