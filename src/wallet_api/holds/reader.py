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
from uuid import UUID

from wallet_api.core.database import Database
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
            self._reading = asyncio.create_task(self._read_all())
        return await answer

    async def _read_all(self) -> None:
        try:
            while self._asked:
                asked, self._asked = self._asked, {}
                try:
                    async with self._database.autocommit() as connection:
                        found = await repository.holds(connection, list(asked))
                except BaseException as exc:
                    for answers in asked.values():
                        for answer in answers:
                            if not answer.done():
                                answer.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise  # cancelled: the event loop is closing
                    continue
                for hold_id, answers in asked.items():
                    for answer in answers:
                        if not answer.done():  # its request may have been cancelled
                            answer.set_result(found.get(hold_id))
        finally:
            self._reading = None
