"""The command line's expected failures: which database the tools use, and what they say
when it is not there (one line naming the cause and the fix, exit status 2), run as an
operator runs them: `wallet-api`, `alembic` and Gunicorn as processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, TestDatabase, plain_environment, worker_of
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess, free_port


def command_environment(**settings: str) -> dict[str, str]:
    """A fresh shell's environment with `settings`, and this run's PYTHONPATH: the mutation
    runner (tests/mutation/run_breaks.py) points it at the broken copy's `src`, which the
    commands must run. A newcomer's shell sets none."""
    path = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    return {**plain_environment(), **path, **settings}


def run(*command: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=cwd,
        env=command_environment(**settings),
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


# --- Names the service does not know: said once, not silently ignored -------------------------


def warnings_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("wallet-api: warning:")]


def test_an_unknown_name_in_env_file_is_named_once_with_the_setting_it_resembles(
    database: TestDatabase, tmp_path: Path
) -> None:
    """Every name of `.env` the service does not know, each once although the command
    reads its settings twice; the one Compose reads from `.env` is not the service's."""
    (tmp_path / ".env").write_text(
        "WORKER_COUNT=4\nDB_PASWORD=secret\nMY_OWN_NOTE=1\nWALLET_DB_HOST=pgbouncer\n"
        "WORKERS_COUNT=2\n"
    )
    result = run("wallet_api.cli", "verify", cwd=tmp_path, **database.environment())
    assert result.returncode == 0, result.stderr
    assert warnings_of(result) == [
        "wallet-api: warning: .env sets WORKER_COUNT, which is not a setting of the service "
        "(ignored); did you mean WORKERS_COUNT?",
        "wallet-api: warning: .env sets DB_PASWORD, which is not a setting of the service "
        "(ignored); did you mean DB_PASSWORD?",
        "wallet-api: warning: .env sets MY_OWN_NOTE, which is not a setting of the service "
        "(ignored)",
    ], result.stderr
    assert "secret" not in result.stderr


def test_an_environment_variable_close_to_a_setting_is_named_other_variables_are_not(
    database: TestDatabase, elsewhere: Path
) -> None:
    result = run(
        "wallet_api.cli",
        "verify",
        cwd=elsewhere,
        **database.environment(),
        WORKER_COUNT="4",
        AUTH_KEY_REFRESH_SECONDS="1",
        # Another program's, however close to a name of the service's.
        PGHOST="db",
        PGPORT="5432",
        PORT0="31000",
        HOSTNAME="box",
        WALLET_DB_HOST="pgbouncer",
        REDIS_HOST="cache",
    )
    assert result.returncode == 0, result.stderr
    assert warnings_of(result) == [
        "wallet-api: warning: the environment variable AUTH_KEY_REFRESH_SECONDS is not a "
        "setting of the service (ignored); did you mean AUTH_KEYS_REFRESH_SECONDS?",
        "wallet-api: warning: the environment variable WORKER_COUNT is not a setting of the "
        "service (ignored); did you mean WORKERS_COUNT?",
    ], result.stderr


