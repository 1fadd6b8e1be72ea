"""The schema's metadata, the connection pool, and the one place that opens transactions.

The service talks to PostgreSQL through asyncpg directly. SQLAlchemy describes the schema
(`metadata`, for Alembic's migrations and drift check) but is not on the request path:
measured here, one batch statement through SQLAlchemy's async engine cost about 1.5 ms of
client CPU against 0.3 ms through asyncpg (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy import MetaData
from sqlalchemy.types import UserDefinedType

from wallet_api.core.config import Settings

logger = logging.getLogger(__name__)

#: Named constraints, so that migrations can refer to them and `alembic check` sees no drift.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


#: See `Database.in_index_order`. No JIT: the costs these settings add to the plans they
#: forbid (their penalty) raise the chosen plan's cost estimate past JIT's threshold,
#: and compiling took 230 ms of a 0.2 ms read.
_INDEX_ORDER = "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; SET LOCAL jit = off"


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (SQLAlchemy has no type of its own for it)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


#: What repositories receive: one pooled connection, in the caller's transaction or not.
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
#: A unique violation (of an idempotency key stored meanwhile, see `is_key_conflict`).
UniqueViolation = asyncpg.UniqueViolationError

#: Connections above DB_POOL_SIZE are closed after this long unused.
IDLE_CONNECTION_LIFETIME_SECONDS = 300.0


async def _keep_session(_: Connection) -> None:
    """The pool's reset on release: nothing to undo. The service sets no session state
    (no SET, LISTEN, cursors or advisory locks), and asyncpg rolls back a transaction left
    open before it calls this. Its default reset would cost a round trip per release."""


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    # A creation that failed after its waiters gave up is not an unhandled error.
    if not task.cancelled():
        task.exception()


class Database:
    """Owns the connection pool, and with it every transaction boundary of the service.

    `transaction()` is a unit of work of several statements. `autocommit()` runs
    statements that are each a transaction of their own: PostgreSQL commits one when it
    succeeds, before answering, so one round trip carries the statement and its commit.

    The pool is created on first use, so that the service starts, and reports itself not
    ready, while the database is down; a failed creation is retried by the next request.
    """

    def __init__(self, settings: Settings, *, unbounded: bool = False) -> None:
        """`unbounded`: no statement timeout, on the server or the client, for maintenance
        work whose statements are long by nature (`wallet-api verify` on a large ledger)."""
        server_settings = {"application_name": "wallet-api"}
        if not settings.db_pgbouncer:
            # The service's statements are prepared once per connection and have plans
            # that do not depend on their parameters (primary-key lookups, `= ANY` of an
            # array): a custom plan per execution, PostgreSQL's default for its first five
            # and often after, costs 0.3 ms of planning for a batch write that executes in
            # 0.5 ms (docs/PERFORMANCE.md).
            server_settings["plan_cache_mode"] = "force_generic_plan"
        if not settings.db_pgbouncer and not unbounded:
            # A batch spans many wallets: one whose row another transaction holds (an
            # operator's session, a stuck client) must not hold up the others for the whole
            # statement timeout. The batch is split instead (posting/queue.py).
            server_settings["lock_timeout"] = str(settings.db_lock_timeout_ms)
        if unbounded and not settings.db_pgbouncer:
            server_settings["statement_timeout"] = "0"
        elif settings.db_statement_timeout_ms and not settings.db_pgbouncer:
            # PgBouncer refuses startup parameters it does not know (set it on the role there).
            server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
        self._pool_options: dict[str, Any] = {
            "host": settings.db_host,  # a directory for a Unix socket
            "port": settings.db_port,
            # Which server of several a connection may stay on: with read-write, each new
            # connection tries DB_HOST's hosts in order and keeps the first primary, so a
            # pool refilled after a failover finds the new primary by itself.
            "target_session_attrs": settings.target_session_attrs,
            "user": settings.db_user,
            "password": settings.db_password.get_secret_value() or None,
            "database": settings.db_name,
            "timeout": settings.db_connect_timeout,
            "server_settings": server_settings,
            # Behind PgBouncer in transaction mode a named prepared statement may reach
            # another server connection than the one that prepared it.
            "statement_cache_size": 0
            if settings.db_pgbouncer
            else settings.db_prepared_statement_cache_size,
            "min_size": settings.db_pool_size,
            "max_size": settings.db_pool_size + settings.db_max_overflow,
            "max_inactive_connection_lifetime": IDLE_CONNECTION_LIFETIME_SECONDS,
            "reset": _keep_session,
        }
        if len(settings.db_hosts) > 1:
            self._pool_options["host"] = [host for host, _ in settings.db_hosts]
            self._pool_options["port"] = [port for _, port in settings.db_hosts]
        # The client's own limit, always set (DB_CLIENT_TIMEOUT): a database that stops
        # answering (hung, or a network that drops packets) cancels nothing itself.
        if not unbounded:
            self._pool_options["command_timeout"] = settings.client_timeout_seconds
        self._acquire_timeout = settings.db_pool_timeout
        self._recycle_after = settings.db_pool_recycle
        # Behind PgBouncer in transaction mode only a transaction keeps a statement's
        # round trips (prepare, then execute) on one server connection.
        self._statements_in_transactions = settings.db_pgbouncer
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._creating: asyncio.Task[asyncpg.Pool[asyncpg.Record]] | None = None

    async def _get_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is not None:
            return self._pool
        creating = self._creating
        if creating is None or (creating.done() and (creating.cancelled() or creating.exception())):
            # One creation for every waiter, which none of them can cancel by giving up
            # (a readiness probe's short timeout, say); a failed one is retried by the next.
            creating = self._creating = asyncio.get_running_loop().create_task(self._create_pool())
            creating.add_done_callback(_retrieve_exception)
        async with asyncio.timeout(self._acquire_timeout):
            self._pool = await asyncio.shield(creating)
        return self._pool

    async def _create_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        return await asyncpg.create_pool(**self._pool_options)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = await self._get_pool()
        connection = await pool.acquire(timeout=self._acquire_timeout)
        try:
            yield connection
        except Exception as exc:
            if is_connection_lost(exc) or is_read_only(exc):
                # Of no use to anyone: its session is gone, its protocol state is unknown
                # (a server's FATAL error can reach an idle connection before the socket
                # closes), the server stopped answering on it, or the server is no longer
                # the primary (a demoted one, a standby the connection was let onto).
                # When asyncpg saw the socket close itself (under a statement in flight, as
                # in a failover), it has already closed the connection and given its slot
                # back to the pool, detaching this proxy: terminate() then raises
                # InterfaceError ("released back to the pool"), which would replace `exc`
                # and skip expiring the others below. There is nothing left to discard then.
                with suppress(asyncpg.InterfaceError):
                    connection.terminate()
                if server_went_away(exc):
                    # The others probably went the same way (a restart, a failover, every
                    # backend terminated): each idle one is replaced when next acquired,
                    # each busy one when released, instead of failing a request first.
                    await pool.expire_connections()
            raise
        finally:
            try:
                await pool.release(connection)
            except Exception:
                # The work on it is done and its outcome known: a connection that cannot
                # be put back (it is closed then) must not turn that outcome into a failure.
                logger.warning("a database connection could not be released", exc_info=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """One unit of work: committed when the block ends, rolled back if it raises."""
        async with self._connection() as connection:
            transaction = connection.transaction()
            await transaction.start()
            try:
                yield connection
            except Exception as exc:
                if not is_connection_lost(exc):  # else a ROLLBACK would wait on a dead line
                    await transaction.rollback()
                raise
            except BaseException:
                await transaction.rollback()
                raise
            await transaction.commit()

    @asynccontextmanager
    async def in_index_order(self) -> AsyncIterator[Connection]:
        """A transaction whose reads go through an index in its order, never a bitmap of it
        and a sort: for the reads of a stretch of a long ledger, newest or oldest first, up
        to a limit. Their plans are generic (the stretch's bounds unknown when planned),
        and a generic estimate of a stretch is small: PostgreSQL then chose to read all of
        it and sort it (a month of a hot wallet, for one page)."""
        async with self.transaction() as connection:
            await connection.execute(_INDEX_ORDER)
            yield connection

    @asynccontextmanager
    async def snapshot(self, *, timeout_seconds: float) -> AsyncIterator[Connection]:
        """A read-only transaction in one snapshot (repeatable read): every statement of
        the block sees the database as it was at its first, whatever commits meanwhile.
        Its statements may each take up to `timeout_seconds` (instead of the service's
        statement timeout: one that streams its rows to a reader lasts as long as the
        reader takes). Its reads go in index order (see `in_index_order`)."""
        async with self._connection() as connection:
            transaction = connection.transaction(isolation="repeatable_read", readonly=True)
            await transaction.start()
            await connection.execute(
                f"SET LOCAL statement_timeout = {round(timeout_seconds * 1000)}"
            )
            await connection.execute(_INDEX_ORDER)
            try:
                yield connection
            except BaseException:
                # Given up mid-way (a reader gone, a time limit): a statement may still be
                # under way on it (a COPY, a cursor's fetch), so no ROLLBACK is sent; the
                # connection is dropped, and the server ends its transaction (it wrote
                # nothing).
                with suppress(asyncpg.InterfaceError):  # detached: asyncpg closed it
                    connection.terminate()
                raise
            await transaction.commit()  # it wrote nothing: this ends its snapshot

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Connection]:
        """A connection on which each statement commits by itself (no BEGIN, no COMMIT);
        behind PgBouncer, the block's statements run in one transaction instead."""
        if self._statements_in_transactions:
            async with self.transaction() as connection:
                yield connection
            return
        async with self._connection() as connection:
            yield connection

    def pool_usage(self) -> tuple[int, int]:
        """(connections in use, idle connections) of this process's pool."""
        if self._pool is None:
            return 0, 0
        idle = self._pool.get_idle_size()
        return self._pool.get_size() - idle, idle

    async def recycle_connections_periodically(self) -> None:
        """Run until cancelled: every DB_POOL_RECYCLE seconds, have each connection replaced
        when next released (asyncpg's `expire_connections`), so none lives much longer."""
        if self._recycle_after <= 0:
            return
        while True:
            await asyncio.sleep(self._recycle_after)
            if self._pool is not None:
                await self._pool.expire_connections()

    async def dispose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        elif self._creating is not None and not self._creating.done():
            self._creating.cancel()


# SQLSTATE classes that say "the database cannot serve now", not "this statement is wrong":
# 08 connection exception, 53 insufficient resources, 57 operator intervention (shutdown,
# statement timeout), 40 transaction rollback (serialization failure, deadlock).
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})


