"""A wallet's balance monitors: made, read, deleted, for the wallet's owner only."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from wallet_api.core.database import Database
from wallet_api.monitors import repository
from wallet_api.monitors.exceptions import MonitorNotFound, TooManyMonitors
from wallet_api.monitors.schemas import MONITORS_PER_WALLET, MonitorRequest, monitor_document
from wallet_api.wallets.exceptions import WalletNotFound
from wallet_api.wallets.owners import WalletOwners


class MonitorService:
    def __init__(self, database: Database, owners: WalletOwners) -> None:
        self._database = database
        self._owners = owners

    async def _check(self, wallet_id: UUID, owner: str | None) -> None:
        """Another owner's wallet is answered as one that does not exist."""
        if await self._owners.foreign(owner, (wallet_id,)):
            raise WalletNotFound(wallet_id)

    async def create(
        self, wallet_id: UUID, request: MonitorRequest, *, owner: str | None
    ) -> dict[str, Any]:
        await self._check(wallet_id, owner)
        async with self._database.transaction() as connection:
            row = await repository.create(
                connection,
                uuid.uuid4(),
                wallet_id,
                condition=request.condition,
                threshold=request.threshold,
                limit=MONITORS_PER_WALLET,
            )
            if row is None:
                found = await repository.of_wallet(connection, wallet_id)
        if row is None:
            if not found:
                raise WalletNotFound(wallet_id)
            raise TooManyMonitors(MONITORS_PER_WALLET)
        return monitor_document(row)

    async def of_wallet(self, wallet_id: UUID, *, owner: str | None) -> list[dict[str, Any]]:
        await self._check(wallet_id, owner)
        async with self._database.autocommit() as connection:
            rows = await repository.of_wallet(connection, wallet_id)
        return [monitor_document(row) for row in rows]

    async def delete(self, wallet_id: UUID, monitor_id: UUID, *, owner: str | None) -> None:
        await self._check(wallet_id, owner)
        async with self._database.autocommit() as connection:
            deleted = await repository.delete(connection, monitor_id, wallet_id)
        if not deleted:
            raise MonitorNotFound(monitor_id)