def test_env_example_is_a_valid_env_file_naming_every_setting_at_its_default(
    database: TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`.env.example` names every setting (set, or commented out where it has no value to
    show), nothing else, and what it sets is the default, as its first line says."""
    from wallet_api.core.config import Settings

    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert named == {name.upper() for name in Settings.model_fields}
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    from_example = Settings(_env_file=ROOT / ".env.example")
    assert from_example.model_dump() == Settings(_env_file=None).model_dump()
    # As a `.env`, a command takes it without a word.
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = run("wallet_api.cli", "verify", cwd=tmp_path, **database.environment())
    assert result.returncode == 0, result.stderr
    assert warnings_of(result) == [], result.stderr


def test_serve_names_an_unknown_variable_once_per_start_not_per_worker(
    database: TestDatabase, tmp_path: Path
) -> None:
    """`wallet-api serve` reads the settings, then Gunicorn does, then each worker: the
    warning is written once."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        serve = subprocess.Popen(
            [sys.executable, "-m", "wallet_api.cli", "serve"],
            cwd=ROOT,
            env=command_environment(
                **database.environment(),
                HOST="127.0.0.1",
                PORT=str(port),
                WORKERS_COUNT="2",
                WORKER_COUNT="4",
                DB_POOL_SIZE="2",
                DB_MAX_OVERFLOW="2",
            ),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            workers = wait_for_workers(f"http://127.0.0.1:{port}", serve, log)
            assert len(workers) == 2, log.read_text()
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
    text = log.read_text()
    assert text.count("WORKER_COUNT is not a setting") == 1, text


def wait_for_workers(base_url: str, serve: subprocess.Popen[bytes], log: Path) -> set[str]:
    """The workers seen answering, once the service is ready (new connections, until both
    of WORKERS_COUNT=2 answered, or 60 seconds)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(seen) < 2:
        assert serve.poll() is None, log.read_text()
        try:
            response = httpx.get(base_url + "/health/ready", timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 200:
            seen.add(worker_of(response))
    return seen


def test_the_container_entrypoint_names_an_unknown_variable_once_per_start(
    database: TestDatabase,
) -> None:
    """The image's entrypoint migrates (Alembic reads the settings), then execs Gunicorn,
    whose configuration reads them again: the warning is written once. Gunicorn is stood
    in for by the reading of its configuration file, which is where it reads them."""
    venv_bin = str(Path(sys.executable).parent)  # `alembic`, as the image's PATH has it
    result = subprocess.run(
        [
            "sh",
            "docker/entrypoint.sh",
            sys.executable,
            "-c",
            "import runpy; runpy.run_path('gunicorn.conf.py')",
        ],
        cwd=ROOT,
        env=command_environment(
            **database.environment(),
            PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
            WORKER_COUNT="4",
            MIGRATION_ATTEMPTS="1",
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("WORKER_COUNT is not a setting") == 1, result.stderr


# --- wallet-api keys: what it refuses, and when a revocation takes effect ----------------


def test_keys_create_refuses_an_expiry_that_is_not_to_come(database: TestDatabase) -> None:
    """A key that would be expired from the start is refused in one line, exit 2, and
    none is made."""
    owner = f"expiry-{uuid.uuid4().hex[:8]}"
    for expires in ("0d", "0h", "0m", "2020-01-01T00:00:00Z", "2020-01-01T00:00:00"):
        result = run(
            "wallet_api.cli",
            "keys",
            "create",
            "--owner",
            owner,
            "--expires",
            expires,
            cwd=ROOT,
            **database.environment(),
        )
        assert_one_line(result, f"--expires {expires!r}", "not in the future")
        assert result.stdout == ""
    listed = run("wallet_api.cli", "keys", "list", cwd=ROOT, **database.environment())
    assert listed.returncode == 0, listed.stderr
    assert owner not in listed.stdout
    made = run(
        "wallet_api.cli",
        "keys",
        "create",
        *("--owner", owner, "--expires", "1m"),
        cwd=ROOT,
        **database.environment(),
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["status"] == "active"


def test_keys_revoke_of_an_unknown_id_is_one_line_with_exit_status_2(
    database: TestDatabase,
) -> None:
    result = run(
        "wallet_api.cli", "keys", "revoke", "000000000000", cwd=ROOT, **database.environment()
    )
    assert_one_line(result, "no API key with the id '000000000000'")


def test_keys_revoke_says_when_the_revocation_takes_effect(database: TestDatabase) -> None:
    """Each worker rereads the key table every AUTH_KEYS_REFRESH_SECONDS (auth/store.py):
    the command says so, with the number it was given."""
    created = run(
        "wallet_api.cli",
        "keys",
        "create",
        *("--owner", f"revoked-{uuid.uuid4().hex[:8]}"),
        cwd=ROOT,
        **database.environment(),
    )
    assert created.returncode == 0, created.stderr
    key_id = json.loads(created.stdout)["id"]
    result = run(
        "wallet_api.cli",
        "keys",
        "revoke",
        key_id,
        cwd=ROOT,
        **database.environment(),
        AUTH_KEYS_REFRESH_SECONDS="1.5",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "revoked"
    assert result.stderr.strip().splitlines() == [
        f"wallet-api: key {key_id} revoked. Each worker of the service rereads the keys "
        "every AUTH_KEYS_REFRESH_SECONDS (1.5 s in these settings): it refuses this key "
        "within 1.5 s plus the time that read takes, while the database answers."
    ]


# --- Settings: THREADS_COUNT, secrets, where a value comes from ---------------------------


@pytest.mark.parametrize("value", ["0", "-1", "1025", "many"])
def test_a_bad_threads_count_is_one_line_with_exit_status_2(
    database: TestDatabase, elsewhere: Path, value: str
) -> None:
    """THREADS_COUNT is validated (docs/CONFIGURATION.md) as every setting is: the command
    and the server stop at once, the variable named in one line, exit status 2."""
    result = run(
        "wallet_api.cli", "verify", cwd=elsewhere, **database.environment(), THREADS_COUNT=value
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    named = [line for line in result.stderr.splitlines() if "THREADS_COUNT" in line]
    assert len(named) == 1, result.stderr
    assert named[0].startswith(f"  THREADS_COUNT={value!r}: "), result.stderr
    # The server reads its settings in gunicorn.conf.py, before anything starts.
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"],
        cwd=ROOT,
        env=command_environment(
            **database.environment(), HOST="127.0.0.1", PORT=str(free_port()), THREADS_COUNT=value
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = server.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # it started: stop it as an operator would
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
        pytest.fail(f"THREADS_COUNT={value!r} did not stop the server at start")
    assert server.returncode == 2, stderr
    assert f"THREADS_COUNT={value!r}" in stderr


def worker_processes(master: int) -> set[int]:
    """The processes whose parent is `master` (Gunicorn's workers)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == master:
            children.add(int(stat.parent.name))
    return children


def test_threads_count_changes_nothing(start_service: Callable[..., ServiceProcess]) -> None:
    """Uvicorn workers ignore Gunicorn's `threads` (docs/CONFIGURATION.md): THREADS_COUNT=4
    with WORKERS_COUNT=1 is one worker process, every request answered by it, and the
    service works as with the default."""
    service = start_service(fresh=True, WORKERS_COUNT="1", THREADS_COUNT="4")
    seen = set()
    for _ in range(20):  # a new connection each: any worker may take it
        with httpx.Client(base_url=service.base_url, timeout=30) as fresh:
            created = fresh.post("/api/v1/wallets/create_wallet")
        assert created.status_code == 201, created.text
        seen.add(worker_of(created))
    assert len(seen) == 1, seen
    assert len(worker_processes(service.process.pid)) == 1, service.log_text()
    wallet = created.json()["wallet_uuid"]
    with httpx.Client(base_url=service.base_url, timeout=30) as http:
        deposit = http.post(
            f"/api/v1/wallets/{wallet}/operation", json={"operation": "DEPOSIT", "amount": 3}
        )
        assert deposit.json() == {"status": "success", "balance": 3}


def test_db_password_and_redis_url_are_never_printed(
    database: TestDatabase, elsewhere: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    """docs/CONFIGURATION.md: DB_PASSWORD and REDIS_URL are never printed, not even when
    something is wrong: a bad setting beside them, a login the server refuses, a server
    that does not answer (with its traceback, at debug), a Redis that cannot be reached
    (the rate limits fall back and the service says so)."""
    password, redis_password = f"pw-{uuid.uuid4().hex}", f"redis-{uuid.uuid4().hex}"
    secrets = {
        **database.environment(),
        "DB_PASSWORD": password,
        "REDIS_URL": f"redis://:{redis_password}@127.0.0.1:{free_port()}/0",
    }

    def assert_unsaid(text: str) -> None:
        assert password not in text, text
        assert redis_password not in text, text

    bad = run("wallet_api.cli", "verify", cwd=elsewhere, **secrets, WORKERS_COUNT="0")
    assert bad.returncode == 2
    assert "WORKERS_COUNT='0'" in bad.stderr
    assert_unsaid(bad.stdout + bad.stderr)
    # A REDIS_URL Redis cannot use is itself the bad setting: named, its value not shown.
    typo = {**secrets, "REDIS_URL": f"redsi://:{redis_password}@127.0.0.1/0"}
    wrong = run("wallet_api.cli", "verify", cwd=elsewhere, **typo)
    assert wrong.returncode == 2
    assert "REDIS_URL: Value error, must start with redis://" in wrong.stderr
    assert_unsaid(wrong.stdout + wrong.stderr)
    for command in (
        ("wallet_api.cli", "verify"),
        ("alembic", "-c", str(ROOT / "alembic.ini"), "current"),
    ):
        stranger = {**secrets, "DB_USER": f"nobody_{uuid.uuid4().hex[:8]}"}
        refused = run(*command, cwd=elsewhere, **stranger)
        assert_one_line(refused, "refused user", "check DB_USER and DB_PASSWORD")
        assert_unsaid(refused.stdout + refused.stderr)
    unreachable = run(
        "wallet_api.cli",
        "verify",
        cwd=elsewhere,
        **{**secrets, "DB_PORT": str(free_port()), "DB_CONNECT_TIMEOUT": "2"},
        LOG_LEVEL="debug",
    )
    assert unreachable.returncode == 2
    assert "Traceback" in unreachable.stderr
    assert_unsaid(unreachable.stdout + unreachable.stderr)
    # A server named by address (whatever server the suite runs on): the one line names
    # host and port, never the credentials.
    port = free_port()
    by_address = {**secrets, "DB_HOST": "127.0.0.1", "DB_PORT": str(port)}
    nobody_there = run("wallet_api.cli", "verify", cwd=elsewhere, **by_address)
    assert_one_line(nobody_there, f"PostgreSQL at 127.0.0.1:{port}")
    assert_unsaid(nobody_there.stdout + nobody_there.stderr)
    # The server: a key's request finds Redis unreachable; the service answers from its own
    # limits and logs why, without the URL.
    service = start_service(fresh=True, AUTH_MODE="keys", LOG_LEVEL="debug", **secrets)
    created = run("wallet_api.cli", "keys", "create", "--owner", "frank", cwd=elsewhere, **secrets)
    assert created.returncode == 0, created.stderr
    assert_unsaid(created.stdout + created.stderr)
    token = json.loads(created.stdout)["key"]
    answered = httpx.post(
        service.base_url + "/api/v1/wallets/create_wallet",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answered.status_code == 201, answered.text
    deadline = time.monotonic() + 30  # polled: the warning is written after the answer
    while "Redis failed for rate limits" not in service.log_text():
        assert time.monotonic() < deadline, service.log_text()
        time.sleep(0.1)
    service.stop()  # and what the service says as it stops
    assert_unsaid(service.log_text())


def test_the_environment_wins_over_env_and_a_mistyped_name_changes_nothing(
    database: TestDatabase, tmp_path: Path
) -> None:
    """docs/CONFIGURATION.md and OPERATIONS.md: a setting comes from the environment or
    `.env`, the environment winning; a misspelt name (in either) is ignored, so the
    setting it was meant for keeps its value from elsewhere, or its default. Seen in what
    `keys revoke` says of AUTH_KEYS_REFRESH_SECONDS, and in the database `verify` uses."""
    created = run(
        "wallet_api.cli",
        "keys",
        "create",
        "--owner",
        "grace",
        cwd=tmp_path,
        **database.environment(),
    )
    assert created.returncode == 0, created.stderr
    key_id = json.loads(created.stdout)["id"]

    def refresh_in_effect(env_file: str, **environment: str) -> str:
        (tmp_path / ".env").write_text(env_file)
        revoked = run(
            "wallet_api.cli",
            "keys",
            "revoke",
            key_id,
            cwd=tmp_path,
            **database.environment(),
            **environment,
        )
        assert revoked.returncode == 0, revoked.stderr
        said = re.search(r"\(([0-9.]+) s in these settings\)", revoked.stderr)
        assert said is not None, revoked.stderr
        return said.group(1)

    assert refresh_in_effect("AUTH_KEYS_REFRESH_SECONDS=3.5\n") == "3.5"
    assert (
        refresh_in_effect("AUTH_KEYS_REFRESH_SECONDS=3.5\n", AUTH_KEYS_REFRESH_SECONDS="1.5")
        == "1.5"
    )
    assert refresh_in_effect("AUTH_KEY_REFRESH_SECONDS=9\n") == "2"
    assert (
        refresh_in_effect("AUTH_KEY_REFRESH_SECONDS=9\n", AUTH_KEYS_REFRESH_SECONDS="1.5") == "1.5"
    )
    assert (
        refresh_in_effect("AUTH_KEYS_REFRESH_SECONDS=3.5\n", AUTH_KEY_REFRESH_SECONDS="9") == "3.5"
    )
    assert refresh_in_effect("", AUTH_KEY_REFRESH_SECONDS="9") == "2"
    # A database setting: the environment's DB_NAME is the one connected to.
    (tmp_path / ".env").write_text("DB_NAME=no_such_database\n")
    checked = run("wallet_api.cli", "verify", cwd=tmp_path, **database.environment())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    without = {k: v for k, v in database.environment().items() if k != "DB_NAME"}
    missing = run("wallet_api.cli", "verify", cwd=tmp_path, **without)
    assert_one_line(missing, "database 'no_such_database' does not exist")
