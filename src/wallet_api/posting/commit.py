"""The one way a write reaches the database: a connection whose commit is watched."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from wallet_api.core.database import Connection, Database, is_outcome_unknown
from wallet_api.core.errors import OutcomeUnknown

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Commit:
    """A batch's connection, and whether its write has been sent (its outcome may land)."""

    connection: Connection
    sent: bool = False


@asynccontextmanager
async def committing(database: Database, *, transaction: bool = False) -> AsyncIterator[Commit]:
    """A connection for the statements that write and commit.

    Once the caller marks the write as sent, a failure that leaves unknown whether the
    commit landed (the connection broke, the server ended the session, or the client
    stopped waiting) is reported as OutcomeUnknown, never as "not applied": a client must
    not retry it blindly.
    """
    commit: Commit | None = None
    try:
        opened = database.transaction() if transaction else database.autocommit()
        async with opened as connection:
            commit = Commit(connection)
            yield commit
    except Exception as exc:
        if commit is not None and commit.sent and is_outcome_unknown(exc):
            logger.error("commit outcome unknown", exc_info=exc)
            raise OutcomeUnknown() from exc
        raise
