"""A wallet's balance monitors: made, read, deleted, for the wallet's owner only."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from wallet_api.core.database import Database
from wallet_api.core.fields import minor_units
from wallet_api.core.money import Currency
from wallet_api.monitors import repository
from wallet_api.monitors.exceptions import MonitorNotFound, TooManyMonitors
from wallet_api.monitors.schemas import MONITORS_PER_WALLET, MonitorRequest, monitor_document
from wallet_api.wallets.currencies import WalletCurrencies
from wallet_api.wallets.exceptions import WalletNotFound
from wallet_api.wallets.owners import WalletOwners


class MonitorService:
    def __init__(
        self, database: Database, owners: WalletOwners, currencies: WalletCurrencies
    ) -> None:
        self._database = database
        self._owners = owners
        self._currencies = currencies

    async def _currency(self, wallet_id: UUID, owner: str | None) -> Currency | None:
        """The wallet's currency; None for another owner's wallet, or none."""
        if await self._owners.foreign(owner, (wallet_id,)):
            return None
        return await self._currencies.one(wallet_id)

    async def _check(self, wallet_id: UUID, owner: str | None) -> Currency:
        """The wallet's currency. Another owner's wallet is answered as one that does not
        exist."""
        currency = await self._currency(wallet_id, owner)
        if currency is None:
            raise WalletNotFound(wallet_id)
        return currency

    async def create(
        self, wallet_id: UUID, request: MonitorRequest, *, owner: str | None
    ) -> dict[str, Any]:
        currency = await self._currency(wallet_id, owner)
        # Another owner's wallet, or none: its threshold read in DEFAULT_CURRENCY, then
        # refused as an unknown wallet (what it says never depends on its currency).
        threshold = minor_units(
            request.threshold, currency or self._currencies.default, ("body", "threshold")
        )
        if currency is None:
            raise WalletNotFound(wallet_id)
        async with self._database.transaction() as connection:
            row = await repository.create(
                connection,
                uuid.uuid4(),
                wallet_id,
                condition=request.condition,
                threshold=threshold,
                limit=MONITORS_PER_WALLET,
            )
            if row is None:
                found = await repository.of_wallet(connection, wallet_id)
        if row is None:
            if not found:
                raise WalletNotFound(wallet_id)
            raise TooManyMonitors(MONITORS_PER_WALLET)
        return monitor_document(row, currency)

    async def of_wallet(self, wallet_id: UUID, *, owner: str | None) -> list[dict[str, Any]]:
        currency = await self._check(wallet_id, owner)
        async with self._database.autocommit() as connection:
            rows = await repository.of_wallet(connection, wallet_id)
        return [monitor_document(row, currency) for row in rows]

    async def delete(self, wallet_id: UUID, monitor_id: UUID, *, owner: str | None) -> None:
        await self._check(wallet_id, owner)
        async with self._database.autocommit() as connection:
            deleted = await repository.delete(connection, monitor_id, wallet_id)
        if not deleted:
            raise MonitorNotFound(monitor_id)
