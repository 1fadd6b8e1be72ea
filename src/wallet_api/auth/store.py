"""Each worker's copy of the key table, so that no request waits on the database for a
key it knows: the whole table (small: one row per client) is read again every
`AUTH_KEYS_REFRESH_SECONDS`, which bounds how long a revocation takes to reach every
worker. A key id not in the copy (a key created a moment ago) is read on its own, once:
an id found nowhere is remembered as unknown for `MISS_SECONDS`, so repeating a bad key
costs the database one indexed read per worker every quarter of a second.

If the whole table cannot be read for `STALE_AFTER` refresh intervals (an outage, a
saturated pool), the copy is not trusted: each key is read on its own again, at most once
per interval, and a key that cannot be read is not accepted (503), so a revocation is
never ignored for longer than that.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from wallet_api.auth.keys import ApiKey

logger = logging.getLogger(__name__)

MISS_SECONDS = 0.25
#: Refresh intervals without a full read after which the copy is not trusted.
STALE_AFTER = 3
#: Unknown ids remembered at once (a flood of made-up ids is forgotten, not hoarded).
MISSES_KEPT = 10_000


class KeyStore:
    def __init__(
        self,
        load_all: Callable[[], Awaitable[list[ApiKey]]],
        load_one: Callable[[str], Awaitable[ApiKey | None]],
        *,
        refresh_every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_all = load_all
        self._load_one = load_one
        self._refresh_every = refresh_every
        self._clock = clock
        self._keys: dict[str, ApiKey] = {}
        self._misses: dict[str, float] = {}
        self._reading: dict[str, asyncio.Future[ApiKey | None]] = {}
        #: Full reads so far, and when the last one ended.
        self._generation = 0
        self._refreshed_at = clock()
        #: When each key was last read on its own (while the copy is stale).
        self._checked_at: dict[str, float] = {}

    def is_current(self, key: ApiKey) -> bool:
        """Whether `key` is the copy's row for its id, and the copy is trusted: what
        was verified against it holds without a look-up."""
        return (
            self._keys.get(key.id) is key
            and self._clock() - self._refreshed_at <= STALE_AFTER * self._refresh_every
        )

    async def lookup(self, key_id: str) -> ApiKey | None:
        """The key with this id, as of at most `refresh_every` seconds ago; None if there
        is none. A database error reading an id not yet known is raised."""
        now = self._clock()
        found = self._keys.get(key_id)
        if found is not None:
            stale = now - self._refreshed_at > STALE_AFTER * self._refresh_every
            checked = now - self._checked_at.get(key_id, -math.inf) < self._refresh_every
            if not stale or checked:
                return found
        else:
            missed = self._misses.get(key_id)
            if missed is not None and now - missed < MISS_SECONDS:
                return None
        reading = self._reading.get(key_id)
        if reading is None:  # one read per id at a time; those arriving meanwhile share it
            reading = self._reading[key_id] = asyncio.ensure_future(self._read_one(key_id))
            reading.add_done_callback(lambda _: self._reading.pop(key_id, None))
        return await asyncio.shield(reading)

    async def _read_one(self, key_id: str) -> ApiKey | None:
        generation = self._generation
        key = await self._load_one(key_id)
        if generation != self._generation:
            # A full read ended meanwhile: it may have seen a revocation this read missed.
            return self._keys.get(key_id, key)
        if key is None:
            if len(self._misses) >= MISSES_KEPT:
                self._misses.clear()
            self._misses[key_id] = self._clock()
        else:
            self._keys[key_id] = key
            self._checked_at[key_id] = self._clock()
        return key

    async def refresh_periodically(self) -> None:
        """Read the whole table every `refresh_every` seconds, for the life of the worker;
        through an outage, the copy it has stays in use."""
        while True:
            try:
                keys = await self._load_all()
            except Exception as exc:
                logger.warning("the API keys could not be read: %r", exc)
            else:
                self._keys = {key.id: key for key in keys}
                self._misses.clear()
                self._checked_at.clear()
                self._generation += 1
                self._refreshed_at = self._clock()
            await asyncio.sleep(self._refresh_every)
