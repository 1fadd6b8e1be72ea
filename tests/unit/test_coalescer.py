"""The coalescer's promise that every caller is answered, whatever becomes of its batch.

Pure asyncio: an in-process batch function stands in for the service's writer, because
what is tested is the queue's own bookkeeping when a batch is interrupted (a cancelled
drainer, an error of ours). The database paths of the same promise are tested over HTTP
against PostgreSQL in test_faults.py and test_coalescing.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from uuid import UUID, uuid4

import pytest

from wallet_api.core.errors import OutcomeUnknown, ServiceUnavailable
from wallet_api.wallets.coalescer import Coalescer

#: Longer than any of these scenarios takes: a caller still waiting then is left waiting.
PATIENCE_SECONDS = 2.0


def coalescer(apply: object) -> Coalescer[int, str]:
    return Coalescer(
        apply,  # type: ignore[arg-type]
        kind="write",
        max_batch=2,
        queue_limit=100,
        deadline=60,
        interrupted=OutcomeUnknown,
    )


async def answers(callers: list[asyncio.Task[str]]) -> list[str | BaseException]:
    async with asyncio.timeout(PATIENCE_SECONDS):
        return await asyncio.gather(*callers, return_exceptions=True)


def test_callers_of_a_cancelled_drainer_are_answered_not_left_waiting() -> None:
    """The batch in flight may have been applied: `outcome_unknown`. The requests queued
    behind it never ran: 503 "not applied"."""

    async def scenario() -> list[str | BaseException]:
        started = asyncio.Event()

        async def apply(_: UUID, operations: Sequence[int]) -> list[str]:
            started.set()
            await asyncio.Event().wait()  # a commit that never answers
            return [str(operation) for operation in operations]

        queue = coalescer(apply)
        wallet = uuid4()
        callers = [asyncio.create_task(queue.submit(wallet, n)) for n in range(5)]
        await started.wait()
        (drainer,) = [
            task
            for task in asyncio.all_tasks()
            if getattr(task.get_coro(), "__qualname__", "") == "Coalescer._drain"
        ]
        drainer.cancel()
        return await answers(callers)

    results = asyncio.run(scenario())
    assert [type(result) for result in results] == [OutcomeUnknown] * 2 + [ServiceUnavailable] * 3


def test_an_error_of_ours_after_a_batch_fails_that_batch_only_and_the_queue_goes_on() -> None:
    """A batch function that breaks its contract (here: too few outcomes) is a bug; its
    callers are told the outcome is unknown, and the batches behind it still run."""

    async def scenario() -> list[str | BaseException]:
        calls: list[list[int]] = []

        async def apply(_: UUID, operations: Sequence[int]) -> list[str]:
            calls.append(list(operations))
            await asyncio.sleep(0.01)
            if len(calls) == 1:
                return []
            return [f"applied {operation}" for operation in operations]

        queue = coalescer(apply)
        wallet = uuid4()
        callers = [asyncio.create_task(queue.submit(wallet, n)) for n in range(5)]
        return await answers(callers)

    results = asyncio.run(scenario())
    assert [type(result) for result in results[:2]] == [OutcomeUnknown] * 2
    assert results[2:] == ["applied 2", "applied 3", "applied 4"]


def test_a_batch_whose_outcome_is_unknown_fails_only_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its callers are told the outcome is unknown; the batches behind it run as usual,
    and nothing unexpected happened on the way (no error of the coalescer's own)."""

    async def scenario() -> list[str | BaseException]:
        calls: list[list[int]] = []

        async def apply(_: UUID, operations: Sequence[int]) -> list[str]:
            calls.append(list(operations))
            await asyncio.sleep(0.01)
            if len(calls) == 1:
                raise OutcomeUnknown
            return [f"applied {operation}" for operation in operations]

        queue = coalescer(apply)
        wallet = uuid4()
        callers = [asyncio.create_task(queue.submit(wallet, n)) for n in range(5)]
        return await answers(callers)

    with caplog.at_level(logging.ERROR):
        results = asyncio.run(scenario())
    assert [type(result) for result in results[:2]] == [OutcomeUnknown] * 2
    assert results[2:] == ["applied 2", "applied 3", "applied 4"]
    assert not caplog.records
