"""Group commit across wallets: application-level batching of concurrent requests.

Requests wait in their wallet's queue. A dispatcher forms batches from the wallets that
are ready (something queued, nothing in flight), in the order they became ready, taking
each one's queued requests in arrival order, up to `max_batch` requests a batch. So a
batch spans many wallets (one round trip and one commit for all of them), a wallet is in
at most one batch in flight, and a request never joins a batch that started before it
arrived: it sees every write acknowledged before it was sent. Each caller gets its own
outcome, and only once its batch has run.

One batch runs at a time while batches are quick: what arrives meanwhile gathers into
the next one (group commit: measured, one batch in flight serves spread traffic about a
third faster than four). A batch that has run for `STALLED_AFTER_SECONDS` is taken to be
held up (a row lock held elsewhere, a slow disk), and the next one starts beside it, up
to `max_in_flight`: one stuck wallet does not stop the others.

Whatever becomes of a batch, every caller is answered: a batch that fails as a whole is
answered with the failure it maps to; one that fails for a reason of its own, or that
waited past the database's lock_timeout for a row another transaction holds, is split in
halves and retried (bisection), so only the request that broke it gets the error (500, or
503 `wallet_busy` for the held wallet); one interrupted by an error of ours or a
cancellation is answered `interrupted()` (for writes: the outcome is unknown); requests
still queued when the event loop closes get 503. A batch may commit in parts (the writer
hands over each wallet's outcomes as they commit): those are answered, and never failed
or run again.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from uuid import UUID

from wallet_api.core.config import Settings
from wallet_api.core.database import is_lock_timeout, is_transient_error
from wallet_api.core.errors import (
    AppError,
    DatabaseUnavailable,
    InternalError,
    OutcomeUnknown,
    ServiceUnavailable,
    WalletBusy,
    wallet_held,
)
from wallet_api.core.metrics import BATCH_SIZE

logger = logging.getLogger(__name__)

#: How long a batch runs before the next one may start beside it (see the docstring).
STALLED_AFTER_SECONDS = 0.02

Op = TypeVar("Op")
Outcome = TypeVar("Outcome")
#: A wallet and its requests, in arrival order.
Group = tuple[UUID, Sequence[Op]]
#: Receives one wallet's outcomes, one per request, as soon as they are final.
Settle = Callable[[UUID, Sequence[Outcome]], None]
#: Runs a batch and returns, for each group, one outcome per request; or raises (with
#: OutcomeUnknown when it cannot tell whether what it sent committed). A batch may commit
#: in parts: the groups it hands to `settle` before it raises are final, and only the
#: others are answered with the failure (or tried again).
BatchApplier = Callable[
    [Sequence[Group[Op]], Settle[Outcome]], Awaitable[Sequence[Sequence[Outcome]]]
]


@dataclass(slots=True, eq=False)
class _Pending(Generic[Op, Outcome]):
    operation: Op
    future: asyncio.Future[Outcome]
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True, eq=False)
class _WalletQueue(Generic[Op, Outcome]):
    pending: deque[_Pending[Op, Outcome]] = field(default_factory=deque)
    in_flight: bool = False


_Batch = list[tuple[UUID, list[_Pending[Op, Outcome]]]]


class GroupCommitQueue(Generic[Op, Outcome]):
    """Funnels concurrent requests on any wallets into batches run by `apply_batch`."""

    def __init__(
        self,
        apply_batch: BatchApplier[Op, Outcome],
        *,
        kind: str,
        max_batch: int,
        max_in_flight: int,
        queue_limit: int,
        deadline: float,
        interrupted: Callable[[], AppError],
    ) -> None:
        self._apply_batch = apply_batch
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue_limit = queue_limit
        self._deadline = deadline
        self._interrupted = interrupted
        self._queues: dict[UUID, _WalletQueue[Op, Outcome]] = {}
        #: Wallets with requests queued and none in flight, in the order they became so.
        self._ready: dict[UUID, None] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._last_start = 0.0  # of the batch that started last (the event loop's clock)
        self._stall_check: asyncio.TimerHandle | None = None
        self._closing = False
        self.kind = kind
        self._batch_size = BATCH_SIZE.labels(kind)

    @classmethod
    def configured(
        cls,
        apply_batch: BatchApplier[Op, Outcome],
        settings: Settings,
        *,
        kind: str,
        interrupted: Callable[[], AppError],
    ) -> GroupCommitQueue[Op, Outcome]:
        """A queue bounded by the coalescing settings (COALESCING_MAX_BATCH, ..._IN_FLIGHT,
        ..._QUEUE_LIMIT, OPERATION_DEADLINE)."""
        return cls(
            apply_batch,
            kind=kind,
            max_batch=settings.coalescing_max_batch,
            max_in_flight=settings.coalescing_max_in_flight,
            queue_limit=settings.coalescing_queue_limit,
            deadline=settings.operation_deadline,
            interrupted=interrupted,
        )

    def queue_depth(self) -> int:
        """Requests waiting in this process (not yet in a batch), over all wallets."""
        return sum(len(queue.pending) for queue in self._queues.values())

    async def submit(self, wallet_id: UUID, operation: Op) -> Outcome:
        """Queue `operation` for its wallet and wait for its outcome."""
        queue = self._queues.get(wallet_id)
        if queue is None:
            queue = self._queues[wallet_id] = _WalletQueue()
        if len(queue.pending) >= self._queue_limit:
            raise WalletBusy(
                f"Too many operations are waiting for wallet {wallet_id}; retry shortly."
            )
        loop = asyncio.get_running_loop()
        item: _Pending[Op, Outcome] = _Pending(operation, loop.create_future())
        item.timer = loop.call_at(loop.time() + self._deadline, self._expire, queue, item)
        queue.pending.append(item)
        if not queue.in_flight:
            self._ready[wallet_id] = None
        self._dispatch()
        return await item.future

    async def close(self) -> None:
        """Wait until every queued request has been run or refused."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _expire(self, queue: _WalletQueue[Op, Outcome], item: _Pending[Op, Outcome]) -> None:
        # Only reached while the item still waits in the queue: taking it cancels the timer.
        queue.pending.remove(item)
        if not item.future.done():
            item.future.set_exception(
                WalletBusy("The operation waited too long for its wallet; it was not applied.")
            )

    def _dispatch(self) -> None:
        """Start a batch when wallets are ready and none runs; beside running ones only
        when they have stalled, up to `max_in_flight`."""
        loop = asyncio.get_running_loop()
        while self._ready and len(self._running) < self._max_in_flight and not self._closing:
            stalled_at = self._last_start + STALLED_AFTER_SECONDS
            if self._running and loop.time() < stalled_at:
                if self._stall_check is None:
                    self._stall_check = loop.call_at(stalled_at, self._stalled)
                return
            batch = self._next_batch()
            if not batch:
                continue
            self._batch_size.observe(sum(len(items) for _, items in batch))
            self._last_start = loop.time()
            # A fresh context: the batch serves many requests, not the one that started it.
            task = loop.create_task(self._run(batch), context=contextvars.Context())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _stalled(self) -> None:
        self._stall_check = None
        self._dispatch()

    def _next_batch(self) -> _Batch[Op, Outcome]:
        batch: _Batch[Op, Outcome] = []
        size = 0
        while self._ready and size < self._max_batch:
            wallet_id = next(iter(self._ready))
            del self._ready[wallet_id]
            queue = self._queues[wallet_id]
            items: list[_Pending[Op, Outcome]] = []
            while queue.pending and size + len(items) < self._max_batch:
                item = queue.pending.popleft()
                if item.timer is not None:
                    item.timer.cancel()
                if not item.future.done():  # its caller was cancelled
                    items.append(item)
            if items:
                queue.in_flight = True
                batch.append((wallet_id, items))
                size += len(items)
            elif queue.pending:  # nothing taken this time: still ready
                self._ready[wallet_id] = None
            else:
                del self._queues[wallet_id]
        return batch

    async def _run(self, batch: _Batch[Op, Outcome]) -> None:
        try:
            await self._apply(batch)
        except Exception as exc:
            # A failure of ours once the batch was handed over: it may have been applied.
            logger.error("a batch failed unexpectedly", exc_info=exc)
            _fail(_items(batch), exc, self._interrupted)
        except BaseException as exc:
            # Cancelled: the event loop is closing, and nothing more runs here.
            self._closing = True
            _fail(_items(batch), exc, self._interrupted)
            waiting = [item for queue in self._queues.values() for item in queue.pending]
            for queue in self._queues.values():
                queue.pending.clear()
            for item in waiting:
                if item.timer is not None:
                    item.timer.cancel()
            _fail(waiting, exc, _not_started)
            raise
        finally:
            for wallet_id, _ in batch:
                done = self._queues.get(wallet_id)
                if done is None:
                    continue
                done.in_flight = False
                if done.pending:
                    self._ready[wallet_id] = None
                else:
                    del self._queues[wallet_id]
            # This batch is done: it no longer counts against `max_in_flight` (its task's
            # own done callback would come too late for the dispatch below).
            self._running.discard(asyncio.current_task())
            if not self._closing:
                self._dispatch()

    async def _apply(self, batch: _Batch[Op, Outcome]) -> None:
        groups = [(wallet_id, [item.operation for item in items]) for wallet_id, items in batch]
        settled: set[UUID] = set()
        items_of = dict(batch)

        def settle(wallet_id: UUID, outcomes: Sequence[Outcome]) -> None:
            settled.add(wallet_id)
            for item, outcome in zip(items_of[wallet_id], outcomes, strict=True):
                if not item.future.done():
                    item.future.set_result(outcome)

        try:
            outcomes = await self._apply_batch(groups, settle)
        except OutcomeUnknown as exc:
            # What was in flight may have been committed: neither "not applied" nor a
            # retry is safe (for the groups not settled; the others have their answers).
            _fail(_items(batch), exc, OutcomeUnknown)
            return
        except Exception as exc:
            # The settled groups committed: they are answered, and never run again.
            left = [(wallet_id, items) for wallet_id, items in batch if wallet_id not in settled]
            size = len(_items(left))
            if is_transient_error(exc) and not is_lock_timeout(exc):
                logger.warning("database unavailable for a batch of %d: %r", size, exc)
                _fail(_items(left), exc, _database_unavailable)
            elif size > 1:
                # Nothing of it was committed. Find the culprit (a failing request, or a
                # wallet whose row another transaction holds): each half on its own.
                logger.warning("batch of %d failed, retrying it in halves: %r", size, exc)
                for half in _halves(left):
                    await self._apply(half)
            elif is_lock_timeout(exc):
                _fail(_items(left), exc, _wallet_locked)
            else:
                _fail(_items(left), exc, _internal_error)
            return
        for (wallet_id, _), group_outcomes in zip(batch, outcomes, strict=True):
            if wallet_id not in settled:
                settle(wallet_id, group_outcomes)


