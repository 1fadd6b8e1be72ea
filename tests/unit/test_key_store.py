"""The per-worker copy of the key table (auth/store.py), on a fake clock and fake loads."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from wallet_api.auth.keys import ApiKey, Scope
from wallet_api.auth.store import MISS_SECONDS, STALE_AFTER, KeyStore

NOW = datetime(2026, 11, 28, tzinfo=UTC)
KEY = ApiKey("0123456789ab", "acme", frozenset(Scope), "0" * 64, None, None, NOW, None, None)
REVOKED = replace(KEY, revoked_at=NOW)


class Table:
    """The key table as the store reads it, counting the reads."""

    def __init__(self, *keys: ApiKey) -> None:
        self.keys = {key.id: key for key in keys}
        self.all_reads = 0
        self.one_reads = 0
        self.failing = False
        self.hold_one: asyncio.Event | None = None

    async def load_all(self) -> list[ApiKey]:
        self.all_reads += 1
        if self.failing:
            raise OSError("connection refused")
        return list(self.keys.values())

    async def load_one(self, key_id: str) -> ApiKey | None:
        self.one_reads += 1
        found = self.keys.get(key_id)
        if self.hold_one is not None:
            await self.hold_one.wait()
        if self.failing:
            raise OSError("connection refused")
        return found


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def store(table: Table, clock: Clock) -> KeyStore:
    return KeyStore(table.load_all, table.load_one, refresh_every=2.0, clock=clock)


def test_a_key_not_in_the_copy_is_read_once_and_an_unknown_id_not_again_at_once() -> None:
    async def run() -> None:
        table, clock = Table(), Clock()
        keys = store(table, clock)
        assert await keys.lookup(KEY.id) is None
        assert await keys.lookup(KEY.id) is None
        assert table.one_reads == 1  # remembered as unknown
        table.keys[KEY.id] = KEY  # created meanwhile
        clock.now += MISS_SECONDS
        assert await keys.lookup(KEY.id) == KEY
        assert await keys.lookup(KEY.id) == KEY
        assert table.one_reads == 2  # then served from the copy

    asyncio.run(run())


def test_a_single_read_that_a_refresh_overtook_does_not_undo_a_revocation() -> None:
    async def run() -> None:
        table, clock = Table(KEY), Clock()
        keys = store(table, clock)
        table.hold_one = asyncio.Event()
        reading = asyncio.create_task(keys.lookup(KEY.id))  # reads KEY, valid, and waits
        for _ in range(2):  # the lookup starts its read; the read takes KEY, and waits
            await asyncio.sleep(0)
        assert table.one_reads == 1
        table.keys[KEY.id] = REVOKED
        refresher = asyncio.create_task(keys.refresh_periodically())
        await asyncio.sleep(0)  # the full read sees the revocation
        table.hold_one.set()
        assert await reading == REVOKED
        assert await keys.lookup(KEY.id) == REVOKED
        refresher.cancel()

    asyncio.run(run())


def test_a_copy_not_refreshed_for_long_is_not_trusted() -> None:
    async def run() -> None:
        table, clock = Table(KEY), Clock()
        keys = store(table, clock)
        refresher = asyncio.create_task(keys.refresh_periodically())
        await asyncio.sleep(0)
        assert await keys.lookup(KEY.id) == KEY
        assert table.one_reads == 0
        table.failing = True  # the table cannot be read any more
        clock.now += STALE_AFTER * 2.0 + 1
        with pytest.raises(OSError, match="refused"):
            await keys.lookup(KEY.id)  # fails closed: 503, not the old copy
        table.failing = False
        table.keys[KEY.id] = REVOKED
        assert await keys.lookup(KEY.id) == REVOKED  # read on its own
        refresher.cancel()

    asyncio.run(run())
