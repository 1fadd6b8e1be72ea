"""The feed: pages of events in an order that never skips one (events/repository.py),
rendered with the ledger rows and holds they name; a page that finds nothing may wait for
the first event (long-poll); old events purged."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from wallet_api.core.database import Connection, Database
from wallet_api.events import repository
from wallet_api.events.exceptions import EventNotFound
from wallet_api.events.repository import EventRow
from wallet_api.events.schemas import event_document

logger = logging.getLogger(__name__)

#: Seconds between looks at the feed while a page waits for its first event.
POLL_SECONDS = 0.2
#: Events deleted by one statement of the purge.
PURGE_BATCH = 5_000


class EventFeed:
    def __init__(self, database: Database, *, wait_max: float = 30.0) -> None:
        self._database = database
        #: The longest a page waits (EVENTS_WAIT_MAX_SECONDS).
        self._wait_max = wait_max

    async def page(
        self,
        *,
        after: tuple[int, int],
        owner: str | None,
        types: list[str] | None,
        limit: int,
        wait: float = 0,
    ) -> tuple[list[dict[str, Any]], tuple[int, int]]:
        """Up to `limit` events after the position `after`, rendered, and the position
        after the last of them (`after` itself when there are none). With `wait`, a page
        that would be empty waits up to that many seconds for one."""
        deadline = time.monotonic() + min(wait, self._wait_max)
        while True:
            async with self._database.autocommit() as connection:
                rows, last = await repository.page(
                    connection, after=after, owner=owner, types=types, limit=limit
                )
                if len(rows) < limit and last is not None and last > after:
                    # Every event up to `last` was examined: those of other types need not be
                    # again (a page that is full stops at its own last row).
                    after = last
                if rows:
                    documents = await self._render(connection, rows)
                    if len(rows) == limit:
                        after = (rows[-1].xid, rows[-1].id)
                    return documents, after
            if time.monotonic() + POLL_SECONDS > deadline:
                return [], after
            await asyncio.sleep(POLL_SECONDS)

    async def one(self, event_id: int, *, owner: str | None) -> dict[str, Any]:
        async with self._database.autocommit() as connection:
            row = await repository.one(connection, event_id, owner=owner)
            if row is None:
                raise EventNotFound(event_id)
            (document,) = await self._render(connection, [row])
        return document

    async def documents(self, event_ids: list[int]) -> dict[int, dict[str, Any]]:
        """The events of those ids that are kept, whoever's, as the feed shows them to
        their owner (what a webhook delivers)."""
        async with self._database.autocommit() as connection:
            rows = await repository.by_ids(connection, event_ids)
            documents = await self._render(connection, rows) if rows else []
        return {row.id: document for row, document in zip(rows, documents, strict=True)}

    async def _render(self, connection: Connection, rows: list[EventRow]) -> list[dict[str, Any]]:
        ledger_ids = [ledger_id for row in rows for ledger_id in row.ledger_ids]
        legs = await repository.legs(connection, ledger_ids) if ledger_ids else {}
        hold_ids = list({leg.hold_id for leg in legs.values() if leg.hold_id is not None})
        holds = await repository.holds(connection, hold_ids) if hold_ids else {}
        return [event_document(row, legs, holds) for row in rows]

    async def purge_periodically(self, *, older_than_seconds: float, every: float) -> None:
        """Delete the events past their retention, in bounded statements, forever."""
        while True:
            await asyncio.sleep(every)
            total = 0
            try:
                while True:
                    async with self._database.autocommit() as connection:
                        purged = await repository.purge(
                            connection, older_than_seconds=older_than_seconds, limit=PURGE_BATCH
                        )
                    total += purged
                    if purged < PURGE_BATCH:
                        break
            except Exception:
                logger.warning("purging events failed; will retry", exc_info=True)
            if total:
                logger.info("purged %d events past their retention", total)
