"""Statements: a wallet's opening balance, every entry of a period and its closing balance,
streamed (a million entries are never in memory at once), in CSV or JSON.

A statement is read in one snapshot (a read-only, repeatable-read transaction: its
balances and its entries agree, and nothing committed meanwhile changes it) on a
connection of the worker's pool, held while it is sent: at most STATEMENTS_AT_ONCE per
worker (more: 429 `too_many_statements`), and at most STATEMENT_SECONDS each (a slower
reader is cut off: the body then ends without its closing, so a reader can tell). The
owner's check and the wallet's existence come first: a refused statement is a problem
document, never half a body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import orjson

from wallet_api.core.database import Database
from wallet_api.core.fields import check_period
from wallet_api.core.money import Currency
from wallet_api.core.responses import json_number
from wallet_api.statements import repository
from wallet_api.statements.exceptions import TooManyStatements
from wallet_api.wallets.currencies import WalletCurrencies
from wallet_api.wallets.owners import WalletOwners

logger = logging.getLogger(__name__)

#: Statements one worker sends at once (each holds a connection of its pool).
STATEMENTS_AT_ONCE = 4
#: Seconds a statement may take to send before it is cut off (its snapshot holds back
#: the server's clean-up of old row versions while it lasts).
STATEMENT_SECONDS = 900.0
#: Bytes of JSON gathered before they are sent.
CHUNK_BYTES = 64 * 1024
#: CSV chunks from the server waiting to be sent, at most (the rest waits in the socket).
QUEUED_CHUNKS = 8


class StatementCut(Exception):
    """A statement took longer than STATEMENT_SECONDS to send."""


@dataclass(frozen=True, slots=True)
class Period:
    wallet_id: UUID
    since: datetime | None
    until: datetime | None
    currency: Currency


class StatementService:
    def __init__(
        self, database: Database, owners: WalletOwners, currencies: WalletCurrencies
    ) -> None:
        self._database = database
        self._owners = owners
        self._currencies = currencies
        self._sending = 0

    async def begin(
        self,
        wallet_id: UUID,
        *,
        owner: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> Period:
        """Check the request, then take one of the worker's places (`end` gives it back);
        or refuse it."""
        check_period(since, until)
        await self._owners.check(owner, wallet_id)
        currency = await self._currencies.of_wallet(wallet_id)
        if self._sending >= STATEMENTS_AT_ONCE:
            raise TooManyStatements(STATEMENTS_AT_ONCE)
        self._sending += 1
        return Period(wallet_id, since, until, currency)

    def end(self) -> None:
        """Give back the place `begin` took."""
        self._sending -= 1

    def csv(self, period: Period) -> AsyncGenerator[bytes]:
        """The statement as CSV: a header, the opening line, a line per entry (written by
        the server), the closing line."""
        return _ended_if_cut(self._csv(period), period)

    def json(self, period: Period) -> AsyncGenerator[bytes]:
        """The statement as one JSON document, its entries oldest first."""
        return _ended_if_cut(self._json(period), period)

    async def _csv(self, period: Period) -> AsyncGenerator[bytes]:
        deadline = time.monotonic() + STATEMENT_SECONDS
        async with self._database.snapshot(timeout_seconds=STATEMENT_SECONDS) as connection:
            opening, closing = await repository.balances(
                connection, period.wallet_id, period.since, period.until
            )
            yield _csv_line(repository.CSV_COLUMNS)
            yield _csv_balance_line("OPENING_BALANCE", period.since, opening, period.currency)
            queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUED_CHUNKS)

            async def output(chunk: bytes) -> None:
                if time.monotonic() > deadline:
                    raise StatementCut
                await queue.put(bytes(chunk))

            async def copy() -> None:
                try:
                    await repository.copy_csv(
                        connection,
                        period.wallet_id,
                        period.since,
                        period.until,
                        output,
                        currency=period.currency,
                        seconds=max(1.0, deadline - time.monotonic()),
                    )
                finally:
                    await queue.put(None)

            copying = asyncio.create_task(copy())
            try:
                while (chunk := await queue.get()) is not None:
                    yield chunk
                await copying
            finally:
                if not copying.done():
                    copying.cancel()
                    with suppress(BaseException):
                        await copying
            yield _csv_balance_line("CLOSING_BALANCE", period.until, closing, period.currency)

    async def _json(self, period: Period) -> AsyncGenerator[bytes]:
        deadline = time.monotonic() + STATEMENT_SECONDS
        async with self._database.snapshot(timeout_seconds=STATEMENT_SECONDS) as connection:
            opening, closing = await repository.balances(
                connection, period.wallet_id, period.since, period.until
            )
            exponent = period.currency.exponent
            head = orjson.dumps(
                {
                    "wallet_uuid": str(period.wallet_id),
                    "currency": period.currency.code,
                    "from": period.since,
                    "to": period.until,
                    "opening_balance": json_number(opening, exponent),
                    "closing_balance": json_number(closing, exponent),
                }
            )
            parts = [head[:-1], b',"entries":[']
            size, separator = 0, b""
            async for entry in repository.json_entries(
                connection, period.wallet_id, period.since, period.until, exponent=exponent
            ):
                parts += (separator, entry.encode())
                separator = b","
                size += len(entry)
                if size >= CHUNK_BYTES:
                    if time.monotonic() > deadline:
                        raise StatementCut
                    yield b"".join(parts)
                    parts, size = [], 0
            parts.append(b"]}")
            yield b"".join(parts)


async def _ended_if_cut(body: AsyncGenerator[bytes], period: Period) -> AsyncGenerator[bytes]:
    """`body`, ended where it was cut (StatementCut): without its closing, and logged."""
    try:
        async with aclosing(body):  # given up: its connection goes back now, not at GC
            async for chunk in body:
                yield chunk
    except StatementCut:
        logger.warning(
            "the statement of wallet %s was cut off after %g s: its reader was too slow",
            period.wallet_id,
            STATEMENT_SECONDS,
        )


def _csv_line(values: tuple[str, ...]) -> bytes:
    return (",".join(values) + "\r\n").encode()


def _csv_balance_line(kind: str, at: datetime | None, balance: int, currency: Currency) -> bytes:
    """An opening or closing line: its time (none: the statement is unbounded there), its
    kind in `operation`, the balance in `balance_after` (with the currency's digits, as
    the entries' lines write amounts: `12.50`), the currency last."""
    when = "" if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    exponent = currency.exponent
    units, minor = divmod(balance, 10**exponent)
    amount = f"{units}.{minor:0{exponent}d}" if exponent else str(units)
    cells = ["", "", when, kind, "", "", amount, "", "", "", "", "", "", currency.code]
    return _csv_line(tuple(cells))
