"""Whose each wallet is, for callers with an API key: a wallet of another owner is
answered as an unknown one (404 wallet_not_found), so that its existence does not leak.

A wallet's owner, once set, never changes, so each worker keeps what it has read (a
bounded map, the first remembered forgotten first): the hot path asks the database once
per wallet, not once per request. An id found nowhere and a wallet without an owner
(made without keys; an operator may give it one) are both remembered as out of reach,
and answered from memory as another owner's wallet is: all three take the same time to
refuse, the first time (one read each) and every time after (none). Such an entry is
read again in the background once it is a few seconds old, so that an owner an operator
gives a wallet counts within those seconds; the request that finds it old does not wait
for that read. Without authentication (owner None) nothing is checked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from contextlib import suppress
from uuid import UUID

from wallet_api.core.database import Database
from wallet_api.wallets import repository
from wallet_api.wallets.exceptions import WalletNotFound

logger = logging.getLogger(__name__)

#: Wallets whose owner a worker remembers (about 250 bytes each: 25 MB).
REMEMBERED_OWNERS = 100_000
#: Out-of-reach entries read again in one statement.
REFRESH_BATCH = 1_000
#: After how long an id found nowhere, or a wallet without an owner, is read again, in
#: the background (an owner an operator gives a wallet counts within these seconds).
UNKNOWN_SECONDS = 5.0


class WalletOwners:
    def __init__(self, database: Database, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._database = database
        self._clock = clock
        self._owners: OrderedDict[UUID, str] = OrderedDict()
        self._unknown: OrderedDict[UUID, float] = OrderedDict()
        #: Out-of-reach entries due to be read again, and the one task that reads them.
        self._due: set[UUID] = set()
        self._refresh: asyncio.Task[None] | None = None

    async def foreign(self, owner: str | None, wallet_ids: Collection[UUID]) -> set[UUID]:
        """Those of `wallet_ids` that `owner` may not touch: another owner's, one made
        without keys, or none at all. Empty when owner is None (no authentication)."""
        if owner is None:
            return set()
        unseen = [
            wallet_id
            for wallet_id in wallet_ids
            if wallet_id not in self._owners and wallet_id not in self._unknown
        ]
        if unseen:
            await self._look_up(unseen)
        now = self._clock()
        for wallet_id in wallet_ids:
            seen = self._unknown.get(wallet_id)
            if seen is not None and now - seen >= UNKNOWN_SECONDS:
                self._due.add(wallet_id)
        if self._due and self._refresh is None:
            self._refresh = asyncio.create_task(self._read_due())
        return {wallet_id for wallet_id in wallet_ids if self._owners.get(wallet_id) != owner}

    async def _look_up(self, wallet_ids: list[UUID]) -> None:
        async with self._database.autocommit() as connection:
            found = await repository.wallet_owners(connection, wallet_ids)
        now = self._clock()
        for wallet_id in wallet_ids:
            wallet_owner = found.get(wallet_id)
            if wallet_owner is None:  # missing, or without an owner: out of reach alike
                self._unknown[wallet_id] = now
                self._unknown.move_to_end(wallet_id)
                if len(self._unknown) > REMEMBERED_OWNERS:
                    self._unknown.popitem(last=False)
            else:
                self.remember(wallet_id, wallet_owner)

    async def _read_due(self) -> None:
        """Read the entries found old, a batch at a time, one read in flight per worker
        (a flood of probes costs one connection, not one each)."""
        try:
            while self._due:
                batch = list(self._due)[:REFRESH_BATCH]
                self._due.difference_update(batch)
                await self._look_up([w for w in batch if w in self._unknown])
        except Exception:  # an outage: entries stay as they were, and are tried when next found old
            logger.debug("wallet owners: a background read failed", exc_info=True)
        finally:
            self._refresh = None

    async def close(self) -> None:
        """Stop the background read (used on shutdown)."""
        if self._refresh is not None:
            self._refresh.cancel()
            with suppress(asyncio.CancelledError):
                await self._refresh

    def surely_owns(self, owner: str | None, wallet_id: UUID) -> bool:
        """True if `owner` may touch the wallet as far as this worker knows without
        asking (no owner: no authentication); False means: `check`."""
        return owner is None or self._owners.get(wallet_id) == owner

    async def check(self, owner: str | None, wallet_id: UUID) -> None:
        """Raise WalletNotFound unless `owner` may touch the wallet."""
        if (
            owner is not None
            and self._owners.get(wallet_id) != owner
            and await self.foreign(owner, (wallet_id,))
        ):
            raise WalletNotFound(wallet_id)

    def remember(self, wallet_id: UUID, owner: str | None) -> None:
        """Keep a wallet's owner (one without an owner may get one: not kept)."""
        self._unknown.pop(wallet_id, None)
        if owner is None:
            return
        self._owners[wallet_id] = owner
        if len(self._owners) > REMEMBERED_OWNERS:
            self._owners.popitem(last=False)
