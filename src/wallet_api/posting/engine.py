"""The write path of entries (transfers, reversals): a batch in one locking transaction.

`EntryWriter.apply` takes a batch of entries and returns each one's outcome, in one
transaction: the Idempotency-Keys looked up; the rows of every wallet the batch touches
locked in id order (the order every writer of this service locks them in, so that no two
transactions wait for each other in a cycle); the entries judged in order on the exact
balances (`entries.plan_entries`, pure); everything written in one statement; committed.
Outcomes are returned only after the commit. A key stored meanwhile by another
transaction, or a transaction the database aborted to break a deadlock, makes the batch
run again; a commit whose outcome cannot be known raises OutcomeUnknown.

The group-commit queue (`queue.py`) hands it batches of concurrent requests, one group
per source wallet: one transaction and one commit for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

import asyncpg

from wallet_api.core.database import Database, is_aborted, is_key_conflict, is_lock_timeout
from wallet_api.core.errors import AppError, WalletBusy
from wallet_api.core.idempotency import IdempotencyKeyReused, Replay, StoredResponse, replay
from wallet_api.posting import repository
from wallet_api.posting.commit import committing
from wallet_api.posting.entries import (
    Entry,
    Posted,
    RangePlan,
    Refusal,
    plan_entries,
    plan_in_range,
    posted_in_range,
)
from wallet_api.posting.queue import Group, Settle

logger = logging.getLogger(__name__)

#: What became of an entry: applied, refused, or the outcome stored for its key.
EntryOutcome = Posted | Refusal | Replay | IdempotencyKeyReused
#: Runs of a batch: a key stored meanwhile, or an abort by the database, runs it again.
ATTEMPTS = 4
#: The unique index that keeps an entry's reversal single (the migration's, models.py's).
REVERSAL_INDEX = "uq_wallet_operations_reverses_id"


class EntryWriter:
    """Applies batches of entries, each whole or not at all (see the module docstring)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def apply(self, entries: Sequence[Entry]) -> list[EntryOutcome]:
        """One outcome per entry, in order, once they are committed. Database errors are
        raised as they are (the queue tells a lock timeout from a failure by them)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._apply(entries)
            except asyncpg.PostgresError as exc:
                if attempt == ATTEMPTS or not _runs_again(exc):
                    raise
                logger.warning("batch of %d entries ran into %r; again", len(entries), exc)
        raise AssertionError("unreachable")

    async def apply_one(self, entry: Entry) -> EntryOutcome:
        """`apply` for one entry outside the queue: a wallet held by another transaction
        past the lock timeout is answered 503 `wallet_busy`, as the queue answers it."""
        try:
            (outcome,) = await self.apply([entry])
        except asyncpg.PostgresError as exc:
            if is_lock_timeout(exc):
                raise WalletBusy(
                    "Another transaction holds a wallet of it; it was not applied. Retry shortly."
                ) from exc
            raise
        return outcome

    async def apply_groups(
        self, groups: Sequence[Group[Entry]], settle: Settle[EntryOutcome]
    ) -> list[list[EntryOutcome]]:
        """`apply` for the group-commit queue: one transaction for all the groups."""
        outcomes = await self.apply([entry for _, entries in groups for entry in entries])
        grouped, start = [], 0
        for _, entries in groups:
            grouped.append(outcomes[start : start + len(entries)])
            start += len(entries)
        return grouped

    async def _apply(self, entries: Sequence[Entry]) -> list[EntryOutcome]:
        if all(_plain(entry) for entry in entries):
            posted = await self._apply_in_range(entries)
            if posted is not None:
                return list(posted)
        return await self._apply_locked(entries)

    async def _apply_in_range(self, entries: Sequence[Entry]) -> list[Posted] | None:
        """The batch in one statement, its own commit, if every entry applies on the
        balances found (the common case: one round trip, as a batch of operations); None
        when one may be refused, or a wallet is missing: nothing was written, and the
        batch is judged under the rows' locks instead."""
        plan = plan_in_range(entries)
        if plan is None:
            return None
        write = range_write(entries, plan)
        async with committing(self._database) as commit:
            commit.sent = True  # one statement: it writes and commits
            found = await repository.write_entries_in_range(commit.connection, write)
        if found is None:
            return None
        starts, at = found
        return posted_in_range(entries, plan, starts, at)

    async def _apply_locked(self, entries: Sequence[Entry]) -> list[EntryOutcome]:
        async with committing(self._database, transaction=True) as commit:
            connection = commit.connection
            keys = {e.idempotency_key for e in entries if e.idempotency_key is not None}
            stored = await repository.stored_responses(connection, keys) if keys else {}
            wallets = sorted({leg.wallet_id for entry in entries for leg in entry.legs})
            balances, at = await repository.lock_wallets(connection, wallets)
            reversing = {leg.reverses for e in entries for leg in e.legs if leg.reverses}
            reversed_before = (
                await repository.reversed_rows(connection, reversing) if reversing else set()
            )
            outcomes: list[EntryOutcome | None] = [None] * len(entries)
            run: list[int] = []
            first_with_key: dict[str, int] = {}
            for index, entry in enumerate(entries):
                key = entry.idempotency_key
                if key is not None and key in stored:
                    outcomes[index] = replay(stored[key], entry.fingerprint)
                elif key is not None and key in first_with_key:
                    continue  # a repeat of a key first used in this batch: answered below
                else:
                    if key is not None:
                        first_with_key[key] = index
                    run.append(index)
            planned = plan_entries(
                balances,
                [entries[index] for index in run],
                reversed_before=reversed_before,
                at=at,
            )
            write = repository.EntriesWrite()
            final: dict[UUID, int] = {}
            rendered: dict[int, tuple[int, str]] = {}
            for index, outcome in zip(run, planned, strict=True):
                entry = entries[index]
                outcomes[index] = outcome
                if isinstance(outcome, Posted):
                    _add_rows(write, entry, outcome)
                    for leg, balance in zip(entry.legs, outcome.balances, strict=True):
                        final[leg.wallet_id] = balance
                if entry.idempotency_key is not None:
                    rendered[index] = status, body = entry.render(outcome)
                    write.keys.append(entry.idempotency_key)
                    write.fingerprints.append(entry.fingerprint)
                    write.statuses.append(status)
                    write.bodies.append(body)
            for index, entry in enumerate(entries):
                if outcomes[index] is None:  # a repeat of a key first used in this batch
                    assert entry.idempotency_key is not None
                    first = first_with_key[entry.idempotency_key]
                    status, body = rendered[first]
                    outcomes[index] = replay(
                        StoredResponse(entries[first].fingerprint, status, body),
                        entry.fingerprint,
                    )
            write.wallets.extend(final)
            write.balances.extend(final.values())
            if write.row_wallets or write.keys:
                commit.sent = True  # from here on, the commit may land
                await repository.write_entries(connection, write)
        return [outcome for outcome in outcomes if outcome is not None]