def _sqlstate_class(exc: BaseException) -> str | None:
    sqlstate = getattr(exc, "sqlstate", None)
    return sqlstate[:2] if isinstance(exc, asyncpg.PostgresError) and sqlstate else None


def _is_connection_failure(exc: BaseException) -> bool:
    """The connection failed, timed out or is closed (OSError covers refused and reset
    connections), or its protocol state is unknown (InternalClientError: asyncpg found it
    mid-way through another exchange, as after a server's FATAL error on an idle
    connection). asyncpg's InterfaceError also stands for errors of the client's own (a bad
    argument, bad settings), which are not the database's fault."""
    if isinstance(exc, asyncpg.ClientConfigurationError | asyncpg.OutdatedSchemaCacheError):
        return False
    return isinstance(
        exc, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.InternalClientError
    )


#: The server ended the session: an administrator or a shutdown terminated it, or it crashed.
_SESSION_ENDED_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def _ended_the_session(exc: BaseException) -> bool:
    """A server error after which the session is gone (its severity is FATAL or PANIC)."""
    if not isinstance(exc, asyncpg.PostgresError):
        return False
    severity = getattr(exc, "severity_en", None) or getattr(exc, "severity", None)
    return (
        _sqlstate_class(exc) == "08"
        or getattr(exc, "sqlstate", None) in _SESSION_ENDED_SQLSTATES
        or severity in {"FATAL", "PANIC"}
    )


