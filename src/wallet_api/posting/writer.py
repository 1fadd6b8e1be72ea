"""The writer: every movement of money reaches the database here.

`Writer.apply` takes what the group-commit queue (`queue.py`) hands it, one group of
entries per lane (a wallet), each group in arrival order, and returns each entry's
outcome. How:

1. Idempotency-Keys: a key first used in this batch runs; a repeat in the batch gets its
   outcome; a key stored before is replayed. Keys are not looked up first: a used key
   fails the statement (its unique index), and the batch is tried again with look-ups.
2. The batch is cut into parts that share no wallet (`plan.parts`: a transfer joins its
   two wallets), and each part is planned (`plan.py`, pure) on the balances this process
   last saw for its wallets; wallets it has not seen are planned on a balance at which
   every entry applies (no read first).
3. One statement writes every part whose wallets' balances still give its plan's
   decisions (each wallet within its range, or at the exact balance a kept refusal
   quotes), locking rows in id order, and reports what it found for the others. Only
   those are planned again, on what was found; after a few such races they run in a
   transaction that holds their row locks (the fallback; the path of every entry with
   coalescing off, of a reversal, of what takes from a hold (a capture, a release), and
   of a keyed entry whose response the statement cannot render: a new hold without a key
   is written by the statement, with its part). What the statements write is
   built from the plans in `rows.py`.

Nothing is acknowledged before its commit: outcomes are returned only after the statement
(or the transaction) committed. A commit whose outcome cannot be known raises
`OutcomeUnknown`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TypeVar
from uuid import UUID

import asyncpg

from wallet_api.core.database import (
    Connection,
    Database,
    UniqueViolation,
    is_aborted,
    is_key_conflict,
    is_lock_timeout,
)
from wallet_api.core.errors import AppError, DatabaseUnavailable, wallet_held
from wallet_api.core.idempotency import IdempotencyKeyReused, Replay, StoredResponse, replay
from wallet_api.posting import repository
from wallet_api.posting.commit import committing
from wallet_api.posting.entries import Entry, EntryKind, HoldState, Posted, Refusal
from wallet_api.posting.plan import (
    Judged,
    Plan,
    Span,
    hopeful_starts,
    kept,
    parts,
    plan,
)
from wallet_api.posting.rows import (
    Round,
    exact_write,
    judged_outcome,
    opened_holds,
    wallets_named,
)

logger = logging.getLogger(__name__)

#: What became of an entry: applied, refused, or the outcome stored for its key.
Outcome = Posted | Refusal | Replay | IdempotencyKeyReused
#: A lane (a wallet) and its entries, in arrival order.
Group = tuple[UUID, Sequence[Entry]]
#: Receives a lane's outcomes as soon as they are final (their write committed).
Settled = Callable[[UUID, list[Outcome]], None]

#: Statements tried before the parts that keep losing races fall back to a transaction
#: that holds their row locks.
OPTIMISTIC_ATTEMPTS = 3
#: Tries of a batch whose key (or reversed row) was used before or stored first by another
#: transaction: the first try does not look keys up, the next ones do and replay them.
KEY_RACE_ATTEMPTS = 4
#: Tries of a batch that the database aborted to break a deadlock or a serialization
#: conflict (none is expected: rows are locked in one order), before it fails.
ABORTED_ATTEMPTS = 3
#: A statement's writes (either family's).
_Write = TypeVar("_Write", repository.RangeWrite, repository.EntriesWrite)
#: Wallets whose last seen balance a process remembers (a guess, always verified).
KNOWN_BALANCES_LIMIT = 10_000
#: The unique index that keeps an entry's reversal single (the migration's, models.py's).
REVERSAL_INDEX = "uq_wallet_operations_reverses_id"


class Writer:
    """Applies batches of entries over many wallets (see the module's docstring)."""

    def __init__(self, database: Database, *, events: bool = True) -> None:
        self._database = database
        #: Whether the entries' events are written (EVENTS_ENABLED): off, none is.
        self._events = events
        #: Each wallet's last seen balance and what its holds set aside then.
        self._known_balances: OrderedDict[UUID, tuple[int, int]] = OrderedDict()

    async def apply(
        self,
        groups: Sequence[Group],
        *,
        optimistic: bool = True,
        on_settled: Settled | None = None,
    ) -> list[list[Outcome]]:
        """One outcome per entry of each group (one group per lane). Without
        `optimistic`, the batch runs in a transaction holding its rows' locks.

        A batch may commit in several statements (the parts that lost a race are written
        again, each in a round of its own): each lane's outcomes are handed to
        `on_settled` as soon as they are final, and a retry (a key used before, a
        deadlock) runs only the lanes not yet settled. If a later round fails, the
        exception propagates, and the settled lanes keep the outcomes already handed
        over: the caller must not run them again, nor answer them with the failure."""
        settled: dict[UUID, list[Outcome]] = {}

        def settle(lane: UUID, outcomes: list[Outcome]) -> None:
            settled[lane] = outcomes
            if on_settled is not None:
                on_settled(lane, outcomes)

        look_up = not optimistic  # a failure there would cost a whole transaction
        key_races = aborted = 0
        while remaining := [(lane, entries) for lane, entries in groups if lane not in settled]:
            try:
                await self._apply(remaining, optimistic=optimistic, look_up=look_up, settle=settle)
            except UniqueViolation as exc:
                # A key was used before, or another transaction stored it (or reversed the
                # row) first: the next try looks the keys up and replays them.
                key_races += 1
                if key_races < KEY_RACE_ATTEMPTS and _raced(exc):
                    look_up = True
                    continue
                raise
            except asyncpg.PostgresError as exc:
                aborted += 1
                if is_aborted(exc) and aborted < ABORTED_ATTEMPTS:
                    logger.warning("batch aborted by the database, retrying: %r", exc)
                    continue
                raise
        return [settled[lane] for lane, _ in groups]

    async def apply_one(self, lane: UUID, entry: Entry, *, optimistic: bool = True) -> Outcome:
        """`apply` for one entry outside the queue: a wallet held by another transaction
        past the lock timeout is answered 503 `wallet_busy`, as the queue answers it."""
        try:
            ((outcome,),) = await self.apply([(lane, [entry])], optimistic=optimistic)
        except asyncpg.PostgresError as exc:
            if is_lock_timeout(exc):
                raise wallet_held(exc) from exc
            raise
        return outcome

    async def _apply(
        self,
        groups: Sequence[Group],
        *,
        optimistic: bool,
        look_up: bool,
        settle: Settled,
    ) -> None:
        keys = {
            entry.idempotency_key
            for _, entries in groups
            for entry in entries
            if entry.idempotency_key is not None
        }
        stored = await self._stored_responses(keys) if keys and look_up else {}
        triage = _Triage(groups, stored)

        def record(results: dict[int, Outcome]) -> None:
            triage.record(results)
            for lane, outcomes in triage.complete_groups():
                settle(lane, outcomes)

        record({})  # groups that run nothing (replays only) are complete already
        runs = triage.runs
        if not runs:
            return
        ranged: list[list[int]] = []
        locked: list[int] = []
        for part in parts(runs):
            if optimistic and all(_in_one_statement(runs[index]) for index in part):
                ranged.append(part)
            else:
                locked.extend(part)
        if ranged:
            await self._write_optimistically(runs, ranged, record)
        if locked:
            record(await self._write_locked(runs, sorted(locked)))

    async def _write_optimistically(
        self,
        runs: Sequence[Entry],
        pending: list[list[int]],
        record: Callable[[dict[int, Outcome]], None],
    ) -> None:
        """Plan each part on the balances last seen, write them all in one statement on
        the condition that each balance still gives its plan's decisions; plan again, on
        the balances found, only the parts that did not.

        A part whose plan, on balances the statement found (under the row locks, or read
        in it), writes nothing (refusals only) is settled without another round trip:
        those balances were its wallets' at that point of the serial order, after the
        requests arrived.

        Each round's results go to `record` as soon as the round committed."""
        guesses: dict[UUID, int] = {}
        held: dict[UUID, int] = {}
        for wallet_id, hopeful in hopeful_starts(
            runs[index] for part in pending for index in part
        ).items():
            guesses[wallet_id], held[wallet_id] = self._known_balances.get(wallet_id, (hopeful, 0))
        # The wallets each part names, in order.
        named = {
            id(part): [runs[part[0]].legs[0].wallet_id]
            if len(part) == 1 and len(runs[part[0]].legs) == 1
            else list(wallets_named(runs[index] for index in part))
            for part in pending
        }
        missing: set[UUID] = set()
        due: list[list[int]] = []  # judged under the locks (rows.Round.due)
        for _ in range(OPTIMISTIC_ATTEMPTS):
            starts = {
                w: guesses[w] for part in pending for w in named[id(part)] if w not in missing
            }
            round_ = Round(runs, pending, named, starts, held)
            found, at = await self._write(round_.write)
            results: dict[int, Outcome] = {}
            for part, outcomes, wallets, spans, shifts in round_.settled(found):
                self._settle(
                    part, outcomes, at, results, wallets=wallets, spans=spans, shifts=shifts
                )
                if round_.write.holds:
                    opened_holds(runs, part, results, found)
            missing.update(round_.missing)
            for wallet_id, (balance, holding) in round_.found_again.items():
                guesses[wallet_id], held[wallet_id] = balance, holding
            record(results)  # committed: final, whatever happens to the rounds after it
            due.extend(round_.due)
            pending = round_.again
            if not pending:
                break
        locked = sorted(i for part in (*pending, *due) for i in part)
        if locked:
            record(await self._write_locked(runs, locked))

    def _settle(
        self,
        part: Sequence[int],
        outcomes: Sequence[Judged],
        at: datetime | None,
        results: dict[int, Outcome],
        *,
        wallets: Sequence[UUID],
        spans: Mapping[UUID, Span],
        shifts: Mapping[UUID, int],
    ) -> None:
        """The outcomes of a part whose plan held (written, or refusals only), and the
        balances it leaves remembered (each moved by its wallet's shift)."""
        for index, judged in zip(part, outcomes, strict=True):
            results[index] = judged_outcome(judged, at)
        known = self._known_balances
        for wallet_id in wallets:
            span = spans.get(wallet_id)
            if span is not None:
                known[wallet_id] = (
                    span.balance + shifts.get(wallet_id, 0),
                    span.balance - span.available,
                )
                known.move_to_end(wallet_id)
        while len(known) > KNOWN_BALANCES_LIMIT:
            known.popitem(last=False)

    async def _write_locked(self, runs: Sequence[Entry], indexes: list[int]) -> dict[int, Outcome]:
        """Apply the entries `indexes` of `runs` in one transaction that holds their
        holds' and wallets' row locks throughout (holds first, then wallets, each in id
        order, as every writer takes them): their keys looked up, planned on the exact
        balances, the rows reversed before and the holds as they are, it cannot miss."""
        entries = [runs[index] for index in indexes]
        outcomes: dict[int, Outcome] = {}
        async with committing(self._database, transaction=True) as commit:
            connection = commit.connection
            keys = {e.idempotency_key for e in entries if e.idempotency_key is not None}
            stored = await repository.stored_responses(connection, keys) if keys else {}
            holds = await self._lock_holds(connection, entries)
            locked = await repository.lock_wallets(connection, sorted(wallets_named(entries)))
            reversing = {leg.reverses for e in entries for leg in e.legs if leg.reverses}
            reversed_before = (
                await repository.reversed_rows(connection, reversing) if reversing else set()
            )
            run: list[int] = []
            for index, entry in zip(indexes, entries, strict=True):
                key = entry.idempotency_key
                if key is not None and key in stored:
                    outcomes[index] = replay(stored[key], entry.fingerprint)
                else:
                    run.append(index)
            ran = [runs[index] for index in run]
            exact = plan(
                locked.balances,
                ran,
                held=locked.held,
                reversed_before=reversed_before,
                holds=holds,
            )
            judged = [
                judged_outcome(each, locked.at, exact.hold_after.get(number))
                for number, each in enumerate(exact.outcomes)
            ]
            for index, outcome in zip(run, judged, strict=True):
                outcomes[index] = outcome
            write = exact_write(ran, judged, exact, locked)
            for entry, outcome in zip(ran, judged, strict=True):
                if entry.idempotency_key is not None and (
                    isinstance(outcome, Posted) or kept(entry, outcome)
                ):
                    status, body = entry.response(outcome)
                    write.keys.append(entry.idempotency_key)
                    write.fingerprints.append(entry.fingerprint)
                    write.statuses.append(status)
                    write.bodies.append(body)
            if write.row_wallets or write.keys:
                commit.sent = True  # from here on, the commit may land
                await repository.write_entries(connection, self._evented(write))
                if write.hold_ids or write.new_holds:
                    await repository.note_hold_expiries(connection, write.wallets)
        self._remember_all(exact)
        return outcomes

    async def _lock_holds(
        self, connection: Connection, entries: Sequence[Entry]
    ) -> dict[UUID, HoldState]:
        """Lock the holds the entries capture or release, in id order (before any wallet:
        the order every writer takes them in); their states."""
        named = sorted(
            {
                leg.hold
                for entry in entries
                for leg in entry.legs
                if leg.hold is not None and leg.kind is not EntryKind.HOLD
            }
        )
        return await repository.lock_holds(connection, named) if named else {}

    async def release_expired(
        self, limit: int, release: Callable[[repository.DueHold], Entry]
    ) -> int:
        """Write the release of up to `limit` holds that have expired, in one transaction:
        the holds locked first (skipping those another transaction holds: a capture, the
        sweep of another process), then their wallets, each release (the entry `release`
        builds) judged under those locks, so that a hold is released once. How many were."""
        async with committing(self._database, transaction=True) as commit:
            connection = commit.connection
            due = await repository.lock_due_holds(connection, limit)
            if not due:
                return 0
            entries = [release(hold) for hold in due]
            locked = await repository.lock_wallets(connection, sorted(wallets_named(entries)))
            exact = plan(
                locked.balances,
                entries,
                held=locked.held,
                holds={hold.id: hold.state for hold in due},
            )
            outcomes = [judged_outcome(judged, locked.at) for judged in exact.outcomes]
            write = exact_write(entries, outcomes, exact, locked)
            if write.row_wallets:
                commit.sent = True  # from here on, the commit may land
                await repository.write_entries(connection, self._evented(write))
                await repository.note_hold_expiries(connection, write.wallets)
        self._remember_all(exact)
        return sum(isinstance(outcome, Posted) for outcome in outcomes)

    async def apply_atomic(
        self,
        entries: Sequence[Entry],
        *,
        key: str | None,
        fingerprint: str,
        render: Callable[[list[Posted | Refusal]], tuple[int, str]],
        unknown: Collection[UUID] = (),
    ) -> list[Posted | Refusal] | Replay | IdempotencyKeyReused:
        """Apply every entry, or none: in one transaction holding the rows' locks (taken
        in id order), judged in order on the exact balances. The outcome of each entry
        as judged (written only if every one applied). With a key, the key is claimed
        first in the same transaction and the response `render` gives is kept with it: a
        key used before gets its stored response instead. Wallets in `unknown` (another
        owner's) are refused as wallets that do not exist, and not even locked."""
        async with committing(self._database, transaction=True) as commit:
            connection = commit.connection
            if key is not None:
                claimed = await repository.claim_key(
                    connection, key, fingerprint=fingerprint, status=202, body=""
                )
                if not claimed:
                    stored = await repository.stored_responses(connection, {key})
                    if key not in stored:  # purged past its retention meanwhile: try again
                        raise DatabaseUnavailable("The request met a key being purged; retry.")
                    return replay(stored[key], fingerprint)
            mine = sorted(
                wallet_id for wallet_id in wallets_named(entries) if wallet_id not in unknown
            )
            locked = await repository.lock_wallets(connection, mine)
            exact = plan(locked.balances, entries, held=locked.held)
            outcomes = [judged_outcome(judged, locked.at) for judged in exact.outcomes]
            whole = all(isinstance(outcome, Posted) for outcome in outcomes)
            commit.sent = whole or key is not None  # from here on, the commit may land
            if whole:
                await repository.write_entries(
                    connection, self._evented(exact_write(entries, outcomes, exact, locked))
                )
            if key is not None:
                status, body = render(outcomes)
                await repository.keep_response(connection, key, status=status, body=body)
        if whole:
            self._remember_all(exact)
        return outcomes

    async def _write(
        self, write: repository.RangeWrite
    ) -> tuple[dict[UUID, repository.Found], datetime | None]:
        async with committing(self._database) as commit:
            commit.sent = bool(write.wallets)  # one statement: it writes and commits
            return await repository.write_range(commit.connection, self._evented(write))

    def _evented(self, write: _Write) -> _Write:
        """`write`, without its events when they are off."""
        if not self._events:
            write.events.clear()
        return write

    async def _stored_responses(self, keys: set[str]) -> dict[str, StoredResponse]:
        async with self._database.autocommit() as connection:
            return await repository.stored_responses(connection, keys)

    def _remember_all(self, known: Plan) -> None:
        """Remember the balances a plan that held leaves (and what was then held)."""
        balances = self._known_balances
        for wallet_id, span in known.spans.items():
            balances[wallet_id] = (span.balance, span.balance - span.available)
            balances.move_to_end(wallet_id)
        while len(balances) > KNOWN_BALANCES_LIMIT:
            balances.popitem(last=False)


def _raced(exc: UniqueViolation) -> bool:
    """A key stored meanwhile by another transaction, or a row reversed meanwhile (the
    next run replays or refuses it)."""
    return is_key_conflict(exc) or exc.constraint_name == REVERSAL_INDEX


def _in_one_statement(entry: Entry) -> bool:
    """An entry the one statement may write: its key's response (if any) can be rendered
    by the statement, and it reverses nothing and takes from no hold (a reversal, a
    capture and a release are judged under the locks: the rows reversed before, the hold's
    own row). A new hold may: it is judged on its wallet's available balance alone."""
    return (entry.idempotency_key is None or entry.applied_body is not None) and all(
        leg.reverses is None and (leg.hold is None or leg.kind is EntryKind.HOLD)
        for leg in entry.legs
    )


class _Triage:
    """Which entries of a batch run, and the outcome of those that do not: a key first
    used in the batch runs; a repeat of it in the batch gets its outcome; a key stored
    before is replayed (or refused, if it came with another request)."""

    def __init__(self, groups: Sequence[Group], stored: dict[str, StoredResponse]):
        self._groups = groups
        self._outcomes: list[list[Outcome | None]] = [[None] * len(es) for _, es in groups]
        self._first_with_key: dict[str, tuple[int, int]] = {}
        #: Where each run came from: (group, position), in batch order.
        self._places: list[tuple[int, int]] = []
        self._emitted: set[int] = set()
        for g, (_, entries) in enumerate(groups):
            for i, entry in enumerate(entries):
                key = entry.idempotency_key
                if key is not None and key in stored:
                    self._outcomes[g][i] = replay(stored[key], entry.fingerprint)
                elif key is None or key not in self._first_with_key:
                    if key is not None:
                        self._first_with_key[key] = (g, i)
                    self._places.append((g, i))
        #: The entries to run, in batch order.
        self.runs = [groups[g][1][i] for g, i in self._places]

    def record(self, results: dict[int, Outcome]) -> None:
        """The outcomes of the runs in `results` (by their index in `runs`)."""
        for index, result in results.items():
            g, i = self._places[index]
            self._outcomes[g][i] = result

    def complete_groups(self) -> list[tuple[UUID, list[Outcome]]]:
        """The groups whose every outcome is now known, each once."""
        complete = []
        for g, (lane, entries) in enumerate(self._groups):
            if g in self._emitted:
                continue
            group = self._group(g, entries)
            if group is not None:
                self._emitted.add(g)
                complete.append((lane, group))
        return complete

    def _group(self, g: int, entries: Sequence[Entry]) -> list[Outcome] | None:
        group: list[Outcome] = []
        for i, (entry, known) in enumerate(zip(entries, self._outcomes[g], strict=True)):
            if known is not None:
                group.append(known)
                continue
            # Not run yet, or a repeat, in this batch, of a key first used in it.
            first_place = self._first_with_key.get(entry.idempotency_key or "")
            if first_place is None or first_place == (g, i):
                return None
            first_g, first_i = first_place
            first = self._outcomes[first_g][first_i]
            if first is None:
                return None
            group.append(_repeat(self._groups[first_g][1][first_i], first, entry))
        return group


def _repeat(first: Entry, first_outcome: Outcome, repeat: Entry) -> Outcome:
    """The outcome of a repeat of `first` (same key) within the batch that ran `first`."""
    if repeat.fingerprint != first.fingerprint:
        return IdempotencyKeyReused()
    if isinstance(first_outcome, Replay | IdempotencyKeyReused):
        return first_outcome
    if isinstance(first_outcome, Refusal) and not kept(first, first_outcome):
        return first_outcome  # nothing kept for it: refused alike
    return Replay(*first.response(first_outcome))


def outcome_label(outcome: Posted | Replay | AppError) -> str:
    """An entry's outcome as the `outcome` label of wallet_operations_total."""
    if isinstance(outcome, AppError):
        return outcome.code
    return "replayed" if isinstance(outcome, Replay) else "applied"
