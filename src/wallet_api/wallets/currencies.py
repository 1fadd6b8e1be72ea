"""Each wallet's currency, which every amount sent for it is read in and every balance of
it is shown in (core/money.py).

A wallet's currency never changes, so each worker keeps what it has read (a bounded map,
the first remembered forgotten first): the hot path asks the database once per wallet,
not once per request. An id found nowhere is not remembered (it may be created).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from uuid import UUID

from wallet_api.core.database import Database
from wallet_api.core.money import Currency, currency_exponent
from wallet_api.wallets import repository

#: Wallets whose currency a worker remembers (about 150 bytes each: 15 MB).
REMEMBERED_CURRENCIES = 100_000


class WalletCurrencies:
    def __init__(self, database: Database, default: Currency) -> None:
        self._database = database
        #: DEFAULT_CURRENCY, which the specification's bodies leave unsaid.
        self.default = default
        self._known: OrderedDict[UUID, Currency] = OrderedDict()
        #: One Currency per code (a wallet's entry shares its code's).
        self._by_code: dict[str, Currency] = {default.code: default}

    def currency(self, code: str) -> Currency:
        """The currency of ISO 4217 `code` (validated already: a wallet's, or a request's)."""
        found = self._by_code.get(code)
        if found is None:
            found = self._by_code[code] = Currency(code, currency_exponent(code))
        return found

    def remembered(self, wallet_id: UUID) -> Currency | None:
        """The wallet's currency if this worker knows it (no I/O)."""
        return self._known.get(wallet_id)

    async def of(self, wallet_ids: Collection[UUID]) -> dict[UUID, Currency]:
        """The currencies of those of `wallet_ids` that exist."""
        unseen = [wallet_id for wallet_id in wallet_ids if wallet_id not in self._known]
        if unseen:
            async with self._database.autocommit() as connection:
                found = await repository.wallet_currencies(connection, unseen)
            for wallet_id, code in found.items():
                self.remember(wallet_id, code)
        known = self._known
        return {wallet_id: known[wallet_id] for wallet_id in wallet_ids if wallet_id in known}

    async def one(self, wallet_id: UUID) -> Currency | None:
        """The wallet's currency; None if it does not exist."""
        found = self._known.get(wallet_id)
        if found is not None:
            return found
        return (await self.of((wallet_id,))).get(wallet_id)

    def remember(self, wallet_id: UUID, code: str) -> None:
        self._known[wallet_id] = self.currency(code)
        if len(self._known) > REMEMBERED_CURRENCIES:
            self._known.popitem(last=False)