def is_connection_lost(exc: BaseException) -> bool:
    """True when the connection `exc` was raised on cannot be used again, nor trusted to
    have not carried out what was sent on it."""
    return _is_connection_failure(exc) or _ended_the_session(exc)


def server_went_away(exc: BaseException) -> bool:
    """True when `exc` says the server side of the connection is gone (closed, reset,
    ended by the server, or left mid-exchange), as it would be for every connection after a
    restart or a failover; not for a statement that merely timed out (its server is busy,
    not gone, and reconnecting everything would add to its load)."""
    if isinstance(exc, TimeoutError):
        return False
    if is_read_only(exc):
        return True  # it is no longer the primary: its other connections cannot write either
    return isinstance(
        exc, OSError | asyncpg.ConnectionDoesNotExistError | asyncpg.InternalClientError
    ) or (is_connection_lost(exc) and not isinstance(exc, asyncpg.InterfaceError))


#: A write on a server that accepts none: a standby, or a primary demoted under the pool.
_READ_ONLY_TRANSACTION = "25006"


def is_read_only(exc: BaseException) -> bool:
    """True when `exc` is the server refusing a write because it is read-only (nothing of
    the statement was applied; a primary elsewhere may take it)."""
    return getattr(exc, "sqlstate", None) == _READ_ONLY_TRANSACTION


#: A lock wait ran past lock_timeout: another transaction holds a row the statement needs.
_LOCK_NOT_AVAILABLE = "55P03"


def is_lock_timeout(exc: BaseException) -> bool:
    """True when `exc` is a statement that gave up waiting for a row lock held elsewhere
    (nothing of it was applied)."""
    return getattr(exc, "sqlstate", None) == _LOCK_NOT_AVAILABLE


def is_transient_error(exc: BaseException) -> bool:
    """True when `exc` means the database is unreachable, overloaded or shutting down, or
    the statement should simply be tried again (its cached plan went stale)."""
    return (
        is_connection_lost(exc)
        or is_read_only(exc)
        or is_lock_timeout(exc)
        or isinstance(exc, asyncpg.OutdatedSchemaCacheError)
        or _sqlstate_class(exc) in _TRANSIENT_SQLSTATE_CLASSES
    )


#: SQLSTATEs of a transaction the database rolled back so that another could proceed.
_ABORTED = frozenset({"40001", "40P01"})


def is_aborted(exc: BaseException) -> bool:
    """True when the database rolled the transaction back to break a deadlock or a
    serialization conflict: running it again may succeed."""
    return isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None) in _ABORTED


def is_key_conflict(exc: BaseException) -> bool:
    """True when `exc` is a unique violation of an idempotency key stored meanwhile."""
    return (
        isinstance(exc, asyncpg.UniqueViolationError)
        and exc.constraint_name == "pk_idempotency_keys"
    )


def is_outcome_unknown(exc: BaseException) -> bool:
    """True when `exc`, raised while a committing statement was in flight, leaves it unknown
    whether the commit landed: the client gave up waiting, the connection broke, or the
    server ended the session (a terminated backend may have committed already: PostgreSQL
    commits locally before it waits for a synchronous standby, and a statement in
    autocommit commits before it answers)."""
    return is_connection_lost(exc)