def range_write(entries: Sequence[Entry], plan: RangePlan) -> repository.RangeWrite:
    """The one statement's arrays for a batch planned in range."""
    write = repository.RangeWrite(
        wallets=list(plan.wallets),
        lows=list(plan.lows),
        highs=list(plan.highs),
        deltas=list(plan.deltas),
        offsets=list(plan.offsets),
    )
    for entry in entries:
        for leg in entry.legs:
            write.row_wallets.append(leg.wallet_id)
            write.kinds.append(leg.kind.value)
            write.amounts.append(leg.amount)
            write.transfers.append(entry.transfer_id)
            write.counterparties.append(leg.counterparty)
            write.descriptions.append(entry.description)
            write.row_api_keys.append(entry.api_key_id)
    return write


def _plain(entry: Entry) -> bool:
    """An entry the one-statement path may write: no key to keep, nothing reversed."""
    return entry.idempotency_key is None and all(leg.reverses is None for leg in entry.legs)


def _runs_again(exc: asyncpg.PostgresError) -> bool:
    """A key or a reversal stored meanwhile by another transaction (the next run replays
    or refuses it), or a transaction the database aborted to break a deadlock."""
    return (
        is_key_conflict(exc)
        or is_aborted(exc)
        or getattr(exc, "constraint_name", None) == REVERSAL_INDEX
    )


def outcome_label(outcome: Posted | Replay | AppError) -> str:
    """An entry's outcome as the `outcome` label of wallet_operations_total."""
    if isinstance(outcome, AppError):
        return outcome.code
    return "replayed" if isinstance(outcome, Replay) else "applied"


def _add_rows(write: repository.EntriesWrite, entry: Entry, posted: Posted) -> None:
    for index, (leg, balance) in enumerate(zip(entry.legs, posted.balances, strict=True)):
        write.row_wallets.append(leg.wallet_id)
        write.kinds.append(leg.kind.value)
        write.amounts.append(leg.amount)
        write.balances_after.append(balance)
        # The key is the requester's: on the first leg's row (the payer's, for a
        # transfer), never shown in the other wallet's history.
        write.row_keys.append(entry.idempotency_key if index == 0 else None)
        write.row_api_keys.append(entry.api_key_id)
        write.transfers.append(entry.transfer_id)
        write.counterparties.append(leg.counterparty)
        write.reverses.append(leg.reverses)
        write.descriptions.append(entry.description)
