"""The engine, the schema's metadata, and the one place that opens and commits transactions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wallet_api.core.config import Settings

#: Named constraints, so that migrations can refer to them and `alembic check` sees no drift.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_engine(settings: Settings) -> AsyncEngine:
    """An asyncpg engine whose pool follows the `DB_POOL_*` settings."""
    server_settings = {"application_name": "wallet-api"}
    if settings.db_statement_timeout_ms and not settings.db_pgbouncer:
        # PgBouncer refuses startup parameters it does not know (set it on the role there).
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    connect_args: dict[str, Any] = {
        "timeout": settings.db_connect_timeout,
        "server_settings": server_settings,
        "prepared_statement_cache_size": settings.db_prepared_statement_cache_size,
    }
    if settings.db_statement_timeout_ms:
        # The client's own limit, a little past the server's: a database that stops
        # answering (hung, or a network that drops packets) cannot cancel anything itself.
        connect_args["command_timeout"] = settings.db_statement_timeout_ms / 1000 + 2
    if settings.db_pgbouncer or not settings.db_prepared_statement_cache_size:
        connect_args["prepared_statement_cache_size"] = 0
        # Behind PgBouncer in transaction mode a prepared statement may reach another
        # server connection than the one that prepared it: no caching in asyncpg either,
        # and names that never collide (SQLAlchemy's documented recipe).
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=False,
        connect_args=connect_args,
    )


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


class Database:
    """Owns the engine, and with it every transaction boundary of the service.

    `transaction()` is a unit of work of several statements. `autocommit()` runs
    statements that are each a transaction of their own: PostgreSQL commits one when it
    succeeds, before answering, so one round trip carries the statement and its commit.
    """

    def __init__(self, engine: AsyncEngine, *, statements_in_transactions: bool = False) -> None:
        self.engine = engine
        # Made once: per-connection execution_options() would cost a copy on every call.
        self._autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        # Behind PgBouncer in transaction mode only a transaction keeps a statement's
        # round trips (prepare, then execute) on one server connection.
        self._statements_in_transactions = statements_in_transactions

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(create_engine(settings), statements_in_transactions=settings.db_pgbouncer)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One unit of work: committed when the block ends, rolled back if it raises."""
        async with self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection on which each statement commits by itself (no BEGIN, no COMMIT);
        behind PgBouncer, the block's statements run in one transaction instead."""
        if self._statements_in_transactions:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._autocommit_engine.connect() as connection:
            yield connection

    async def dispose(self) -> None:
        await self.engine.dispose()


# SQLSTATE classes that say "the database cannot serve now", not "this statement is wrong":
# 08 connection exception, 53 insufficient resources, 57 operator intervention (shutdown,
# statement timeout), 40 transaction rollback (serialization failure, deadlock).
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})


def is_transient_error(exc: BaseException) -> bool:
    """True when `exc` means the database is unreachable, overloaded or shutting down."""
    if isinstance(exc, sa_exc.TimeoutError | OSError | TimeoutError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return False


def is_key_conflict(exc: BaseException) -> bool:
    """True when `exc` is a unique violation of an idempotency key stored meanwhile."""
    cause = getattr(getattr(exc, "orig", None), "__cause__", None)
    return getattr(cause, "constraint_name", None) == "pk_idempotency_keys"


def is_outcome_unknown(exc: BaseException) -> bool:
    """True when `exc`, raised while a committing statement was in flight, leaves it unknown
    whether the commit landed: the client gave up waiting, or the connection broke."""
    if isinstance(exc, TimeoutError | OSError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate.startswith("08")
    return False
