"""Per-wallet coalescing: application-level group commit, and single-flight reads.

While one batch for a wallet is in flight, further requests for that wallet in this
process wait in the wallet's queue. The next batch takes up to `max_batch` of them, in
arrival order, and runs them together (for writes: one transaction, one commit). Only
then does each caller get its own outcome. A request never joins a batch that started
before it arrived, so it sees every write acknowledged before it was sent.
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

from wallet_api.core.database import is_transient_error
from wallet_api.core.errors import (
    AppError,
    DatabaseUnavailable,
    InternalError,
    OutcomeUnknown,
    ServiceUnavailable,
)
from wallet_api.core.metrics import BATCH_SIZE
from wallet_api.wallets.exceptions import WalletBusy

logger = logging.getLogger(__name__)

Op = TypeVar("Op")
Outcome = TypeVar("Outcome")
BatchApplier = Callable[[UUID, Sequence[Op]], Awaitable[list[Outcome]]]


@dataclass(slots=True, eq=False)
class _Pending(Generic[Op, Outcome]):
    operation: Op
    future: asyncio.Future[Outcome]
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True, eq=False)
class _WalletQueue(Generic[Op, Outcome]):
    pending: deque[_Pending[Op, Outcome]] = field(default_factory=deque)
    draining: bool = False


class Coalescer(Generic[Op, Outcome]):
    """Funnels concurrent requests on one wallet into batches run by `apply_batch`.

    `apply_batch(wallet_id, operations)` must run them in order as one unit and return one
    outcome per operation, or raise having applied none of them (OutcomeUnknown when it
    cannot tell). Every caller gets an answer, whatever happens to the batch: a batch
    interrupted once handed over (the drainer cancelled, an error of ours) answers
    `interrupted()` (for writes: the outcome is unknown); requests still queued behind it
    when its drainer is cancelled answer 503 "not applied".
    """

    def __init__(
        self,
        apply_batch: BatchApplier[Op, Outcome],
        *,
        kind: str,
        max_batch: int,
        queue_limit: int,
        deadline: float,
        interrupted: Callable[[], AppError],
    ) -> None:
        self._apply_batch = apply_batch
        self._max_batch = max_batch
        self._queue_limit = queue_limit
        self._deadline = deadline
        self._interrupted = interrupted
        self._queues: dict[UUID, _WalletQueue[Op, Outcome]] = {}
        self._drainers: set[asyncio.Task[None]] = set()
        self.kind = kind
        self._batch_size = BATCH_SIZE.labels(kind)

    def queue_depth(self) -> int:
        """Operations waiting in this process, over all wallets."""
        return sum(len(queue.pending) for queue in self._queues.values())

    async def submit(self, wallet_id: UUID, operation: Op) -> Outcome:
        """Queue `operation` behind the wallet's in-flight batch and wait for its outcome."""
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
        if not queue.draining:
            queue.draining = True
            # A fresh context: the drainer serves many requests, not the one that woke it.
            drainer = loop.create_task(self._drain(wallet_id, queue), context=contextvars.Context())
            self._drainers.add(drainer)
            drainer.add_done_callback(self._drainers.discard)
        return await item.future

    async def close(self) -> None:
        """Wait until every queued operation has been applied or refused."""
        while self._drainers:
            await asyncio.gather(*self._drainers, return_exceptions=True)

    def _expire(self, queue: _WalletQueue[Op, Outcome], item: _Pending[Op, Outcome]) -> None:
        # Only reached while the item still waits in the queue: taking it cancels the timer.
        queue.pending.remove(item)
        if not item.future.done():
            item.future.set_exception(
                WalletBusy("The operation waited too long for its wallet; it was not applied.")
            )

    def _next_batch(self, queue: _WalletQueue[Op, Outcome]) -> list[_Pending[Op, Outcome]]:
        batch: list[_Pending[Op, Outcome]] = []
        while queue.pending and len(batch) < self._max_batch:
            item = queue.pending.popleft()
            if item.timer is not None:
                item.timer.cancel()
            if not item.future.done():  # its caller was cancelled
                batch.append(item)
        return batch

    async def _drain(self, wallet_id: UUID, queue: _WalletQueue[Op, Outcome]) -> None:
        try:
            while queue.pending:
                batch = self._next_batch(queue)
                if not batch:
                    continue
                self._batch_size.observe(len(batch))
                try:
                    await self._run(wallet_id, batch)
                except Exception as exc:
                    # A failure of ours once the batch was handed over: it may have been
                    # applied. Answer its callers and go on with the queue.
                    logger.error("a coalesced batch failed unexpectedly", exc_info=exc)
                    _fail(batch, exc, self._interrupted)
                except BaseException as exc:
                    # Cancelled (the event loop is closing): nothing more runs here.
                    _fail(batch, exc, self._interrupted)
                    waiting = list(queue.pending)
                    queue.pending.clear()
                    for item in waiting:
                        if item.timer is not None:
                            item.timer.cancel()
                    _fail(waiting, exc, _not_started)
                    raise
        finally:
            queue.draining = False
            if not queue.pending and self._queues.get(wallet_id) is queue:
                del self._queues[wallet_id]

    async def _run(self, wallet_id: UUID, batch: list[_Pending[Op, Outcome]]) -> None:
        try:
            outcomes = await self._apply_batch(wallet_id, [item.operation for item in batch])
        except OutcomeUnknown as exc:
            # The batch may have been committed: neither "not applied" nor a retry is safe.
            _fail(batch, exc, OutcomeUnknown)
            return
        except Exception as exc:
            if is_transient_error(exc):
                logger.warning("database unavailable for a batch of %d: %r", len(batch), exc)
                _fail(batch, exc, _database_unavailable)
            elif len(batch) > 1:
                # Nothing was committed. Isolate the culprit: replay the batch one at a time.
                logger.warning("batch of %d failed, retrying one by one: %r", len(batch), exc)
                for item in batch:
                    await self._run(wallet_id, [item])
            else:
                _fail(batch, exc, _internal_error)
            return
        for item, outcome in zip(batch, outcomes, strict=True):
            if not item.future.done():
                item.future.set_result(outcome)


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


def _internal_error() -> AppError:
    return InternalError("The operation failed and was not applied.")


def _not_started() -> AppError:
    return ServiceUnavailable("The service stopped before the operation ran; it was not applied.")
