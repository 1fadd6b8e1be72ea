"""Each wallet's currency, which every amount sent for it is read in and every balance of
it is shown in (core/money.py): its code and the digits of its minor unit, as stored with
the wallet when it was made (a later edition of the ISO table never reinterprets a
balance).

A wallet's currency never changes, so each worker keeps what it has read (a bounded map,
the least recently used forgotten first): the hot path asks the database once per
wallet, not once per request. An id found nowhere is not remembered (it may be created).

The wallets not known yet are read together: one query in flight per worker, for every
wallet asked meanwhile (at most READ_BATCH), so that a worker meeting thousands of new
wallets at once (a restart under load) spends one connection on them, not one each. Each
asker gets what was read for it: never what the bounded map holds after its wait (it may
have forgotten it meanwhile).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Collection
from contextlib import suppress
from uuid import UUID

from wallet_api.core.database import Database
from wallet_api.core.money import Currency, currency_exponent
from wallet_api.wallets import repository
from wallet_api.wallets.exceptions import WalletNotFound

#: Wallets whose currency a worker remembers (about 150 bytes each: 15 MB).
REMEMBERED_CURRENCIES = 100_000
#: Wallets read in one query at most.
READ_BATCH = 1_000


class WalletCurrencies:
    def __init__(self, database: Database, default: Currency) -> None:
        self._database = database
        #: DEFAULT_CURRENCY, which the specification's bodies leave unsaid.
        self.default = default
        self._known: OrderedDict[UUID, Currency] = OrderedDict()
        #: One Currency per (code, exponent) (a wallet's entry shares it).
        self._shared: dict[tuple[str, int], Currency] = {(default.code, default.exponent): default}
        #: The wallets asked for and not read yet, each with what its askers wait on (its
        #: currency; None: no such wallet), and the one task that reads them.
        self._asked: dict[UUID, asyncio.Future[Currency | None]] = {}
        self._queued: list[UUID] = []
        self._reader: asyncio.Task[None] | None = None

    def currency(self, code: str) -> Currency:
        """The currency of ISO 4217 `code` for a new wallet (validated already), with the
        exponent the standard gives it today."""
        return self._stored(code, currency_exponent(code))

    def _stored(self, code: str, exponent: int) -> Currency:
        found = self._shared.get((code, exponent))
        if found is None:
            found = Currency(code, exponent, implicit=code == self.default.code)
            self._shared[code, exponent] = found
        return found

    def remembered(self, wallet_id: UUID) -> Currency | None:
        """The wallet's currency if this worker knows it (no I/O)."""
        found = self._known.get(wallet_id)
        if found is not None:
            self._known.move_to_end(wallet_id)
        return found

    async def of(self, wallet_ids: Collection[UUID]) -> dict[UUID, Currency]:
        """The currencies of those of `wallet_ids` that exist."""
        found: dict[UUID, Currency] = {}
        unseen: list[UUID] = []
        for wallet_id in wallet_ids:
            known = self.remembered(wallet_id)
            if known is None:
                unseen.append(wallet_id)
            else:
                found[wallet_id] = known
        if unseen:
            # Shielded: a caller that gives up does not cancel the others' wait.
            read = await asyncio.gather(*(asyncio.shield(self._ask(w)) for w in unseen))
            found.update(
                (wallet_id, currency)
                for wallet_id, currency in zip(unseen, read, strict=True)
                if currency is not None
            )
        return found

    async def one(self, wallet_id: UUID) -> Currency | None:
        """The wallet's currency; None if it does not exist."""
        found = self.remembered(wallet_id)
        if found is not None:
            return found
        return await asyncio.shield(self._ask(wallet_id))

    async def of_wallet(self, wallet_id: UUID) -> Currency:
        """The currency of a wallet that exists; WalletNotFound if it does not."""
        currency = await self.one(wallet_id)
        if currency is None:
            raise WalletNotFound(wallet_id)
        return currency

    def remember(self, wallet_id: UUID, currency: Currency) -> None:
        self._known[wallet_id] = currency
        self._known.move_to_end(wallet_id)
        if len(self._known) > REMEMBERED_CURRENCIES:
            self._known.popitem(last=False)

    def _ask(self, wallet_id: UUID) -> asyncio.Future[Currency | None]:
        """What to wait on until the wallet was read (with the next query)."""
        asked = self._asked.get(wallet_id)
        if asked is None:
            asked = self._asked[wallet_id] = asyncio.get_running_loop().create_future()
            self._queued.append(wallet_id)
            if self._reader is None:
                self._reader = asyncio.create_task(self._read())
        return asked

    async def _read(self) -> None:
        """Read the wallets asked for, a batch at a time, until none is left; every
        future of a batch is settled, whatever happens."""
        try:
            while self._queued:
                batch, self._queued = self._queued[:READ_BATCH], self._queued[READ_BATCH:]
                try:
                    async with self._database.autocommit() as connection:
                        rows = await repository.wallet_currencies(connection, batch)
                except Exception as exc:  # each asker gets the failure: its answer is a 5xx
                    for wallet_id in batch:
                        asked = self._asked.pop(wallet_id)
                        asked.set_exception(exc)
                        asked.exception()  # retrieved: no warning if every asker gave up
                    continue
                for wallet_id in batch:
                    row = rows.get(wallet_id)
                    currency = None if row is None else self._stored(*row)
                    if currency is not None:
                        self.remember(wallet_id, currency)
                    self._asked.pop(wallet_id).set_result(currency)
        finally:
            self._reader = None
            # Cancelled (shutdown) with wallets still asked: their askers are not left
            # waiting for ever.
            for asked in self._asked.values():
                asked.cancel()
            self._asked.clear()
            self._queued.clear()

    async def close(self) -> None:
        """Stop the reading (used on shutdown)."""
        if self._reader is not None:
            self._reader.cancel()
            with suppress(asyncio.CancelledError):
                await self._reader
