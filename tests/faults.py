"""Real faults between the service and PostgreSQL, made on purpose and on cue.

- `PostgresProxy`: the service connects to PostgreSQL through it (a Unix socket). It
  forwards bytes both ways until told to break: `sever()` cuts every connection at once
  (what a crashed host or a reset network does), `terminate_and_hold()` sends every
  connection the FATAL error PostgreSQL sends when a backend is terminated, then keeps the
  socket open a while before it closes (the error and the close reach a client apart),
  `dropping_packets()` forwards nothing while connections stay open (a hung server).
  The FATAL message is written between the server's messages only when the connection is
  idle (it would otherwise cut one in two): use it on connections at rest in a pool.
- `commits_held()`: every commit on the server waits, after it is durable locally, for a
  synchronous standby that does not exist (what a primary does while its standby is away);
  a commit cut off meanwhile has landed, although its client never heard so.
- `wait_for_backends()`: wait until the service's sessions are in a given state, so that a
  fault strikes exactly while a statement is where the test wants it.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.support import TestDatabase
from wallet_api.devtools.postgres import PostgresAddress

T = TypeVar("T")

#: The port number in the proxy's socket name (its directory is its own).
PROXY_PORT = 5432


def _error_response(severity: str, sqlstate: str, message: str) -> bytes:
    """A PostgreSQL ErrorResponse message ('E'), as a server writes it."""
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", severity), (b"V", severity), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


#: What a backend sends its client when `pg_terminate_backend` ends it.
ADMIN_SHUTDOWN = _error_response(
    "FATAL", "57P01", "terminating connection due to administrator command"
)


@dataclass(eq=False)
class _Link:
    """One client connection and its connection to the server."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    frozen: bool = False  # nothing is forwarded any more
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def pump(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if not self.frozen:
                    target.write(data)
                    await target.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        for writer in (self.client, self.server):
            writer.transport.abort()


class PostgresProxy:
    """A proxy in front of `upstream`; the service reaches it at `address`."""

    def __init__(self, upstream: PostgresAddress, directory: Path) -> None:
        self.upstream = upstream
        directory.mkdir(parents=True, exist_ok=True)
        self.address = PostgresAddress(
            host=str(directory), port=PROXY_PORT, user=upstream.user, password=upstream.password
        )
        self._path = directory / f".s.PGSQL.{PROXY_PORT}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._dropping = False

    def database(self, database: TestDatabase) -> TestDatabase:
        """`database`, reached through this proxy."""
        return TestDatabase(self.address, database.name)

    def __enter__(self) -> PostgresProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def connections(self) -> int:
        """Connections open through the proxy now."""
        return self._call(self._count())

    def sever(self) -> int:
        """Cut every connection now; return how many were cut."""
        return self._call(self._sever())

    def terminate_and_hold(self, hold: float) -> int:
        """Send every connection a FATAL "terminating connection" error, forward nothing more,
        and close them `hold` seconds later; return how many got it. New connections are
        served as usual meanwhile."""
        return self._call(self._terminate_and_hold(hold))

    @contextmanager
    def dropping_packets(self) -> Iterator[None]:
        """For the block, forward nothing, on open connections and on new ones, which stay
        open: a network that drops packets, or a server that hangs. They are cut when the
        block ends (what was dropped cannot be delivered late)."""
        self._call(self._set_dropping(True))
        try:
            yield
        finally:
            self._call(self._set_dropping(False))
            self.sever()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self._path))

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()

    async def _set_dropping(self, dropping: bool) -> None:
        self._dropping = dropping
        if dropping:
            for link in self._links:
                link.frozen = True

    async def _count(self) -> int:
        return len(self._links)

    async def _sever(self) -> int:
        links = list(self._links)
        for link in links:
            link.frozen = True
            link.close()
        return len(links)

    async def _terminate_and_hold(self, hold: float) -> int:
        links = list(self._links)
        for link in links:
            link.frozen = True
            link.client.write(ADMIN_SHUTDOWN)
        self._loop.call_later(hold, _close_all, links)
        return len(links)

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        host, port = self.upstream.host, self.upstream.port
        try:
            if host.startswith("/"):
                server_reader, server = await asyncio.open_unix_connection(
                    f"{host}/.s.PGSQL.{port}"
                )
            else:
                server_reader, server = await asyncio.open_connection(host, port)
        except OSError:
            client.transport.abort()
            return
        link = _Link(client, server, frozen=self._dropping)
        self._links.add(link)
        try:
            await asyncio.gather(link.pump(client_reader, server), link.pump(server_reader, client))
        finally:
            self._links.discard(link)


@asynccontextmanager
async def commits_held(database: TestDatabase) -> AsyncIterator[None]:
    """Every commit on `database`'s server waits for a synchronous standby that does not
    exist, until the block ends (then they all complete). Read-only work goes on. The
    setting is the whole server's: use a server of the test's own."""
    await asyncio.to_thread(_hold_commits, database, True)
    try:
        yield
    finally:
        await asyncio.to_thread(_hold_commits, database, False)


def _hold_commits(database: TestDatabase, hold: bool) -> None:
    if hold:
        database.fetch("ALTER SYSTEM SET synchronous_standby_names = 'held_by_a_test'")
    else:
        database.fetch("ALTER SYSTEM RESET synchronous_standby_names")
    database.fetch("SELECT pg_reload_conf()")
    _wait_for_setting(database, "held_by_a_test" if hold else "")
    deadline = time.monotonic() + 10
    while not hold and _waiting(database, "SyncRep"):  # released, and visible to everyone
        assert time.monotonic() < deadline, "commits still wait for a standby"
        time.sleep(0.02)


def _wait_for_setting(database: TestDatabase, value: str) -> None:
    deadline = time.monotonic() + 10
    while database.fetch("SHOW synchronous_standby_names")[0][0] != value:
        assert time.monotonic() < deadline, "the server did not reload its configuration"
        time.sleep(0.02)


def wait_for_backends(
    database: TestDatabase,
    *,
    wait_event: str | None = None,
    wait_event_type: str | None = None,
    count: int = 1,
    other_than: Sequence[int] = (),
    timeout: float = 10,
) -> list[int]:
    """Wait until `count` of the service's sessions (other than those process ids) wait on
    `wait_event` (`SyncRep`: a commit waiting for its standby) or on a `wait_event_type`
    (`Lock`: a row or table lock); return their process ids."""
    deadline = time.monotonic() + timeout
    while True:
        pids = _waiting(database, wait_event, wait_event_type, other_than)
        if len(pids) >= count:
            return pids
        assert time.monotonic() < deadline, f"{len(pids)} sessions wait"
        time.sleep(0.02)


def _waiting(
    database: TestDatabase,
    wait_event: str | None,
    wait_event_type: str | None = None,
    other_than: Sequence[int] = (),
) -> list[int]:
    rows = database.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'wallet-api' "
        "AND datname = $1 AND wait_event IS NOT DISTINCT FROM coalesce($2, wait_event) "
        "AND wait_event_type IS NOT DISTINCT FROM coalesce($3, wait_event_type) "
        "AND NOT pid = ANY($4::int[])",
        database.name,
        wait_event,
        wait_event_type,
        list(other_than),
    )
    return [row["pid"] for row in rows]


def terminate_backends(database: TestDatabase, pids: list[int]) -> None:
    """End those sessions as an administrator would (`pg_terminate_backend`)."""
    for pid in pids:
        database.fetch("SELECT pg_terminate_backend($1)", pid)


def _close_all(links: list[_Link]) -> None:
    for link in links:
        link.close()
