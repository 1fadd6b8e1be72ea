"""Whose each wallet is, for callers with an API key: a wallet of another owner is
answered as an unknown one (404 wallet_not_found), so that its existence does not leak.

A wallet's owner never changes, so each worker keeps what it has read (a bounded map,
the least recently used forgotten first): the hot path asks the database once per
wallet, not once per request. Without authentication (owner None) nothing is checked.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from uuid import UUID

from wallet_api.core.database import Database
from wallet_api.wallets import repository
from wallet_api.wallets.exceptions import WalletNotFound

#: Wallets whose owner a worker remembers (about 100 bytes each).
REMEMBERED_OWNERS = 200_000


class WalletOwners:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._owners: OrderedDict[UUID, str | None] = OrderedDict()

    async def foreign(self, owner: str | None, wallet_ids: Collection[UUID]) -> set[UUID]:
        """Those of `wallet_ids` that `owner` may not touch: another owner's, one made
        without keys, or none at all. Empty when owner is None (no authentication)."""
        if owner is None:
            return set()
        unseen = [wallet_id for wallet_id in wallet_ids if wallet_id not in self._owners]
        if unseen:
            async with self._database.autocommit() as connection:
                found = await repository.wallet_owners(connection, unseen)
            for wallet_id, wallet_owner in found.items():
                self.remember(wallet_id, wallet_owner)
        return {wallet_id for wallet_id in wallet_ids if self._owners.get(wallet_id) != owner}

    async def check(self, owner: str | None, wallet_id: UUID) -> None:
        """Raise WalletNotFound unless `owner` may touch the wallet."""
        if (
            owner is not None
            and self._owners.get(wallet_id) != owner
            and await self.foreign(owner, (wallet_id,))
        ):
            raise WalletNotFound(wallet_id)

    def remember(self, wallet_id: UUID, owner: str | None) -> None:
        self._owners[wallet_id] = owner
        self._owners.move_to_end(wallet_id)
        if len(self._owners) > REMEMBERED_OWNERS:
            self._owners.popitem(last=False)
