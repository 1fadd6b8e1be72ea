"""Holds: the flows of their requests, over the posting engine (posting/): who may touch
a hold, reading it, submitting its entry (built in `entries.py`), answering the outcome,
and the sweep that releases expired ones.

The engine judges each entry under the hold's row lock, on the hold as it is then:
closed, expired (by the database's clock), or asked for more than it holds, the request
is refused and nothing changes. A capture or a void is built from the hold as read; if
the hold changed meanwhile, it is read and built again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from uuid import UUID

from wallet_api.core.config import Settings
from wallet_api.core.database import Database
from wallet_api.core.errors import AppError, OutcomeUnknown, ValidationFailed, WalletBusy
from wallet_api.core.fields import minor_units
from wallet_api.core.idempotency import IdempotencyKeyReused, Replay, replay
from wallet_api.core.metrics import declare_operation_outcomes, operation_outcomes
from wallet_api.holds import repository
from wallet_api.holds.entries import (
    capture_entry,
    capture_error,
    hold_entry,
    hold_error,
    read_document,
    release_entry,
    respond_capture,
    respond_hold,
    respond_taken,
    void_entry,
)
from wallet_api.holds.exceptions import CLOSED, HoldNotFound
from wallet_api.holds.reader import HoldReader
from wallet_api.holds.repository import HoldRow
from wallet_api.holds.schemas import CaptureRequest, HoldRequest, render
from wallet_api.posting.entries import ACTIVE, Entry, Posted, Refusal, Shortfall
from wallet_api.posting.queue import Group, GroupCommitQueue, Settle
from wallet_api.posting.repository import stored_responses
from wallet_api.posting.writer import Outcome, Writer, outcome_label
from wallet_api.wallets import repository as wallets
from wallet_api.wallets.currencies import WalletCurrencies
from wallet_api.wallets.cursors import MAX_LEDGER_ID
from wallet_api.wallets.exceptions import CurrencyMismatch, WalletNotFound
from wallet_api.wallets.owners import WalletOwners

logger = logging.getLogger(__name__)

#: The `operation` label of holds in wallet_operations_total, by request.
METRIC_KINDS = ("HOLD", "CAPTURE", "VOID")
#: Tries of a capture or a void whose hold another capture changed after it was read.
CHANGED_ATTEMPTS = 5
#: Holds released per statement by the expiry sweep.
SWEEP_BATCH = 500


class HoldService:
    """Creates, captures, voids and reads holds; releases expired ones."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        owners: WalletOwners,
        currencies: WalletCurrencies,
        writer: Writer,
    ) -> None:
        self._database = database
        self._owners = owners
        self._currencies = currencies
        self._writer = writer
        self._reader = HoldReader(database)
        self._queue: GroupCommitQueue[Entry, Outcome] | None = None
        if settings.coalescing_enabled:
            # One lane per hold's wallet: a wallet's hold requests keep their order; a
            # batch spans many wallets, one transaction for all of them.
            self._queue = GroupCommitQueue.configured(
                self._write_groups, settings, kind="hold", interrupted=OutcomeUnknown
            )
        declare_operation_outcomes(METRIC_KINDS, ["applied", "replayed"])

    async def create(
        self,
        request: HoldRequest,
        *,
        owner: str | None = None,
        api_key_id: str | None = None,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> tuple[UUID, str] | Replay:
        """Hold the amount on a wallet of `owner`: the new hold's id and body (201), or
        the replay of the key's first request. Refused (400 `insufficient_funds`) when
        the wallet's available balance does not cover it."""
        wallet_id = request.wallet_uuid
        default = self._currencies.default
        if wallet_id in await self._owners.foreign(owner, (wallet_id,)):
            # Its amount read in DEFAULT_CURRENCY, then refused as an unknown wallet: what
            # the refusal says never depends on another owner's wallet's currency.
            minor_units(request.amount, default, ("body", "amount"))
            _count("HOLD", WalletNotFound(wallet_id))
            raise WalletNotFound(wallet_id)
        # A wallet that does not exist: read in DEFAULT_CURRENCY, refused by the engine
        # (which keeps that refusal for the request's Idempotency-Key).
        currency = await self._currencies.one(wallet_id) or default
        amount = minor_units(request.amount, currency, ("body", "amount"))
        hold_id = uuid.uuid4()
        entry = hold_entry(
            request, hold_id, currency, amount, key=(idempotency_key, fingerprint, api_key_id)
        )
        outcome = await self._settled(
            "HOLD", wallet_id, entry, partial(hold_error, request, currency, amount)
        )
        assert outcome is not None  # a new hold changes under no one
        if isinstance(outcome, Replay):
            return outcome
        return hold_id, respond_hold(request, hold_id, currency, amount, outcome)[1]

    async def capture(
        self,
        hold_id: UUID,
        request: CaptureRequest,
        *,
        owner: str | None = None,
        api_key_id: str | None = None,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> str | Replay:
        """Take all or part of what a hold of `owner` still holds, to a payee or out of
        the service; with `final`, release the rest and close it. The hold's body (200)."""
        replayed = await self._replay("CAPTURE", idempotency_key, fingerprint)
        if replayed is not None:
            return replayed
        for _ in range(CHANGED_ATTEMPTS):
            hold = await self._open_hold("CAPTURE", hold_id, owner)
            payee = request.to_wallet_uuid
            if payee == hold.wallet_id:
                raise ValidationFailed(
                    "to_wallet_uuid must be another wallet than the hold's.",
                    errors=[{"loc": ["body", "to_wallet_uuid"], "message": "the hold's own"}],
                )
            hidden = await self._owners.foreign(owner, () if payee is None else (payee,))
            currencies = await self._currencies.of(
                (hold.wallet_id,) if payee is None else (hold.wallet_id, payee)
            )
            currency = currencies[hold.wallet_id]
            payee_currency = None if payee is None else currencies.get(payee)
            if payee_currency is not None and payee_currency.code != currency.code:
                assert payee is not None
                raise CurrencyMismatch(payee, payee_currency.code, hold.wallet_id, currency.code)
            entry = capture_entry(
                hold,
                request,
                currency,
                hidden=payee in hidden,
                key=(idempotency_key, fingerprint, api_key_id),
            )
            outcome = await self._settled(
                "CAPTURE",
                hold.wallet_id,
                entry,
                partial(capture_error, hold, currency, legs=entry.legs),
            )
            if outcome is not None:
                return (
                    outcome
                    if isinstance(outcome, Replay)
                    else respond_capture(hold, request, currency, outcome, hidden=payee in hidden)[
                        1
                    ]
                )
        raise WalletBusy("The hold kept changing while it was captured; retry shortly.")

    async def void(
        self,
        hold_id: UUID,
        *,
        owner: str | None = None,
        api_key_id: str | None = None,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> str | Replay:
        """Release all a hold of `owner` still holds and close it. The hold's body."""
        replayed = await self._replay("VOID", idempotency_key, fingerprint)
        if replayed is not None:
            return replayed
        for _ in range(CHANGED_ATTEMPTS):
            hold = await self._open_hold("VOID", hold_id, owner)
            currency = await self._currencies.of_wallet(hold.wallet_id)
            entry = void_entry(hold, currency, key=(idempotency_key, fingerprint, api_key_id))
            outcome = await self._settled(
                "VOID", hold.wallet_id, entry, partial(capture_error, hold, currency)
            )
            if outcome is not None:
                if isinstance(outcome, Replay):
                    return outcome
                return respond_taken(hold, currency, outcome)[1]
        raise WalletBusy("The hold kept changing while it was voided; retry shortly.")

    async def get(self, hold_id: UUID, *, owner: str | None = None) -> str:
        """A hold of `owner`, as it is now."""
        hold = await self._hold_of(owner, hold_id)
        currency = await self._currencies.of_wallet(hold.wallet_id)
        return render(read_document(hold, currency))

    async def wallet_holds(
        self,
        wallet_id: UUID,
        *,
        owner: str | None = None,
        status: str | None,
        limit: int,
        before: int | None,
    ) -> tuple[list[str], int | None]:
        """A page of a wallet's holds, newest first, and where the next page starts."""
        await self._owners.check(owner, wallet_id)
        async with self._database.autocommit() as connection:
            rows = await repository.wallet_holds(
                connection,
                wallet_id,
                before=before if before is not None else MAX_LEDGER_ID,
                status=status,
                limit=limit + 1,
            )
            if not rows and not await wallets.wallet_exists(connection, wallet_id):
                raise WalletNotFound(wallet_id)
        following = rows[limit - 1].seq if len(rows) > limit else None
        currency = await self._currencies.of_wallet(wallet_id)
        return [render(read_document(row, currency)) for row in rows[:limit]], following

    async def release_expired(self) -> int:
        """Release every hold that has expired (bounded statements); how many."""
        released = 0
        while True:
            count = await self._writer.release_expired(SWEEP_BATCH, release_entry)
            released += count
            if count < SWEEP_BATCH:
                return released

    async def release_expired_periodically(self, *, every: float) -> None:
        """Run until cancelled: release expired holds every `every` seconds. Its delay
        changes no answer: an expired hold stops counting, and can no longer be captured,
        at its expiry, whether or not its release has been written."""
        while True:
            await asyncio.sleep(every)
            try:
                released = await self.release_expired()
            except Exception:
                logger.warning("releasing expired holds failed; will retry", exc_info=True)
            else:
                if released:
                    logger.info("released %d expired holds", released)

    def queue_depths(self) -> dict[str, int]:
        return {} if self._queue is None else {self._queue.kind: self._queue.queue_depth()}

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.close()

    async def _write_groups(
        self, groups: Sequence[Group[Entry]], settle: Settle[Outcome]
    ) -> list[list[Outcome]]:
        return await self._writer.apply(groups, on_settled=settle)

    async def _replay(self, kind: str, key: str | None, fingerprint: str) -> Replay | None:
        """The answer kept for the key of a capture or a void, if it was used before: the
        hold read now may be closed by that very request (raises IdempotencyKeyReused for
        a key of another request)."""
        if key is None:
            return None
        async with self._database.autocommit() as connection:
            stored = await stored_responses(connection, {key})
        if key not in stored:
            return None
        replayed = replay(stored[key], fingerprint)
        _count(kind, replayed)
        if isinstance(replayed, IdempotencyKeyReused):
            raise replayed
        return replayed

    async def _hold_of(self, owner: str | None, hold_id: UUID) -> HoldRow:
        """The hold as it is now, if it is `owner`'s; another owner's is a missing one."""
        hold = await self._reader.read(hold_id)
        if hold is None or hold.wallet_id in await self._owners.foreign(owner, (hold.wallet_id,)):
            raise HoldNotFound(hold_id)
        return hold

    async def _open_hold(self, kind: str, hold_id: UUID, owner: str | None) -> HoldRow:
        """The hold as it is now, if `owner` may take from it and it is open."""
        try:
            hold = await self._hold_of(owner, hold_id)
            if hold.status != ACTIVE:
                raise CLOSED[hold.status](hold_id)
        except AppError as error:
            _count(kind, error)
            raise
        return hold

    async def _settled(
        self,
        kind: str,
        lane: UUID,
        entry: Entry,
        error_of: Callable[[Refusal], AppError],
    ) -> Posted | Replay | None:
        """Submit the entry; its outcome, or None when its hold changed after it was read
        (the caller reads it again); a refusal raised as its problem."""
        try:
            if self._queue is not None:
                outcome = await self._queue.submit(lane, entry)
            else:  # one transaction holding the rows' locks, as COALESCING_ENABLED=false says
                outcome = await self._writer.apply_one(lane, entry, optimistic=False)
        except AppError as error:
            _count(kind, error)
            raise
        if isinstance(outcome, Refusal):
            if outcome.reason is Shortfall.HOLD_CHANGED:
                return None
            refused = error_of(outcome)
            _count(kind, refused)
            raise refused
        _count(kind, outcome)
        if isinstance(outcome, AppError):
            raise outcome
        return outcome


def _count(kind: str, outcome: Posted | Replay | AppError | IdempotencyKeyReused) -> None:
    operation_outcomes(kind, outcome_label(outcome)).inc()
