"""Wallet business rules: overdraft and limit checks, batching, the unit of work."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

import orjson

from wallet_api.core.config import Settings
from wallet_api.core.database import (
    Connection,
    Database,
    UniqueViolation,
    is_key_conflict,
    is_outcome_unknown,
)
from wallet_api.core.errors import (
    AppError,
    DatabaseUnavailable,
    InternalError,
    OutcomeUnknown,
    ServiceUnavailable,
    error_document,
)
from wallet_api.core.idempotency import Replay
from wallet_api.core.metrics import (
    IDEMPOTENT_REPLAYS,
    declare_operation_outcomes,
    operation_outcomes,
)
from wallet_api.wallets import repository
from wallet_api.wallets.coalescer import Coalescer
from wallet_api.wallets.cursors import MAX_LEDGER_ID
from wallet_api.wallets.exceptions import (
    BalanceLimitExceeded,
    IdempotencyKeyReused,
    InsufficientFunds,
    WalletBusy,
    WalletNotFound,
)
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.plan import BatchPlan, Operation, plan_batch
from wallet_api.wallets.schemas import created_body, operation_body

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Commit:
    """A batch's connection, and whether its write has been sent (its outcome may land)."""

    connection: Connection
    sent: bool = False


#: What one operation came to: the balance right after it, why it was refused, or the
#: stored outcome of the earlier request with the same Idempotency-Key.
Outcome = int | AppError | Replay


def _ledger_rows(plan: BatchPlan, operations: Sequence[Operation]) -> repository.LedgerRows:
    """The plan's writes: ledger rows for the applied operations, and the response to every
    keyed operation (applied or refused) for later replays."""
    keyed = [
        (operation, outcome)
        for operation, outcome in zip(operations, plan.outcomes, strict=True)
        if operation.idempotency_key is not None
    ]
    responses = [_stored_form(outcome) for _, outcome in keyed]
    return repository.LedgerRows(
        balance=plan.balance,
        operations=[operations[i].kind.value for i, _ in plan.applied],
        amounts=[operations[i].amount for i, _ in plan.applied],
        balances_after=[balance for _, balance in plan.applied],
        operation_keys=[operations[i].idempotency_key for i, _ in plan.applied],
        keys=[operation.idempotency_key or "" for operation, _ in keyed],
        fingerprints=[operation.fingerprint for operation, _ in keyed],
        statuses=[status for status, _ in responses],
        bodies=[body for _, body in responses],
    )


def _stored_form(outcome: int | AppError) -> tuple[int, str]:
    """(status, body) of the response an outcome gets, as kept for replays."""
    if isinstance(outcome, AppError):
        return outcome.status, orjson.dumps(error_document(outcome)).decode()
    return 200, operation_body(outcome)


def _repeat(first: Operation, first_outcome: Outcome, repeat: Operation) -> Outcome:
    """The outcome of a repeat of `first` (same key) within the batch that ran `first`."""
    if repeat.fingerprint != first.fingerprint:
        return IdempotencyKeyReused()
    if isinstance(first_outcome, WalletNotFound | Replay):  # nothing stored for it
        return first_outcome
    return Replay(*_stored_form(first_outcome))


def _is_keyed_refusal(operation: Operation, outcome: int | AppError) -> bool:
    return operation.idempotency_key is not None and isinstance(outcome, AppError)


def _replay(stored: repository.StoredResponse, fingerprint: str) -> Replay | AppError:
    if stored.fingerprint != fingerprint:
        return IdempotencyKeyReused()
    return Replay(stored.status, stored.body)


