"""The image's entrypoint (docker/entrypoint.sh) outside Docker: `alembic upgrade head`
retried while the database is not there yet, then the command exec'd.

The entrypoint is a POSIX shell script that runs the `alembic` on PATH from the current
directory, as the image's WORKDIR holds it; here the repository root and the venv's
`alembic` stand in for /app and /opt/venv. PostgreSQL "starting later" is a TCP port that
first refuses connections (nothing listens yet, as while the database container starts),
then answers them as PostgreSQL does while it is starting up (FATAL 57P03), then leads to
the real server: each phase is entered once the entrypoint's log says that the attempt
before failed, so the test decides by construction, not by timing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.faults import _error_response
from tests.support import ROOT, TestDatabase, plain_environment
from wallet_api.devtools.postgres import PostgresAddress
from wallet_api.devtools.server import free_port

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"

pytestmark = pytest.mark.skipif(
    not ENTRYPOINT.is_file(), reason="no docker/entrypoint.sh here (the `tests` image has none)"
)

#: What PostgreSQL answers a connection while it is starting up (before it accepts any).
STARTING_UP = _error_response("FATAL", "57P03", "the database system is starting up")
SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104
#: What the image's entrypoint runs after migrating, instead of Gunicorn.
COMMAND = [sys.executable, "-c", "print('the command ran')"]


def entrypoint_environment(
    address: PostgresAddress, name: str, port: int, **settings: str
) -> dict[str, str]:
    """A fresh environment pointing the entrypoint's Alembic at database `name` on
    127.0.0.1:`port`, as `address`'s user, with this run's PYTHONPATH (the mutation runner
    points it at a broken copy's `src`)."""
    venv_bin = str(Path(sys.executable).parent)  # `alembic`, as the image's PATH has it
    path = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    return {
        **plain_environment(),
        **path,
        **address.environment(name),
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(port),
        "DB_CONNECT_TIMEOUT": "5",
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        **settings,
    }


class LatePostgres:
    """127.0.0.1:`port`: nothing listening, then a server starting up, then `upstream`."""

    def __init__(self, upstream: PostgresAddress) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.refused_as_starting = 0
        self.forwarding = False
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start_up(self) -> None:
        """Listen, answering every connection as a server starting up does."""
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def serve(self) -> None:
        """From now on, lead every connection to the real server."""
        self.forwarding = True

    def close(self) -> None:
        with self._lock:
            for sock in [*self._sockets, *([self._listener] if self._listener else [])]:
                with suppress(OSError):
                    sock.close()

    def _keep(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self._keep(client)
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            if not self.forwarding:
                self._refuse_as_starting(client)
                return
            if self.upstream.host.startswith("/"):
                server = socket.socket(socket.AF_UNIX)
                server.connect(f"{self.upstream.host}/.s.PGSQL.{self.upstream.port}")
            else:
                server = socket.create_connection((self.upstream.host, self.upstream.port))
            self._keep(server)
            threading.Thread(target=_pump, args=(server, client), daemon=True).start()
            _pump(client, server)
        except OSError:
            client.close()

    def _refuse_as_starting(self, client: socket.socket) -> None:
        with client:
            while True:  # SSL and GSSAPI requests are declined first, as a server does
                length, code = int.from_bytes(_read(client, 4)), int.from_bytes(_read(client, 4))
                _read(client, length - 8)
                if code not in (SSL_REQUEST, GSSENC_REQUEST):
                    break
                client.sendall(b"N")
            client.sendall(STARTING_UP)
            self.refused_as_starting += 1


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def _pump(source: socket.socket, target: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    for sock in (source, target):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def entrypoint(environment: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT.relative_to(ROOT)), *COMMAND],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def head() -> str | None:
    return ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()


def test_a_database_still_starting_is_retried_then_migrated_and_the_command_runs(
    make_database: Callable[[], TestDatabase],
) -> None:
    """docs/DOCKER.md, "Migrations": a database still starting is retried, MIGRATION_ATTEMPTS
    (15) tries MIGRATION_RETRY_DELAY (2 s) apart, at their defaults: the first attempt finds
    nothing listening, the second a server starting up, the third the server, which it
    migrates; then the command runs."""
    database = make_database()
    late = LatePostgres(database.address)
    stderr: list[str] = []
    try:
        with entrypoint(
            entrypoint_environment(database.address, database.name, late.port)
        ) as process:
            assert process.stderr is not None
            assert process.stdout is not None
            for line in process.stderr:
                stderr.append(line)
                if "failed (attempt 1 of 15), retrying in 2s" in line:
                    late.start_up()
                elif "failed (attempt 2 of 15), retrying in 2s" in line:
                    assert late.refused_as_starting > 0, "".join(stderr)
                    late.serve()
            output = process.stdout.read()
            assert process.wait(timeout=60) == 0, "".join(stderr)
    finally:
        late.close()
    log = "".join(stderr)
    assert "starting up" in log, log
    assert "attempt 3" not in log, log
    assert output == "the command ran\n", log
    rows = database.fetch("SELECT version_num FROM alembic_version")
    assert [row["version_num"] for row in rows] == [head()], log


def test_the_entrypoint_gives_up_after_migration_attempts_and_runs_no_command(
    postgres: PostgresAddress,
) -> None:
    """With MIGRATION_ATTEMPTS=3 and nothing listening: three tries, the retry delay as set,
    then one line saying it gave up, exit status 1, and the command not run."""
    environment = entrypoint_environment(
        postgres, "postgres", free_port(), MIGRATION_ATTEMPTS="3", MIGRATION_RETRY_DELAY="0"
    )
    with entrypoint(environment) as process:
        stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    retries = [line for line in stderr.splitlines() if line.startswith("entrypoint:")]
    assert retries == [
        "entrypoint: 'alembic upgrade head' failed (attempt 1 of 3), retrying in 0s",
        "entrypoint: 'alembic upgrade head' failed (attempt 2 of 3), retrying in 0s",
        "entrypoint: 'alembic upgrade head' failed 3 times; giving up",
    ], stderr
    assert "the command ran" not in stdout
