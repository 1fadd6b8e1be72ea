"""Reads of holds by id, coalesced: what a capture or a void reads before it builds its
entry.

Reads asked for while a query is on its way wait, together, for the next one: one round
trip serves every capture that arrived meanwhile (a round trip costs the service about as
much CPU as the rest of a capture). A read is always answered by a query sent after it was
asked for, so it sees every write acknowledged before its request was sent. What it reads
is a guess the writer checks under the hold's row lock (a hold changed meanwhile makes the
request read again), never the last word.
"""

from __future__ import annotations

import asyncio
import contextvars
from uuid import UUID

from wallet_api.core.database import Database
from wallet_api.core.errors import ServiceUnavailable
from wallet_api.holds import repository
from wallet_api.holds.repository import HoldRow


class HoldReader:
    """One query at a time for the holds asked for since the last one was sent."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._asked: dict[UUID, list[asyncio.Future[HoldRow | None]]] = {}
        self._reading: asyncio.Task[None] | None = None

    async def read(self, hold_id: UUID) -> HoldRow | None:
        """The hold as stored, or None if there is none with that id."""
        answer: asyncio.Future[HoldRow | None] = asyncio.get_running_loop().create_future()
        self._asked.setdefault(hold_id, []).append(answer)
        if self._reading is None:
            # A fresh context: the query serves many requests, not the one that started it.
            self._reading = asyncio.get_running_loop().create_task(
                self._read_all(), context=contextvars.Context()
            )
        return await answer

    async def _read_all(self) -> None:
        try:
            while self._asked:
                asked, self._asked = self._asked, {}
                try:
                    async with self._database.autocommit() as connection:
                        found = await repository.holds(connection, list(asked))
                except Exception as exc:  # each waiting request fails as its own query would
                    _fail(asked, exc)
                    continue
                except BaseException:  # cancelled: the event loop is closing
                    _fail(asked, ServiceUnavailable("The service is shutting down; retry."))
                    _fail(self._asked, ServiceUnavailable("The service is shutting down; retry."))
                    self._asked = {}
                    raise
                for hold_id, answers in asked.items():
                    for answer in answers:
                        if not answer.done():  # its request may have been cancelled
                            answer.set_result(found.get(hold_id))
        finally:
            self._reading = None


def _fail(asked: dict[UUID, list[asyncio.Future[HoldRow | None]]], error: Exception) -> None:
    for answers in asked.values():
        for answer in answers:
            if not answer.done():
                answer.set_exception(error)
