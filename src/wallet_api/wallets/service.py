"""Wallet business rules: creating wallets, reading balances, applying operations.

The service states the rules and hands the work on: an operation becomes an entry of the
posting engine (`operations.py`); writes and balance reads go through the group-commit
queues (`posting/queue.py`), which batch concurrent requests across wallets, and entries
are written by the engine's writer (`posting/writer.py`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from wallet_api.core import idempotency
from wallet_api.core.config import Settings
from wallet_api.core.database import (
    Database,
    UniqueViolation,
    is_key_conflict,
    is_lock_timeout,
    is_transient_error,
)
from wallet_api.core.errors import (
    AppError,
    DatabaseUnavailable,
    InternalError,
    OutcomeUnknown,
    ServiceUnavailable,
    ValidationFailed,
    WalletBusy,
    error_text,
    log_unavailable,
    wallet_held,
)
from wallet_api.core.fields import metadata_text
from wallet_api.core.idempotency import IdempotencyKeyReused, Replay, StoredResponse, replay
from wallet_api.core.metrics import (
    IDEMPOTENT_REPLAYS,
    declare_operation_outcomes,
    operation_outcomes,
)
from wallet_api.core.money import Currency
from wallet_api.posting import repository as posting
from wallet_api.posting.commit import committing
from wallet_api.posting.entries import Entry
from wallet_api.posting.queue import Group, GroupCommitQueue, Settle
from wallet_api.posting.writer import KEY_RACE_ATTEMPTS, Writer
from wallet_api.posting.writer import Outcome as EntryOutcome
from wallet_api.wallets import repository
from wallet_api.wallets.currencies import WalletCurrencies
from wallet_api.wallets.cursors import MAX_LEDGER_ID
from wallet_api.wallets.exceptions import (
    BalanceLimitExceeded,
    InsufficientFunds,
    TimeInTheFuture,
    WalletNotFound,
)
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.operations import (
    Applied,
    Atomic,
    Operation,
    Outcome,
    atomic_outcome,
    atomic_response,
    entry_of,
    outcome_of,
)
from wallet_api.wallets.owners import WalletOwners
from wallet_api.wallets.schemas import created_body

logger = logging.getLogger(__name__)

#: Keys deleted per purge statement.
PURGE_BATCH = 1000
#: Ledger rows a history page filtered by kind examines at most (a page of a rare kind
#: on a long ledger is short, not a scan of the whole ledger: a few milliseconds).
HISTORY_EXAMINE = 2000
#: The `outcome` label of `wallet_operations_total`: applied, replayed, or why not.
OPERATION_OUTCOMES = (
    "applied",
    "replayed",
    *(
        error.code
        for error in (
            InsufficientFunds,
            BalanceLimitExceeded,
            WalletNotFound,
            IdempotencyKeyReused,
            WalletBusy,
            DatabaseUnavailable,
            ServiceUnavailable,
            OutcomeUnknown,
            InternalError,
        )
    ),
    "error",  # an exception that is not one of ours (answered by the error handlers)
)


class WalletService:
    """Creates wallets, reads balances, applies operations (batched unless disabled)."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        #: The posting engine's writer, for every entry of this process (its remembered
        #: balances serve transfers and operations alike).
        self.writer = Writer(database, events=settings.events_enabled)
        self._events = settings.events_enabled
        #: Whose each wallet is (checked for callers with an API key).
        self.owners = WalletOwners(database)
        #: Each wallet's currency (its amounts are read and shown in it).
        self.currencies = WalletCurrencies(database, settings.implicit_currency)
        self._writes: GroupCommitQueue[Entry, EntryOutcome] | None = None
        self._reads: GroupCommitQueue[None, int | None] | None = None
        if settings.coalescing_enabled:
            self._writes = GroupCommitQueue.configured(
                self._write_groups, settings, kind="write", interrupted=OutcomeUnknown
            )
            # Concurrent reads share queries: one for every wallet read meanwhile.
            self._reads = GroupCommitQueue.configured(
                self._read_groups,
                settings,
                kind="read",
                interrupted=lambda: DatabaseUnavailable("The balance could not be read."),
            )
        # Every series an alert may watch exists from the start, at zero.
        declare_operation_outcomes([kind.value for kind in OperationType], OPERATION_OUTCOMES)

    async def create_wallet(
        self,
        *,
        owner: str | None = None,
        currency: str | None = None,
        metadata: str | None = None,
        idempotency_key: str | None = None,
        fingerprint: str = "",
    ) -> tuple[UUID, Currency] | Replay:
        """Create a wallet of `owner` in `currency` (ISO 4217, validated; None:
        DEFAULT_CURRENCY), with `metadata` (JSON text); with a key, only the first request
        with that key does."""
        of_wallet = self.currencies.currency(currency or self.currencies.default.code)
        for attempt in range(KEY_RACE_ATTEMPTS):
            if idempotency_key is not None:
                stored = await self._stored_responses({idempotency_key})
                if idempotency_key in stored:
                    replayed = replay(stored[idempotency_key], fingerprint)
                    if isinstance(replayed, AppError):
                        raise replayed
                    IDEMPOTENT_REPLAYS.labels("create_wallet").inc()
                    return replayed
            wallet_id = uuid.uuid4()
            try:
                async with committing(self._database) as commit:
                    commit.sent = True  # one statement: it writes and commits
                    await repository.insert_wallet(
                        commit.connection,
                        wallet_id,
                        owner=owner,
                        currency=of_wallet,
                        metadata=metadata,
                        key=idempotency_key,
                        fingerprint=fingerprint,
                        body=created_body(wallet_id, of_wallet, metadata),
                        event=self._events,
                    )
            except UniqueViolation as exc:
                if attempt + 1 < KEY_RACE_ATTEMPTS and is_key_conflict(exc):
                    continue
                raise
            self.owners.remember(wallet_id, owner)
            self.currencies.remember(wallet_id, of_wallet)
            return wallet_id, of_wallet
        raise AssertionError("unreachable")

    async def _stored_responses(self, keys: set[str]) -> dict[str, StoredResponse]:
        async with self._database.autocommit() as connection:
            return await posting.stored_responses(connection, keys)

    async def get_balance(
        self, wallet_id: UUID, *, owner: str | None = None
    ) -> tuple[int, Currency]:
        if not self.owners.surely_owns(owner, wallet_id):
            await self.owners.check(owner, wallet_id)
        currency = await self.currencies.of_wallet(wallet_id)
        if self._reads is not None:
            balance = await self._reads.submit(wallet_id, None)
        else:
            (balance,) = (await self._read_groups([(wallet_id, [None])]))[0]
        if balance is None:
            raise WalletNotFound(wallet_id)
        return balance, currency

    async def get_balances(
        self, wallet_id: UUID, *, owner: str | None = None
    ) -> tuple[int, int, Currency, str | None]:
        """The wallet's balance and what its holds set aside now, in its currency, and its
        metadata (JSON text)."""
        await self.owners.check(owner, wallet_id)
        currency = await self.currencies.of_wallet(wallet_id)
        async with self._database.autocommit() as connection:
            found = await repository.balances(connection, wallet_id)
        if found is None:
            raise WalletNotFound(wallet_id)
        balance, held, metadata = found
        return balance, held, currency, metadata

    async def _currency_to_judge(self, owner: str | None, wallet_id: UUID) -> tuple[Currency, bool]:
        """The currency an amount sent for the wallet is read in, and whether `owner` may
        touch the wallet. Another owner's wallet, or none, is refused as an unknown one
        (404) after its amount is read in DEFAULT_CURRENCY, as before currencies existed:
        what a refusal says never depends on such a wallet's currency."""
        if not self.owners.surely_owns(owner, wallet_id) and await self.owners.foreign(
            owner, (wallet_id,)
        ):
            return self.currencies.default, False
        currency = self.currencies.remembered(wallet_id) or await self.currencies.one(wallet_id)
        if currency is None:
            return self.currencies.default, False
        return currency, True

    async def _write_groups(
        self, groups: Sequence[Group[Entry]], settle: Settle[EntryOutcome]
    ) -> list[list[EntryOutcome]]:
        return await self.writer.apply(groups, on_settled=settle)

    async def _read_groups(
        self, groups: Sequence[Group[None]], _: object = None
    ) -> list[list[int | None]]:
        """One query for every wallet of the batch; each reader gets its wallet's balance."""
        async with self._database.autocommit() as connection:
            balances = await repository.read_balances(connection, [wallet for wallet, _ in groups])
        return [[balances.get(wallet_id)] * len(readers) for wallet_id, readers in groups]

    async def apply_operation(
        self, wallet_id: UUID, operation: Operation, *, owner: str | None = None
    ) -> Applied | Replay:
        """Apply one operation to a wallet of `owner`; return the balance right after it
        (or the replay of the earlier request with its key), or raise its refusal."""
        kind = operation.kind.value
        try:
            currency, reachable = await self._currency_to_judge(owner, wallet_id)
            entry = entry_of(wallet_id, operation, currency)
            if not reachable:
                raise WalletNotFound(wallet_id)
            if self._writes is not None:
                posted = await self._writes.submit(wallet_id, entry)
            else:
                # The classic way, one row-locking transaction per operation: concurrent
                # operations on one wallet would mostly lose optimistic races to each other.
                posted = await self.writer.apply_one(wallet_id, entry, optimistic=False)
            outcome = outcome_of(entry.legs[0], posted, currency)
        except ValidationFailed:
            raise  # a malformed request, as one refused before the service: not an outcome
        except AppError as error:
            operation_outcomes(kind, error.code).inc()
            raise
        except Exception:
            operation_outcomes(kind, "error").inc()
            raise
        _count(kind, outcome)
        if isinstance(outcome, AppError):
            raise outcome
        return outcome

    async def apply_many(
        self,
        items: Sequence[tuple[UUID, Operation]],
        *,
        owner: str | None = None,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> tuple[list[Outcome], bool]:
        """Apply each item as the single endpoint would; the outcomes in the items' order,
        and whether the answer is a replay (`Idempotent-Replayed: true`).

        The items are written together, one batch for the whole request (each wallet's in
        order) when possible. What that batch committed keeps its outcomes; if it then
        fails for a reason of its own, the rest apply one at a time (each wallet's in
        order), so only the one that broke it fails; an outage answers the rest with the
        error. A wallet whose row another transaction holds past the lock timeout fails
        the statement it is in (nothing of it applied): the wallets not settled are then
        written again in halves, as the group-commit queue splits a batch, until the held
        ones are alone; each operation of those is answered 503 `wallet_busy`, as the
        single endpoint answers it, and the others apply. With a key, the key is claimed
        first (a key of another request is refused), and each item gets a key of its own
        derived from it (`KEY #index`, with a space no client key can hold): a retry
        replays what was applied and applies what was not.

        The answer is a replay only when the key's request was seen before and nothing is
        judged for the first time now: every item's outcome is the one stored for it, or
        a `wallet_not_found` (never stored: a missing or another owner's wallet is refused
        alike on every try). A retry that applies or refuses any item for the first time
        (its first try was cut off after claiming the key, or half-way) is not a replay,
        even if some of its items are: the header would tell the client that nothing
        happened now.
        """
        # Each item is checked on its own: one on another owner's wallet is refused as
        # on an unknown wallet, the others apply. Every amount is read in its wallet's
        # currency before anything is claimed or written: one that is not an amount of
        # it refuses the request (422), which changes nothing.
        foreign = await self.owners.foreign(owner, {wallet_id for wallet_id, _ in items})
        currencies = await self._currencies_of(items, foreign)
        self._entries_of(items, currencies)
        first_request = True
        if idempotency_key is not None:
            first_request = await self._claim_key(idempotency_key, fingerprint)
            items = [
                (
                    wallet_id,
                    replace(
                        operation,
                        idempotency_key=f"{idempotency_key} #{index}",
                        fingerprint=idempotency.fingerprint("ITEM", str(index), fingerprint),
                    ),
                )
                for index, (wallet_id, operation) in enumerate(items)
            ]
        outcomes: list[Outcome | None] = [None] * len(items)
        places: dict[UUID, list[int]] = {}
        for index, (wallet_id, _) in enumerate(items):
            if wallet_id in foreign:
                outcomes[index] = WalletNotFound(wallet_id)
            else:
                places.setdefault(wallet_id, []).append(index)
        settled: list[int] = []

        def settle(wallet_id: UUID, wallet_outcomes: Sequence[Outcome]) -> None:
            indexes = places[wallet_id]
            settled.extend(indexes)
            for index, outcome in zip(indexes, wallet_outcomes, strict=True):
                outcomes[index] = outcome

        def held(wallet_id: UUID, cause: BaseException) -> None:
            indexes = places[wallet_id]
            settled.extend(indexes)
            for index in indexes:
                outcomes[index] = wallet_held(cause)
            log_unavailable(wallet_held(cause))  # one line for the wallet, as for a 503

        entries = self._entries_of(items, currencies)
        groups = [(w, [entries[i] for i in indexes]) for w, indexes in places.items()]
        of_wallet = {wallet_id: currencies[index] for index, (wallet_id, _) in enumerate(items)}
        try:
            if groups:
                await self._apply_around_held(groups, of_wallet, settle, held)
        except Exception as exc:
            # What committed before the failure keeps its outcomes; the rest is answered.
            left = {w: [i for i in indexes if outcomes[i] is None] for w, indexes in places.items()}
            left = {w: indexes for w, indexes in left.items() if indexes}
            if isinstance(exc, OutcomeUnknown) or is_transient_error(exc):
                if len(left) == len(places):
                    raise  # nothing of the request was applied, or all of it is unknown
                failure = _unknown if isinstance(exc, OutcomeUnknown) else _not_applied
                for indexes in left.values():
                    for index in indexes:
                        outcomes[index] = failure()
            else:
                logger.warning("a batch request failed, applying the rest one by one: %r", exc)
                await asyncio.gather(
                    *(self._one_by_one(items, indexes, outcomes) for indexes in left.values())
                )
        _count_all((items[index][1].kind.value, outcomes[index]) for index in settled)
        answered = [outcome for outcome in outcomes if outcome is not None]
        replayed = not first_request and all(
            isinstance(outcome, Replay | WalletNotFound) for outcome in answered
        )
        return answered, replayed

    async def _currencies_of(
        self, items: Sequence[tuple[UUID, Operation]], foreign: Collection[UUID]
    ) -> list[Currency]:
        """The currency each item's amount is read in (`_currency_to_judge`): its
        wallet's, or for another owner's or an unknown wallet DEFAULT_CURRENCY."""
        found = await self.currencies.of(
            {wallet_id for wallet_id, _ in items if wallet_id not in foreign}
        )
        default = self.currencies.default
        return [
            default if wallet_id in foreign else found.get(wallet_id, default)
            for wallet_id, _ in items
        ]

    @staticmethod
    def _entries_of(
        items: Sequence[tuple[UUID, Operation]], currencies: Sequence[Currency]
    ) -> list[Entry]:
        """The items as entries, their amounts in minor units of `currencies`; or 422
        `validation_error` naming every item whose amount is not one of its currency's."""
        entries: list[Entry] = []
        errors: list[Mapping[str, Any]] = []
        for index, ((wallet_id, operation), currency) in enumerate(
            zip(items, currencies, strict=True)
        ):
            try:
                entries.append(
                    entry_of(
                        wallet_id, operation, currency, ("body", "operations", index, "amount")
                    )
                )
            except ValidationFailed as error:
                errors.extend(error.errors)
        if errors:
            detail = "; ".join(error_text(error) for error in errors)
            raise ValidationFailed(detail, errors=errors)
        return entries

    async def _apply_around_held(
        self,
        groups: Sequence[tuple[UUID, Sequence[Entry]]],
        currencies: Mapping[UUID, Currency],
        settle: Callable[[UUID, Sequence[Outcome]], None],
        held: Callable[[UUID, BaseException], None],
    ) -> None:
        """Write `groups` (one per wallet); if a statement gave up waiting for a row lock
        another transaction holds, write the groups not settled again in two halves, each
        on its own, down to the held wallets alone, which go to `held`. One lock timeout
        per try: a held wallet costs about log2(wallets) of them, one after the other, as
        in the group-commit queue's split."""
        done: set[UUID] = set()
        legs = {wallet_id: [entry.legs[0] for entry in entries] for wallet_id, entries in groups}

        def settled(wallet_id: UUID, outcomes: Sequence[EntryOutcome]) -> None:
            done.add(wallet_id)
            settle(
                wallet_id,
                [
                    outcome_of(leg, outcome, currencies[wallet_id])
                    for leg, outcome in zip(legs[wallet_id], outcomes, strict=True)
                ],
            )

        try:
            await self.writer.apply(groups, optimistic=self._writes is not None, on_settled=settled)
        except Exception as exc:
            if not is_lock_timeout(exc):
                raise
            left = [(wallet_id, ops) for wallet_id, ops in groups if wallet_id not in done]
            if len(left) == 1:
                held(left[0][0], exc)
                return
            middle = len(left) // 2
            for half in (left[:middle], left[middle:]):
                await self._apply_around_held(half, currencies, settle, held)

    async def _one_by_one(
        self,
        items: Sequence[tuple[UUID, Operation]],
        indexes: list[int],
        outcomes: list[Outcome | None],
    ) -> None:
        """One wallet's items, in order, each as the single endpoint applies it."""
        for index in indexes:
            outcomes[index] = await self._apply_one(*items[index])

    async def _apply_one(self, wallet_id: UUID, operation: Operation) -> Outcome:
        try:
            return await self.apply_operation(wallet_id, operation)
        except AppError as error:
            return error

    async def apply_all_or_none(
        self,
        items: Sequence[tuple[UUID, Operation]],
        *,
        owner: str | None = None,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> Atomic | Replay:
        """Apply every item or none (see `Writer.apply_atomic`); with a key, a retry gets
        the stored response. Raises IdempotencyKeyReused for a key used by another
        request."""
        foreign = await self.owners.foreign(owner, {wallet_id for wallet_id, _ in items})
        currencies = await self._currencies_of(items, foreign)
        entries = self._entries_of(items, currencies)
        judged = await self.writer.apply_atomic(
            entries,
            key=idempotency_key,
            fingerprint=fingerprint,
            render=lambda outcomes: atomic_response(atomic_outcome(entries, currencies, outcomes)),
            unknown=foreign,
        )
        if isinstance(judged, AppError):
            raise judged
        if isinstance(judged, Replay):
            return judged
        result = atomic_outcome(entries, currencies, judged)
        if isinstance(result, list):
            _count_all(
                (operation.kind.value, balance)
                for (_, operation), balance in zip(items, result, strict=True)
            )
        return result

    async def _claim_key(self, key: str, fingerprint: str) -> bool:
        """Claim `key` for this request: true if it is the key's first request; raise
        IdempotencyKeyReused if another request used it."""
        async with self._database.autocommit() as connection:
            for _ in range(KEY_RACE_ATTEMPTS):
                if await posting.claim_key(
                    connection, key, fingerprint=fingerprint, status=202, body=""
                ):
                    return True
                stored = await posting.stored_responses(connection, {key})
                if key in stored:  # else purged meanwhile (past its retention): claim again
                    if stored[key].fingerprint != fingerprint:
                        raise IdempotencyKeyReused()
                    return False
        raise AssertionError("unreachable: a key cannot keep vanishing")

    async def history(
        self,
        wallet_id: UUID,
        *,
        owner: str | None = None,
        limit: int,
        before_id: int | None,
        kinds: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: dict[str, str] | None = None,
    ) -> tuple[list[repository.LedgerEntry], int | None, Currency]:
        """A page of the wallet's ledger, newest first, the id the next page starts below
        (None on the last page), and the wallet's currency. Keyset pagination: stable
        while rows are added.

        Filtered by kind (`kinds`), a page examines at most HISTORY_EXAMINE rows: when
        fewer than `limit` of those are of the kinds asked for, it is short (even empty),
        and the next starts below the rows it examined. Dated in [`since`, `until`). With
        `metadata` (a key and its value), only the rows whose metadata holds it: found
        through the metadata's index, every one of them examined."""
        if not self.owners.surely_owns(owner, wallet_id):
            await self.owners.check(owner, wallet_id)
        if metadata is not None:
            examine = MAX_LEDGER_ID
            connect = self._database.autocommit
        else:
            examine = limit + 1 if kinds is None else max(limit + 1, HISTORY_EXAMINE)
            connect = self._database.in_index_order
        async with connect() as connection:
            page = await repository.history(
                connection,
                wallet_id,
                before_id=before_id if before_id is not None else MAX_LEDGER_ID,
                limit=limit + 1,
                examine=examine,
                kinds=kinds,
                since=since,
                until=until,
                metadata=metadata_text(metadata),
            )
            if not page.examined and not await repository.wallet_exists(connection, wallet_id):
                raise WalletNotFound(wallet_id)
        currency = await self.currencies.of_wallet(wallet_id)
        entries = page.entries
        if len(entries) > limit:
            return entries[:limit], entries[limit - 1].id, currency
        if page.examined == examine and page.lowest is not None:
            return entries, page.lowest, currency
        return entries, None, currency

    async def balance_at(
        self, wallet_id: UUID, at: datetime, *, owner: str | None = None
    ) -> tuple[int, Currency]:
        """The wallet's balance after its last entry dated at or before `at` (0 before
        its first), in its currency: refused for a time later than the database's clock."""
        await self.owners.check(owner, wallet_id)
        async with self._database.autocommit() as connection:
            balance, found, later = await repository.balance_at(connection, wallet_id, at)
        if not found:
            raise WalletNotFound(wallet_id)
        if later:
            raise TimeInTheFuture(at)
        return balance or 0, await self.currencies.of_wallet(wallet_id)

    async def purge_idempotency_keys(self, *, older_than_seconds: int) -> int:
        """Delete the keys older than the retention, a bounded batch per statement."""
        purged = 0
        while True:
            async with self._database.autocommit() as connection:
                count = await repository.purge_idempotency_keys(
                    connection, older_than_seconds=older_than_seconds, batch=PURGE_BATCH
                )
            purged += count
            if count < PURGE_BATCH:
                return purged

    async def verify_ledger(self) -> repository.LedgerReport:
        async with self._database.autocommit() as connection:
            return await repository.verify_ledger(connection)

    async def purge_keys_periodically(self, *, older_than_seconds: int, every: float) -> None:
        """Run until cancelled: purge expired idempotency keys every `every` seconds."""
        while True:
            await asyncio.sleep(every)
            try:
                purged = await self.purge_idempotency_keys(older_than_seconds=older_than_seconds)
            except Exception:
                logger.warning("purging idempotency keys failed; will retry", exc_info=True)
            else:
                if purged:
                    logger.info("purged %d expired idempotency keys", purged)

    def queue_depths(self) -> dict[str, int]:
        """Requests waiting in this process's per-wallet queues, by kind (write, read)."""
        return {
            queue.kind: queue.queue_depth()
            for queue in (self._writes, self._reads)
            if queue is not None
        }

    async def close(self) -> None:
        """Finish every queued operation (used on shutdown)."""
        for queue in (self._writes, self._reads):
            if queue is not None:
                await queue.close()
        await self.owners.close()
        await self.currencies.close()


def _count(kind: str, outcome: Outcome) -> None:
    """Count an operation's outcome (wallet_operations_total)."""
    _count_series(kind, _label(outcome), 1)


def _count_all(outcomes: Iterable[tuple[str, Outcome | None]]) -> None:
    """Count operations' outcomes (wallet_operations_total), each series once."""
    tally = Counter((kind, label) for kind, outcome in outcomes if (label := _label(outcome)))
    for (kind, label), count in tally.items():
        _count_series(kind, label, count)


def _label(outcome: Outcome | None) -> str:
    """An outcome's label in wallet_operations_total ("" for none: not counted)."""
    if isinstance(outcome, AppError):
        return outcome.code
    if isinstance(outcome, Replay):
        return "replayed"
    return "" if outcome is None else "applied"


def _count_series(kind: str, label: str, count: int) -> None:
    operation_outcomes(kind, label).inc(count)
    if label == "replayed":
        IDEMPOTENT_REPLAYS.labels("operation").inc(count)


def _unknown() -> AppError:
    return OutcomeUnknown()


def _not_applied() -> AppError:
    return DatabaseUnavailable("The database is unavailable; the operation was not applied.")