#: Optimistic writes tried before a batch falls back to a row-locking transaction.
OPTIMISTIC_ATTEMPTS = 3
#: Keys deleted per purge statement.
PURGE_BATCH = 1000
#: Tries of a batch whose key was used before or stored first by another transaction: the
#: first try does not look keys up, the next ones do and replay them.
KEY_RACE_ATTEMPTS = 4
#: Wallets whose last seen balance a process remembers (a guess, always verified).
KNOWN_BALANCES_LIMIT = 10_000
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
    """Creates wallets, reads balances, applies operations (coalesced unless disabled)."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._known_balances: OrderedDict[UUID, int] = OrderedDict()
        self._coalescer: Coalescer[Operation, Outcome] | None = None
        self._reads: Coalescer[None, int | None] | None = None
        if settings.coalescing_enabled:
            self._coalescer = Coalescer(
                self.apply_batch,
                kind="write",
                max_batch=settings.coalescing_max_batch,
                queue_limit=settings.coalescing_queue_limit,
                deadline=settings.operation_deadline,
                interrupted=OutcomeUnknown,
            )
            # Concurrent reads of one wallet share one query (the next one to start).
            self._reads = Coalescer(
                self._read_for_all,
                kind="read",
                max_batch=settings.coalescing_max_batch,
                queue_limit=settings.coalescing_queue_limit,
                deadline=settings.operation_deadline,
                interrupted=lambda: DatabaseUnavailable("The balance could not be read."),
            )
        # Every series an alert may watch exists from the start, at zero.
        declare_operation_outcomes([kind.value for kind in OperationType], OPERATION_OUTCOMES)

    async def create_wallet(
        self, *, idempotency_key: str | None = None, fingerprint: str = ""
    ) -> UUID | Replay:
        """Create a wallet; with a key, only the first request with that key does."""
        for attempt in range(KEY_RACE_ATTEMPTS):
            if idempotency_key is not None:
                stored = await self._stored_responses({idempotency_key})
                if idempotency_key in stored:
                    replay = _replay(stored[idempotency_key], fingerprint)
                    if isinstance(replay, AppError):
                        raise replay
                    IDEMPOTENT_REPLAYS.labels("create_wallet").inc()
                    return replay
            wallet_id = uuid.uuid4()
            try:
                async with self._committing() as commit:
                    commit.sent = True  # one statement: it writes and commits
                    await repository.insert_wallet(
                        commit.connection,
                        wallet_id,
                        key=idempotency_key,
                        fingerprint=fingerprint,
                        body=created_body(wallet_id),
                    )
            except UniqueViolation as exc:
                if attempt + 1 < KEY_RACE_ATTEMPTS and is_key_conflict(exc):
                    continue
                raise
            return wallet_id
        raise AssertionError("unreachable")

    async def _stored_responses(self, keys: set[str]) -> dict[str, repository.StoredResponse]:
        async with self._database.autocommit() as connection:
            return await repository.stored_responses(connection, keys)

    async def get_balance(self, wallet_id: UUID) -> int:
        if self._reads is not None:
            balance = await self._reads.submit(wallet_id, None)
        else:
            balance = await self._read_balance(wallet_id)
        if balance is None:
            raise WalletNotFound(wallet_id)
        return balance

    async def _read_balance(self, wallet_id: UUID) -> int | None:
        async with self._database.autocommit() as connection:
            return await repository.read_balance(connection, wallet_id)

    async def _read_for_all(self, wallet_id: UUID, readers: Sequence[None]) -> list[int | None]:
        balance = await self._read_balance(wallet_id)
        return [balance] * len(readers)

    async def apply_operation(self, wallet_id: UUID, operation: Operation) -> int | Replay:
        """Apply one operation; return the balance right after it (or the replay of the
        earlier request with its key), or raise its refusal."""
        kind = operation.kind.value
        try:
            if self._coalescer is not None:
                outcome = await self._coalescer.submit(wallet_id, operation)
            else:
                # The classic way, one row-locking transaction per operation: concurrent
                # operations on one wallet would mostly lose optimistic races to each other.
                (outcome,) = await self.apply_batch(wallet_id, [operation], optimistic=False)
        except AppError as error:
            operation_outcomes(kind, error.code).inc()
            raise
        except Exception:
            operation_outcomes(kind, "error").inc()
            raise
        if isinstance(outcome, AppError):
            operation_outcomes(kind, outcome.code).inc()
            raise outcome
        if isinstance(outcome, Replay):
            operation_outcomes(kind, "replayed").inc()
            IDEMPOTENT_REPLAYS.labels("operation").inc()
        else:
            operation_outcomes(kind, "applied").inc()
        return outcome

    async def apply_batch(
        self, wallet_id: UUID, operations: Sequence[Operation], *, optimistic: bool = True
    ) -> list[Outcome]:
        """Apply `operations` in order as one transaction; return one outcome each.

        An operation whose Idempotency-Key was used before is not applied: it gets the
        stored outcome (or a refusal, if the key came with another request). Two in the
        same batch with one key apply once.
        """
        # The optimistic write needs no look-up of the keys first: a key used before fails
        # it (the key's unique index) and nothing is written. Without coalescing, the
        # row-locking transaction looks them up first, as a failure there would cost a
        # whole transaction (the optimistic path's own fallback to it may pay that).
        look_up = not optimistic
        for attempt in range(KEY_RACE_ATTEMPTS):
            try:
                return await self._apply_batch(
                    wallet_id, operations, optimistic=optimistic, look_up=look_up
                )
            except UniqueViolation as exc:
                # A key was used before, or another transaction stored it first: the next
                # try looks the keys up and replays them.
                if attempt + 1 < KEY_RACE_ATTEMPTS and is_key_conflict(exc):
                    look_up = True
                    continue
                raise
        raise AssertionError("unreachable")

    async def _apply_batch(
        self,
        wallet_id: UUID,
        operations: Sequence[Operation],
        *,
        optimistic: bool,
        look_up: bool,
    ) -> list[Outcome]:
        keys = {op.idempotency_key for op in operations if op.idempotency_key is not None}
        stored = await self._stored_responses(keys) if keys and look_up else {}
        outcomes: list[Outcome | None] = [None] * len(operations)
        first_with_key: dict[str, int] = {}
        to_run: list[int] = []
        for index, operation in enumerate(operations):
            key = operation.idempotency_key
            if key is None:
                to_run.append(index)
            elif key in stored:
                outcomes[index] = _replay(stored[key], operation.fingerprint)
            elif key not in first_with_key:
                first_with_key[key] = index
                to_run.append(index)
        if to_run:
            run = [operations[index] for index in to_run]
            if optimistic:
                results = await self._apply_optimistically(wallet_id, run)
            else:
                results = await self._apply_locked(wallet_id, run)
            for index, result in zip(to_run, results, strict=True):
                outcomes[index] = result
        finished: list[Outcome] = []
        for operation, known in zip(operations, outcomes, strict=True):
            if known is not None:
                finished.append(known)
                continue
            # A repeat, in this batch, of a key first used in this batch.
            assert operation.idempotency_key is not None
            first = first_with_key[operation.idempotency_key]
            first_outcome = outcomes[first]
            assert first_outcome is not None
            finished.append(_repeat(operations[first], first_outcome, operation))
        return finished

    async def _apply_optimistically(
        self, wallet_id: UUID, operations: Sequence[Operation]
    ) -> list[int | AppError]:
        """Plan on the balance this process last saw, then write in one statement (one
        round trip with its commit) on a condition the database checks under the row lock:
        that the balance still gives the plan's decisions. When other processes keep
        moving the wallet out of that condition, fall back to a row-locking transaction."""
        guess = self._known_balances.get(wallet_id)
        for _ in range(OPTIMISTIC_ATTEMPTS):
            if guess is None:
                guess = await self._read_balance(wallet_id)
                if guess is None:
                    return [WalletNotFound(wallet_id) for _ in operations]
            plan = plan_batch(guess, operations)
            written: repository.WriteResult
            outcomes = zip(operations, plan.outcomes, strict=True)
            exact = any(_is_keyed_refusal(operation, outcome) for operation, outcome in outcomes)
            if exact:
                # A stored refusal quotes the balance: it must be the one planned on.
                written = await self._write(wallet_id, plan, operations, exact=True)
            elif plan.applied:
                # Any balance in the plan's range will do (the keyed responses stored
                # with it are rendered by the statement): another process's writes
                # between two batches of this one (a hot wallet) do not make it retry.
                written = await self._write(wallet_id, plan, operations, exact=False)
            else:
                # Only refusals, none keyed: they stand if the balance they were judged
                # on is current.
                seen = await self._read_balance(wallet_id)
                in_range = seen is not None and plan.lowest <= seen <= plan.highest
                written = repository.WriteResult(start=seen if in_range else None, balance=seen)
            if written.start is not None:
                if written.start != plan.start:  # same decisions, balances shifted
                    plan = plan_batch(written.start, operations)
                self._remember(wallet_id, plan.balance)
                return plan.outcomes
            if written.balance is None:
                return [WalletNotFound(wallet_id) for _ in operations]
            # A statement that waited for another writer's commit saw the balance of its
            # own start, from before that commit: if that balance met the condition, it
            # is outdated, and only a fresh read gives a plan with a chance.
            if exact:
                stale = written.balance == plan.start
            else:
                stale = plan.lowest <= written.balance <= plan.highest
            guess = None if stale else written.balance
        return await self._apply_locked(wallet_id, operations)

    async def _write(
        self, wallet_id: UUID, plan: BatchPlan, operations: Sequence[Operation], *, exact: bool
    ) -> repository.WriteResult:
        """Write a planned batch if the wallet's balance is the plan's start (`exact`) or
        within its range."""
        async with self._committing() as commit:
            commit.sent = True  # one statement: it writes and commits
            if exact:
                return await repository.compare_and_apply(
                    commit.connection,
                    wallet_id,
                    expected=plan.start,
                    rows=_ledger_rows(plan, operations),
                )
            applied = [operations[index] for index, _ in plan.applied]
            return await repository.apply_within(
                commit.connection,
                wallet_id,
                delta=plan.balance - plan.start,
                lowest=plan.lowest,
                highest=plan.highest,
                operations=[operation.kind.value for operation in applied],
                amounts=[operation.amount for operation in applied],
                offsets=[balance - plan.start for _, balance in plan.applied],
                keys=[operation.idempotency_key for operation in applied],
                fingerprints=[operation.fingerprint for operation in applied],
            )

    async def _apply_locked(
        self, wallet_id: UUID, operations: Sequence[Operation]
    ) -> list[int | AppError]:
        """Apply `operations` in one transaction that holds the wallet's row lock throughout."""
        async with self._committing(transaction=True) as commit:
            balance = await repository.lock_balance(commit.connection, wallet_id)
            if balance is None:
                return [WalletNotFound(wallet_id) for _ in operations]
            plan = plan_batch(balance, operations)
            rows = _ledger_rows(plan, operations)
            if plan.applied or rows.keys:
                commit.sent = True  # from here on, the commit may land
                await repository.apply_locked(commit.connection, wallet_id, rows)
        self._remember(wallet_id, plan.balance)
        return plan.outcomes

    @asynccontextmanager
    async def _committing(self, *, transaction: bool = False) -> AsyncIterator[_Commit]:
        """A connection for the statements that write and commit a batch.

        Once the caller marks the write as sent, a failure that leaves unknown whether the
        commit landed (the connection broke, or the client stopped waiting for the
        database) is reported as OutcomeUnknown, never as "not applied": a client must not
        retry it blindly.
        """
        commit: _Commit | None = None
        try:
            opened = self._database.transaction() if transaction else self._database.autocommit()
            async with opened as connection:
                commit = _Commit(connection)
                yield commit
        except Exception as exc:
            if commit is not None and commit.sent and is_outcome_unknown(exc):
                logger.error("commit outcome unknown", exc_info=exc)
                raise OutcomeUnknown() from exc
            raise

    async def history(
        self, wallet_id: UUID, *, limit: int, before_id: int | None
    ) -> tuple[list[repository.LedgerEntry], int | None]:
        """A page of the wallet's ledger, newest first, and the id the next page starts
        below (None on the last page). Keyset pagination: stable while rows are added."""
        async with self._database.autocommit() as connection:
            entries = await repository.history(
                connection,
                wallet_id,
                before_id=before_id if before_id is not None else MAX_LEDGER_ID,
                limit=limit + 1,
            )
            if not entries and not await repository.wallet_exists(connection, wallet_id):
                raise WalletNotFound(wallet_id)
        if len(entries) > limit:
            return entries[:limit], entries[limit - 1].id
        return entries, None

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

    def _remember(self, wallet_id: UUID, balance: int) -> None:
        self._known_balances[wallet_id] = balance
        self._known_balances.move_to_end(wallet_id)
        if len(self._known_balances) > KNOWN_BALANCES_LIMIT:
            self._known_balances.popitem(last=False)

    def queue_depths(self) -> dict[str, int]:
        """Requests waiting in this process's per-wallet queues, by kind (write, read)."""
        return {
            coalescer.kind: coalescer.queue_depth()
            for coalescer in (self._coalescer, self._reads)
            if coalescer is not None
        }

    async def close(self) -> None:
        """Finish every queued operation (used on shutdown)."""
        for coalescer in (self._coalescer, self._reads):
            if coalescer is not None:
                await coalescer.close()