def _items(batch: _Batch[Op, Outcome]) -> list[_Pending[Op, Outcome]]:
    return [item for _, items in batch for item in items]


def _halves(batch: _Batch[Op, Outcome]) -> list[_Batch[Op, Outcome]]:
    """The batch in two parts of about half its requests each, in order: whole wallets
    when it spans several, else the one wallet's requests split (the first part first)."""
    if len(batch) > 1:
        middle = len(batch) // 2
        return [batch[:middle], batch[middle:]]
    ((wallet_id, items),) = batch
    middle = len(items) // 2
    return [[(wallet_id, items[:middle])], [(wallet_id, items[middle:])]]


def _fail(
    items: list[_Pending[Op, Outcome]], cause: BaseException, error: Callable[[], AppError]
) -> None:
    """Answer every caller still waiting with a fresh `error()` (one exception per caller)."""
    for item in items:
        if not item.future.done():
            failure = error()
            failure.__cause__ = cause
            item.future.set_exception(failure)


def _database_unavailable() -> AppError:
    return DatabaseUnavailable("The database is unavailable; the operation was not applied.")


def _wallet_locked() -> AppError:
    return wallet_held()


def _internal_error() -> AppError:
    return InternalError("The operation failed and was not applied.")


def _not_started() -> AppError:
    return ServiceUnavailable("The service stopped before the operation ran; it was not applied.")
