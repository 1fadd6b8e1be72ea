"""How a database error is read: what is answered 503 "not applied", what leaves a commit's
outcome unknown, what costs a connection, and what costs the whole pool. Pure: the
exceptions are asyncpg's own classes; tests/test_faults.py makes them happen for real."""

from __future__ import annotations

import asyncpg
import pytest

from wallet_api.core.database import (
    is_connection_lost,
    is_key_conflict,
    is_outcome_unknown,
    is_read_only,
    is_transient_error,
    server_went_away,
)


def fatal(sqlstate_error: type[asyncpg.PostgresError]) -> asyncpg.PostgresError:
    error = sqlstate_error("the server ended the session")
    error.severity_en = "FATAL"
    return error


#: (error, transient: 503 "not applied", connection lost: outcome unknown if sent and
#: the connection discarded, server gone: the pool's other connections replaced too)
CASES = [
    (asyncpg.UniqueViolationError("duplicate key"), False, False, False),
    (asyncpg.CheckViolationError("balance_not_negative"), False, False, False),
    (asyncpg.DeadlockDetectedError("deadlock"), True, False, False),
    (asyncpg.SerializationError("could not serialize"), True, False, False),
    (asyncpg.QueryCanceledError("statement timeout"), True, False, False),
    (asyncpg.TooManyConnectionsError("too many"), True, False, False),
    (asyncpg.OutdatedSchemaCacheError("cached plan changed"), True, False, False),
    (asyncpg.DataError("invalid input"), False, False, False),
    (asyncpg.ClientConfigurationError("bad setting"), False, False, False),
    (asyncpg.AdminShutdownError("terminating connection"), True, True, True),
    (asyncpg.CrashShutdownError("crash"), True, True, True),
    (asyncpg.ConnectionDoesNotExistError("closed mid-operation"), True, True, True),
    (fatal(asyncpg.InvalidTransactionStateError), True, True, True),
    (asyncpg.InternalClientError("cannot switch to state 12"), True, True, True),
    (ConnectionResetError("reset by peer"), True, True, True),
    (TimeoutError(), True, True, False),
    (asyncpg.InterfaceError("connection is closed"), True, True, False),
]


@pytest.mark.parametrize(("error", "transient", "lost", "gone"), CASES)
def test_each_error_is_read_for_what_it_says(
    error: BaseException, transient: bool, lost: bool, gone: bool
) -> None:
    assert is_transient_error(error) is transient
    assert is_connection_lost(error) is lost
    assert is_outcome_unknown(error) is lost
    if lost:
        assert server_went_away(error) is gone


def test_only_the_idempotency_keys_unique_violation_is_a_key_conflict() -> None:
    conflict = asyncpg.UniqueViolationError("duplicate key")
    conflict.constraint_name = "pk_idempotency_keys"
    other = asyncpg.UniqueViolationError("duplicate key")
    other.constraint_name = "pk_wallets"
    assert is_key_conflict(conflict)
    assert not is_key_conflict(other)
    assert not is_key_conflict(asyncpg.CheckViolationError("x"))


def test_a_write_refused_by_a_read_only_server_is_not_applied_and_costs_the_pool() -> None:
    """A standby, or a primary demoted under the pool: 503 "not applied" (never outcome
    unknown: the server answered), and every connection to it replaced."""
    refused = asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only")
    assert is_transient_error(refused)
    assert not is_outcome_unknown(refused)
    assert is_read_only(refused)
    assert server_went_away(refused)
    assert not is_read_only(asyncpg.DataError("invalid input"))
