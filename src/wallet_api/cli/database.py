"""Which database a command works on, and what it says when it cannot reach it.

`wallet-api verify`, `migrate` and `keys`, and Alembic's own commands, work on the server
that `DB_HOST` names; with `DB_HOST` unset, on the embedded PostgreSQL that `make run`
started in `.data/postgres`, as `make run` itself does. They never fall back quietly to
whatever server happens to listen on 127.0.0.1:5432.

The failures a person can fix (no server, no database, a refused password, no schema) are
one line naming the cause and the fix, and exit status 2 ("could not do it"), with the
traceback only at `LOG_LEVEL=debug`.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from wallet_api.core.config import Settings, load_settings_or_exit

logger = logging.getLogger(__name__)

#: Where `make run` keeps the embedded PostgreSQL's data, relative to the working directory.
EMBEDDED_DATA_DIR = Path(".data/postgres")

#: The exit status of a command that could not reach its database, and of any failure a
#: person can fix (an unknown key id for `keys revoke`, an expiry already past for `keys
#: create`). 1 is only `verify`'s own "no": a ledger mismatch.
COULD_NOT_CONNECT = 2


def database_settings() -> Settings:
    """The settings, pointing at the database a command should use: `DB_HOST`'s server, or
    the embedded one `make run` runs. Exits with one line when neither is there."""
    settings = load_settings_or_exit()
    if "db_host" in settings.model_fields_set:
        return settings
    try:
        from wallet_api.devtools.postgres import running_embedded_postgres

        address = running_embedded_postgres(EMBEDDED_DATA_DIR)
    except ImportError:  # an installation without the development tools (the image)
        print("wallet-api: DB_HOST is not set: set it to the database's host", file=sys.stderr)
        raise SystemExit(COULD_NOT_CONNECT) from None
    if address is None:
        print(
            f"wallet-api: DB_HOST is not set and the embedded PostgreSQL of `make run` is not "
            f"running (in {EMBEDDED_DATA_DIR}/): start it with `make run`, or set DB_HOST",
            file=sys.stderr,
        )
        raise SystemExit(COULD_NOT_CONNECT)
    os.environ.update(address.environment(settings.db_name))  # for Alembic's env.py as well
    return load_settings_or_exit()


@contextmanager
def reported_in_one_line(settings: Settings, *, migrating: bool = False) -> Iterator[None]:
    """Turn a failure to reach or use the database into one line and exit status 2;
    anything else propagates as it is. `migrating`: a missing table is then the
    migration's own bug (it propagates), not a database still to be migrated."""
    try:
        yield
    except Exception as exc:
        cause = failure_cause(exc, settings)
        if cause is None or (
            migrating and any(isinstance(e, asyncpg.UndefinedTableError) for e in _chain(exc))
        ):
            raise
        if settings.log_level == "debug":
            traceback.print_exception(exc)
        print(f"wallet-api: {cause}", file=sys.stderr)
        raise SystemExit(COULD_NOT_CONNECT) from None


def failure_cause(exc: BaseException, settings: Settings) -> str | None:
    """What went wrong and how to fix it, when `exc` (or what it wraps: SQLAlchemy and
    Alembic wrap the driver's errors) is a database a person can put right; else None."""
    for error in _chain(exc):
        for applies, explain in _CAUSES:
            if applies(error):
                return explain(error, settings, server_name(settings))
    return None


_Explain = Callable[[BaseException, Settings, str], str]

_UNREACHABLE = frozenset(
    {errno.ECONNREFUSED, errno.ENOENT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET}
)

#: The failures a person can put right, each with what to do, in the order they are tried.
_CAUSES: list[tuple[Callable[[BaseException], bool], _Explain]] = [
    (
        lambda e: isinstance(e, asyncpg.InvalidCatalogNameError),
        lambda _, s, where: (
            f"database {s.db_name!r} does not exist on {where}: create it (CREATE DATABASE), "
            f"or set DB_NAME"
        ),
    ),
    (
        lambda e: isinstance(
            e, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
        ),
        lambda e, s, where: (
            f"{where} refused user {s.db_user!r} ({e}): check DB_USER and DB_PASSWORD"
        ),
    ),
    (
        lambda e: isinstance(e, asyncpg.UndefinedTableError),
        lambda e, s, where: (
            f"database {s.db_name!r} on {where} has no wallet tables ({e}): apply the "
            f"migrations (`make migrate`)"
        ),
    ),
    (
        lambda e: isinstance(e, asyncpg.CannotConnectNowError),
        lambda e, _, where: f"{where} is starting or shutting down ({e}): try again in a moment",
    ),
    (
        lambda e: isinstance(e, asyncpg.TooManyConnectionsError),
        lambda e, _, where: (
            f"{where} has no free connection ({e}): close some, or raise max_connections"
        ),
    ),
    (
        lambda e: isinstance(e, TimeoutError),
        lambda _, s, where: (
            f"{where} did not answer in time (DB_CONNECT_TIMEOUT {s.db_connect_timeout:g} s, "
            f"DB_CLIENT_TIMEOUT {s.client_timeout_seconds:g} s): is it reachable?"
        ),
    ),
    (
        lambda e: isinstance(e, socket.gaierror),
        lambda e, s, _: f"cannot resolve the host {s.db_host!r} ({e}): check DB_HOST",
    ),
    (
        # After TimeoutError and socket.gaierror, which are OSErrors too.
        lambda e: isinstance(e, OSError) and e.errno in _UNREACHABLE,
        lambda e, _, where: (
            f"cannot connect to {where} ({os.strerror(getattr(e, 'errno', 0) or 0)}): is it "
            f"running? Check DB_HOST and DB_PORT"
        ),
    ),
]


def server_name(settings: Settings) -> str:
    """The server `settings` name, for a person."""
    if len(settings.db_hosts) > 1:
        return "PostgreSQL at " + ", ".join(f"{host}:{port}" for host, port in settings.db_hosts)
    host = settings.db_host
    if host.startswith("/"):
        if Path(host).resolve() == EMBEDDED_DATA_DIR.resolve():
            return "the embedded PostgreSQL of `make run`"
        return f"PostgreSQL on the socket {Path(host) / f'.s.PGSQL.{settings.db_port}'}"
    return f"PostgreSQL at {host}:{settings.db_port}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it, through SQLAlchemy's `orig` and exception chaining."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        error = todo.pop(0)
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        context = None if error.__suppress_context__ else error.__context__
        todo += [getattr(error, "orig", None), error.__cause__, context]
