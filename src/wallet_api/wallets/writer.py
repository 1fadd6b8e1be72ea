"""The write path: a batch of operations over many wallets, written in one statement.

`BatchWriter.apply` takes what the group-commit queue (`posting/queue.py`) hands it, one
group of operations per wallet, each group in arrival order, and returns each operation's
outcome. How:

1. Idempotency-Keys: a key first used in this batch runs; a repeat in the batch gets its
   outcome; a key stored before is replayed. Keys are not looked up first: a used key
   fails the statement (its unique index), and the batch is tried again with look-ups.
2. Plans: each wallet's group is planned (`plan.py`, pure) on the balance this process
   last saw for it; wallets it has not seen are read in one query.
3. One statement writes every wallet whose balance still gives its plan's decisions (a
   range, or the exact balance when a stored refusal quotes it), locking rows in id
   order, and reports what it found for the others. Only those are planned again, on
   what was found; after a few such races they run in a transaction that holds their row
   locks (the fallback, and the path of every operation with coalescing off).

Nothing is acknowledged before its commit: outcomes are returned only after the statement
(or the transaction) committed. A commit whose outcome cannot be known raises
`OutcomeUnknown`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from uuid import UUID

import asyncpg

from wallet_api.core.database import (
    Database,
    UniqueViolation,
    is_aborted,
    is_key_conflict,
)
from wallet_api.core.errors import AppError, DatabaseUnavailable
from wallet_api.core.idempotency import IdempotencyKeyReused, Replay, StoredResponse, replay
from wallet_api.posting.commit import committing
from wallet_api.posting.repository import stored_responses
from wallet_api.wallets import repository
from wallet_api.wallets.exceptions import WalletNotFound
from wallet_api.wallets.plan import (
    Atomic,
    BatchPlan,
    Operation,
    atomic_outcome,
    hopeful_start,
    plan_batch,
)
from wallet_api.wallets.schemas import result_of

logger = logging.getLogger(__name__)

#: What one operation came to: the balance right after it, why it was refused, or the
#: stored outcome of the earlier request with the same Idempotency-Key.
Outcome = int | AppError | Replay
#: A wallet and its operations, in arrival order.
Group = tuple[UUID, Sequence[Operation]]
#: Receives a wallet's outcomes as soon as they are final (its write committed).
Settled = Callable[[UUID, list[Outcome]], None]

#: Statements tried before the wallets that keep losing races fall back to a transaction
#: that holds their row locks.
OPTIMISTIC_ATTEMPTS = 3
#: Tries of a batch whose key was used before or stored first by another transaction: the
#: first try does not look keys up, the next ones do and replay them.
KEY_RACE_ATTEMPTS = 4
#: Tries of a batch that the database aborted to break a deadlock or a serialization
#: conflict (none is expected: rows are locked in one order), before it fails.
ABORTED_ATTEMPTS = 3
#: Wallets whose last seen balance a process remembers (a guess, always verified).
KNOWN_BALANCES_LIMIT = 10_000


class BatchWriter:
    """Applies batches of operations on many wallets (see the module's docstring)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._known_balances: OrderedDict[UUID, int] = OrderedDict()

    async def apply(
        self,
        groups: Sequence[Group],
        *,
        optimistic: bool = True,
        on_settled: Settled | None = None,
    ) -> list[list[Outcome]]:
        """One outcome per operation of each group (one group per wallet). Without
        `optimistic`, the batch runs in a transaction holding its rows' locks (one
        transaction per operation, when the queue is off).

        A batch may commit in several statements (the wallets that lost a race are
        written again, each in a round of its own): each wallet's outcomes are handed to
        `on_settled` as soon as they are final, and a retry (a key used before, a
        deadlock) runs only the wallets not yet settled. If a later round fails, the
        exception propagates, and the settled wallets keep the outcomes already handed
        over: the caller must not run them again, nor answer them with the failure."""
        settled: dict[UUID, list[Outcome]] = {}

        def settle(wallet_id: UUID, outcomes: list[Outcome]) -> None:
            settled[wallet_id] = outcomes
            if on_settled is not None:
                on_settled(wallet_id, outcomes)

        look_up = not optimistic  # a failure there would cost a whole transaction
        key_races = aborted = 0
        while remaining := [(w, ops) for w, ops in groups if w not in settled]:
            try:
                await self._apply(remaining, optimistic=optimistic, look_up=look_up, settle=settle)
            except UniqueViolation as exc:
                # A key was used before, or another transaction stored it first: the next
                # try looks the keys up and replays them.
                key_races += 1
                if key_races < KEY_RACE_ATTEMPTS and is_key_conflict(exc):
                    look_up = True
                    continue
                raise
            except asyncpg.PostgresError as exc:
                aborted += 1
                if is_aborted(exc) and aborted < ABORTED_ATTEMPTS:
                    logger.warning("batch aborted by the database, retrying: %r", exc)
                    continue
                raise
        return [settled[wallet_id] for wallet_id, _ in groups]

    async def _apply(
        self,
        groups: Sequence[Group],
        *,
        optimistic: bool,
        look_up: bool,
        settle: Settled,
    ) -> None:
        keys = {
            operation.idempotency_key
            for _, operations in groups
            for operation in operations
            if operation.idempotency_key is not None
        }
        stored = await self._stored_responses(keys) if keys and look_up else {}
        triage = _Triage(groups, stored)

        def record(results: dict[UUID, list[int | AppError]]) -> None:
            triage.record(results)
            for wallet_id, outcomes in triage.complete_groups():
                settle(wallet_id, outcomes)

        record({})  # groups that run nothing (replays only) are complete already
        if triage.runs:
            if optimistic:
                await self._write_optimistically(triage.runs, record)
            else:
                record(await self._write_locked(triage.runs))

    async def _write_optimistically(
        self,
        runs: dict[UUID, list[Operation]],
        record: Callable[[dict[UUID, list[int | AppError]]], None],
    ) -> None:
        """Plan each wallet on the balance last seen, write them all in one statement on
        the condition that each balance still gives its plan's decisions; plan again, on
        the balance found, only the wallets that did not.

        A wallet this process has not seen is planned on a balance at which all its
        operations apply (no read first): if its balance gives the same decisions, as it
        mostly does, it is written at once; if not, the statement reports its balance.
        A plan of refusals only, on a balance the statement found under the row lock, is
        settled without another round trip: that balance was the wallet's at that point
        of the serial order, after the requests arrived.

        Each round's results go to `record` as soon as the round committed."""
        guesses: dict[UUID, int] = {
            wallet_id: self._known_balances.get(wallet_id, hopeful_start(operations))
            for wallet_id, operations in runs.items()
        }
        pending = dict(runs)
        for _ in range(OPTIMISTIC_ATTEMPTS):
            results: dict[UUID, list[int | AppError]] = {}
            plans: dict[UUID, BatchPlan] = {}
            for wallet_id, operations in pending.items():
                plans[wallet_id] = plan_batch(guesses[wallet_id], operations)
            found = await self._write(_batch_write(plans, pending, exact=False))
            for wallet_id, plan in plans.items():
                write = found.get(wallet_id)
                if write is None:
                    results[wallet_id] = [WalletNotFound(wallet_id) for _ in plan.outcomes]
                else:
                    operations = pending[wallet_id]
                    held = plan
                    start = _start_found(plan, write, operations)
                    if start is None:  # the balance moved out of the plan's range
                        held = plan_batch(write.balance, operations)
                        if not _only_refusals(held, operations):
                            guesses[wallet_id] = write.balance
                            continue
                        start = write.balance
                    results[wallet_id] = self._settle(wallet_id, held, start, operations)
                del pending[wallet_id]
            record(results)  # committed: final, whatever happens to the rounds after it
            if not pending:
                return
        record(await self._write_locked(pending))

    def _settle(
        self, wallet_id: UUID, plan: BatchPlan, start: int, operations: Sequence[Operation]
    ) -> list[int | AppError]:
        """The outcomes of a plan that held on `start` (same decisions, shifted balances)."""
        if start == plan.start:
            self._remember(wallet_id, plan.balance)
            return plan.outcomes
        if len(plan.applied) == len(operations):  # no refusal quotes a balance: shift them
            shift = start - plan.start
            self._remember(wallet_id, plan.balance + shift)
            return [balance + shift for _, balance in plan.applied]
        plan = plan_batch(start, operations)
        self._remember(wallet_id, plan.balance)
        return plan.outcomes

    async def _write_locked(
        self, runs: dict[UUID, list[Operation]]
    ) -> dict[UUID, list[int | AppError]]:
        """Apply the batch in one transaction that holds its wallets' row locks throughout,
        taken in id order: planned on the exact balances, it cannot miss."""
        async with committing(self._database, transaction=True) as commit:
            balances = await repository.lock_balances(commit.connection, sorted(runs))
            plans = {
                wallet_id: plan_batch(balances[wallet_id], operations)
                for wallet_id, operations in runs.items()
                if wallet_id in balances
            }
            batch = _batch_write(plans, runs, exact=True)
            if batch.wallets:
                commit.sent = True  # from here on, the commit may land
                await repository.write_batch(commit.connection, batch)
        results: dict[UUID, list[int | AppError]] = {}
        for wallet_id, operations in runs.items():
            plan = plans.get(wallet_id)
            if plan is None:
                results[wallet_id] = [WalletNotFound(wallet_id) for _ in operations]
            else:
                self._remember(wallet_id, plan.balance)
                results[wallet_id] = plan.outcomes
        return results

    async def apply_atomic(
        self,
        items: Sequence[tuple[UUID, Operation]],
        *,
        key: str | None,
        fingerprint: str,
        render: Callable[[Atomic], tuple[int, str]],
        unknown: Collection[UUID] = (),
    ) -> Atomic | Replay | AppError:
        """Apply every item, or none: in one transaction holding the rows' locks (taken in
        id order), planned on the exact balances, each wallet's items in order. With a
        key, the key is claimed first in the same transaction and the response `render`
        gives is kept with it: a key used before gets its stored response instead. Wallets in
        `unknown` (another owner's) are refused as wallets that do not exist."""
        async with committing(self._database, transaction=True) as commit:
            connection = commit.connection
            if key is not None:
                claimed = await repository.claim_key(
                    connection, key, fingerprint=fingerprint, status=202, body=""
                )
                if not claimed:
                    stored = await stored_responses(connection, {key})
                    if key not in stored:  # purged past its retention meanwhile: try again
                        raise DatabaseUnavailable("The request met a key being purged; retry.")
                    return replay(stored[key], fingerprint)
            runs: dict[UUID, list[Operation]] = {}
            for wallet_id, operation in items:
                runs.setdefault(wallet_id, []).append(operation)
            # Another owner's wallets are not even locked: refused as if they did not exist.
            mine = sorted(wallet_id for wallet_id in runs if wallet_id not in unknown)
            balances = await repository.lock_balances(connection, mine)
            plans = {
                wallet_id: plan_batch(balances[wallet_id], operations)
                for wallet_id, operations in runs.items()
                if wallet_id in balances
            }
            result = atomic_outcome(items, plans)
            commit.sent = isinstance(result, list) or key is not None  # the commit may land
            if isinstance(result, list):
                await repository.write_batch(connection, _batch_write(plans, runs, exact=True))
            if key is not None:
                status, body = render(result)
                await repository.keep_response(connection, key, status=status, body=body)
        if isinstance(result, list):
            for wallet_id, plan in plans.items():
                self._remember(wallet_id, plan.balance)
        return result

    async def _write(self, batch: repository.BatchWrite) -> dict[UUID, repository.WalletWrite]:
        async with committing(self._database) as commit:
            commit.sent = bool(batch.wallets)  # one statement: it writes and commits
            return await repository.write_batch(commit.connection, batch)

    async def _stored_responses(self, keys: set[str]) -> dict[str, StoredResponse]:
        async with self._database.autocommit() as connection:
            return await stored_responses(connection, keys)

    def _remember(self, wallet_id: UUID, balance: int) -> None:
        self._known_balances[wallet_id] = balance
        self._known_balances.move_to_end(wallet_id)
        if len(self._known_balances) > KNOWN_BALANCES_LIMIT:
            self._known_balances.popitem(last=False)


def _batch_write(
    plans: dict[UUID, BatchPlan], runs: dict[UUID, list[Operation]], *, exact: bool
) -> repository.BatchWrite:
    """The statement's arrays for `plans`. A wallet is written on its plan's range, or on
    its exact planned balance when `exact` or when a stored refusal quotes that balance; a
    wallet whose plan applies nothing and keeps nothing is only checked."""
    batch = repository.BatchWrite()
    for wallet_id, plan in plans.items():
        operations = runs[wallet_id]
        if _only_refusals(plan, operations):
            if not exact:  # under the transaction's row lock, there is nothing to check
                batch.checked.append(wallet_id)
            continue
        keyed_refusal = any(
            _is_keyed_refusal(operation, outcome)
            for operation, outcome in zip(operations, plan.outcomes, strict=True)
        )
        if exact or keyed_refusal:  # a stored refusal quotes the balance it was judged on
            low = high = plan.start
        else:
            low, high = plan.lowest, plan.highest
        batch.wallets.append(wallet_id)
        batch.deltas.append(plan.balance - plan.start)
        batch.lows.append(low)
        batch.highs.append(high)
        for index, balance in plan.applied:
            operation = operations[index]
            batch.row_wallets.append(wallet_id)
            batch.operations.append(operation.kind.value)
            batch.amounts.append(operation.amount)
            batch.offsets.append(balance - plan.start)
            batch.row_keys.append(operation.idempotency_key)
            batch.row_api_keys.append(operation.api_key_id)
        for operation, outcome in zip(operations, plan.outcomes, strict=True):
            if operation.idempotency_key is None:
                continue
            batch.key_wallets.append(wallet_id)
            batch.keys.append(operation.idempotency_key)
            batch.fingerprints.append(operation.fingerprint)
            if isinstance(outcome, AppError):
                status, body = _stored_form(outcome)
                batch.statuses.append(status)
                batch.bodies.append(body)
                batch.key_offsets.append(0)
            else:
                batch.statuses.append(200)
                batch.bodies.append(None)  # rendered from its balance, in the statement
                batch.key_offsets.append(outcome - plan.start)
    return batch


class _Triage:
    """Which operations of a batch run, and the outcome of those that do not: a key first
    used in the batch runs; a repeat of it in the batch gets its outcome; a key stored
    before is replayed (or refused, if it came with another request)."""

    def __init__(self, groups: Sequence[Group], stored: dict[str, StoredResponse]):
        self._groups = groups
        self._outcomes: list[list[Outcome | None]] = [[None] * len(ops) for _, ops in groups]
        self._first_with_key: dict[str, tuple[int, int]] = {}
        self._places: dict[UUID, list[tuple[int, int]]] = {}
        self._emitted: set[int] = set()
        for g, (wallet_id, operations) in enumerate(groups):
            for i, operation in enumerate(operations):
                key = operation.idempotency_key
                if key is not None and key in stored:
                    self._outcomes[g][i] = replay(stored[key], operation.fingerprint)
                elif key is None or key not in self._first_with_key:
                    if key is not None:
                        self._first_with_key[key] = (g, i)
                    self._places.setdefault(wallet_id, []).append((g, i))
        #: The operations to run, by wallet, in arrival order.
        self.runs = {
            wallet_id: [groups[g][1][i] for g, i in places]
            for wallet_id, places in self._places.items()
        }

    def record(self, results: dict[UUID, list[int | AppError]]) -> None:
        """The outcomes of the operations that ran, for the wallets in `results`."""
        for wallet_id, wallet_results in results.items():
            places = self._places[wallet_id]
            for (g, i), result in zip(places, wallet_results, strict=True):
                self._outcomes[g][i] = result

    def complete_groups(self) -> list[tuple[UUID, list[Outcome]]]:
        """The groups whose every outcome is now known, each once."""
        complete = []
        for g, (wallet_id, operations) in enumerate(self._groups):
            if g in self._emitted:
                continue
            group = self._group(g, operations)
            if group is not None:
                self._emitted.add(g)
                complete.append((wallet_id, group))
        return complete

    def _group(self, g: int, operations: Sequence[Operation]) -> list[Outcome] | None:
        group: list[Outcome] = []
        for i, (operation, known) in enumerate(zip(operations, self._outcomes[g], strict=True)):
            if known is not None:
                group.append(known)
                continue
            # Not run yet, or a repeat, in this batch, of a key first used in it.
            first_place = self._first_with_key.get(operation.idempotency_key or "")
            if first_place is None or first_place == (g, i):
                return None
            first_g, first_i = first_place
            first = self._outcomes[first_g][first_i]
            if first is None:
                return None
            group.append(_repeat(self._groups[first_g][1][first_i], first, operation))
        return group


def _start_found(
    plan: BatchPlan, write: repository.WalletWrite, operations: Sequence[Operation]
) -> int | None:
    """The balance the plan was applied on, or, for a plan of refusals only, the balance
    read if it still gives them; None when the plan did not hold."""
    if write.start is not None:
        return write.start
    if _only_refusals(plan, operations) and plan.lowest <= write.balance <= plan.highest:
        return write.balance
    return None


def _only_refusals(plan: BatchPlan, operations: Sequence[Operation]) -> bool:
    """Nothing to write: no operation applies and none carries a key."""
    return not plan.applied and all(op.idempotency_key is None for op in operations)


def _is_keyed_refusal(operation: Operation, outcome: int | AppError) -> bool:
    return operation.idempotency_key is not None and isinstance(outcome, AppError)


def _stored_form(outcome: int | AppError) -> tuple[int, str]:
    """(status, body) of the response an outcome gets, as kept for replays."""
    return result_of(outcome)


def _repeat(first: Operation, first_outcome: Outcome, repeat: Operation) -> Outcome:
    """The outcome of a repeat of `first` (same key) within the batch that ran `first`."""
    if repeat.fingerprint != first.fingerprint:
        return IdempotencyKeyReused()
    if isinstance(first_outcome, WalletNotFound | Replay):  # nothing stored for it
        return first_outcome
    return Replay(*_stored_form(first_outcome))
