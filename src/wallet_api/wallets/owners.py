"""Whose each wallet is, for callers with an API key: a wallet of another owner is
answered as an unknown one (404 wallet_not_found), so that its existence does not leak.

A wallet's owner, once set, never changes, so each worker keeps what it has read (a
bounded map, the first remembered forgotten first): the hot path asks the database once
per wallet, not once per request. An id found nowhere and a wallet without an owner
(made without keys; an operator may give it one) are both remembered as out of reach for
a few seconds, then asked again: a wallet of another owner, one without an owner and a
missing one all take the same time to refuse (none asks the database again within those
seconds). Without authentication (owner None) nothing is checked.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from uuid import UUID

from wallet_api.core.database import Database
from wallet_api.wallets import repository
from wallet_api.wallets.exceptions import WalletNotFound

#: Wallets whose owner a worker remembers (about 250 bytes each: 25 MB).
REMEMBERED_OWNERS = 100_000
#: How long an id found nowhere, or a wallet without an owner, is taken as out of reach
#: (ids are random: one that is probed before it exists is a guess that does not come
#: true; an owner an operator gives a wallet counts within these seconds).
UNKNOWN_SECONDS = 5.0


class WalletOwners:
    def __init__(self, database: Database, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._database = database
        self._clock = clock
        self._owners: OrderedDict[UUID, str] = OrderedDict()
        self._unknown: OrderedDict[UUID, float] = OrderedDict()

    async def foreign(self, owner: str | None, wallet_ids: Collection[UUID]) -> set[UUID]:
        """Those of `wallet_ids` that `owner` may not touch: another owner's, one made
        without keys, or none at all. Empty when owner is None (no authentication)."""
        if owner is None:
            return set()
        now = self._clock()
        unseen = [
            wallet_id
            for wallet_id in wallet_ids
            if wallet_id not in self._owners
            and now - self._unknown.get(wallet_id, -UNKNOWN_SECONDS) >= UNKNOWN_SECONDS
        ]
        if unseen:
            async with self._database.autocommit() as connection:
                found = await repository.wallet_owners(connection, unseen)
            for wallet_id in unseen:
                wallet_owner = found.get(wallet_id)
                if wallet_owner is None:  # missing, or without an owner: out of reach alike
                    self._unknown[wallet_id] = now
                    if len(self._unknown) > REMEMBERED_OWNERS:
                        self._unknown.popitem(last=False)
                else:
                    self.remember(wallet_id, wallet_owner)
        return {wallet_id for wallet_id in wallet_ids if self._owners.get(wallet_id) != owner}

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
