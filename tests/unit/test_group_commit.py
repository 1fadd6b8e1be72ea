"""The group-commit queue's promises, in pure asyncio: batches span wallets, a wallet is in
one batch at a time and keeps its order, the bounds hold, and every caller is answered
whatever becomes of its batch.

An in-process batch function stands in for the writer, because what is tested is the
queue's own bookkeeping. The same promises over the database are tested over HTTP
against PostgreSQL (test_faults.py, test_coalescing.py, test_concurrency.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from uuid import UUID, uuid4

import asyncpg
import pytest

from wallet_api.core.errors import (
    DatabaseUnavailable,
    InternalError,
    OutcomeUnknown,
    ServiceUnavailable,
)
from wallet_api.posting.queue import STALLED_AFTER_SECONDS, Group, GroupCommitQueue, Settle

#: Longer than any of these scenarios takes: a caller still waiting then is left waiting.
PATIENCE_SECONDS = 2.0

Batches = list[list[tuple[UUID, list[int]]]]


def queue(
    apply: object, *, max_batch: int = 2, max_in_flight: int = 1
) -> GroupCommitQueue[int, str]:
    return GroupCommitQueue(
        apply,  # type: ignore[arg-type]
        kind="write",
        max_batch=max_batch,
        max_in_flight=max_in_flight,
        queue_limit=100,
        deadline=60,
        interrupted=OutcomeUnknown,
    )


def recorder(batches: Batches, delay: float = 0.01) -> object:
    """A batch function that records each batch and applies every operation."""

    async def apply(groups: Sequence[Group[int]], _: object = None) -> list[list[str]]:
        batches.append([(wallet, list(operations)) for wallet, operations in groups])
        await asyncio.sleep(delay)
        return [[f"applied {operation}" for operation in operations] for _, operations in groups]

    return apply


async def answers(callers: list[asyncio.Task[str]]) -> list[str | BaseException]:
    async with asyncio.timeout(PATIENCE_SECONDS):
        return await asyncio.gather(*callers, return_exceptions=True)


def test_requests_on_many_wallets_that_arrive_together_are_one_batch() -> None:
    wallets = [uuid4() for _ in range(5)]
    batches: Batches = []

    async def scenario() -> list[str | BaseException]:
        group_commit = queue(recorder(batches), max_batch=100)
        first = asyncio.create_task(group_commit.submit(wallets[0], 0))
        await asyncio.sleep(0)  # the first batch starts with the one request there is
        callers = [
            asyncio.create_task(group_commit.submit(wallet, n))
            for n, wallet in enumerate(wallets * 2, start=1)
        ]
        return await answers([first, *callers])

    results = asyncio.run(scenario())
    assert results == [f"applied {n}" for n in range(11)]
    assert batches[0] == [(wallets[0], [0])]
    # Everything that arrived meanwhile: one batch over the five wallets, each wallet's
    # requests together and in arrival order; the first wallet's, which waited behind its
    # batch in flight, come last (it became ready again last).
    others = [(wallet, [n + 1, n + 6]) for n, wallet in enumerate(wallets) if n]
    assert batches[1] == [*others, (wallets[0], [1, 6])]
    assert len(batches) == 2


def test_a_wallet_is_in_one_batch_at_a_time_and_keeps_its_order() -> None:
    hot, cold = uuid4(), uuid4()
    batches: Batches = []
    in_flight: set[UUID] = set()
    overlaps: list[UUID] = []

    async def apply(groups: Sequence[Group[int]], _: object = None) -> list[list[str]]:
        for wallet, _ in groups:
            if wallet in in_flight:
                overlaps.append(wallet)
            in_flight.add(wallet)
        batches.append([(wallet, list(operations)) for wallet, operations in groups])
        await asyncio.sleep(0.01)
        for wallet, _ in groups:
            in_flight.discard(wallet)
        return [[f"applied {operation}" for operation in operations] for _, operations in groups]

    async def scenario() -> list[str | BaseException]:
        group_commit = queue(apply, max_batch=3, max_in_flight=4)
        callers = []
        for n in range(30):
            wallet = hot if n % 3 else cold
            callers.append(asyncio.create_task(group_commit.submit(wallet, n)))
            if n % 7 == 0:
                await asyncio.sleep(0.003)
        return await answers(callers)

    results = asyncio.run(scenario())
    assert results == [f"applied {n}" for n in range(30)]
    assert not overlaps
    assert all(sum(len(ops) for _, ops in batch) <= 3 for batch in batches)
    applied = {hot: [], cold: []}  # type: dict[UUID, list[int]]
    for batch in batches:
        for wallet, operations in batch:
            applied[wallet] += operations
    assert applied[hot] == [n for n in range(30) if n % 3]
    assert applied[cold] == [n for n in range(30) if not n % 3]


def most_at_once(seconds_per_batch: float, *, requests: int = 20) -> tuple[int, int]:
    """Run `requests` one-request batches, each taking `seconds_per_batch`: the most that
    ran at once, and how many batches there were (max_batch 5, max_in_flight 3)."""
    running = most = batches = 0

    async def apply(groups: Sequence[Group[int]], _: object = None) -> list[list[str]]:
        nonlocal running, most, batches
        running += 1
        batches += 1
        most = max(most, running)
        await asyncio.sleep(seconds_per_batch)
        running -= 1
        return [["ok"] * len(operations) for _, operations in groups]

    async def scenario() -> list[str | BaseException]:
        group_commit = queue(apply, max_batch=5, max_in_flight=3)
        return await answers(
            [asyncio.create_task(group_commit.submit(uuid4(), n)) for n in range(requests)]
        )

    assert asyncio.run(scenario()) == ["ok"] * requests
    return most, batches


def test_quick_batches_run_one_at_a_time_and_gather_what_arrives() -> None:
    most, batches = most_at_once(STALLED_AFTER_SECONDS / 4)
    assert most == 1
    assert batches == 5  # the first request alone, then batches of five (the last of four)


def test_stalled_batches_let_others_run_beside_them_up_to_the_limit() -> None:
    most, _ = most_at_once(STALLED_AFTER_SECONDS * 5)
    assert most == 3


def test_a_batch_that_breaks_on_one_request_fails_only_that_request() -> None:
    """Split in halves until the culprit is alone: it gets a 500, the others their own
    outcomes, each wallet's requests still in order."""
    wallets = [uuid4() for _ in range(4)]
    applied: list[int] = []

    async def apply(groups: Sequence[Group[int]], _: object = None) -> list[list[str]]:
        await asyncio.sleep(0)
        if any(13 in operations for _, operations in groups):
            raise asyncpg.RaiseError("poisoned")
        applied.extend(operation for _, operations in groups for operation in operations)
        return [[f"applied {operation}" for operation in operations] for _, operations in groups]

    async def scenario() -> list[str | BaseException]:
        group_commit = queue(apply, max_batch=100)
        blocker = asyncio.create_task(group_commit.submit(wallets[0], 0))
        await asyncio.sleep(0)
        callers = [
            asyncio.create_task(group_commit.submit(wallets[n % 4], n)) for n in range(1, 20)
        ]
        return await answers([blocker, *callers])

    results = asyncio.run(scenario())
    assert isinstance(results[13], InternalError)
    assert [r for n, r in enumerate(results) if n != 13] == [
        f"applied {n}" for n in range(20) if n != 13
    ]
    for wallet_index in range(4):
        mine = [n for n in applied if n % 4 == wallet_index and n]
        assert mine == sorted(mine)


def test_an_unavailable_database_fails_the_whole_batch_as_not_applied() -> None:
    async def apply(groups: Sequence[Group[int]], _: object = None) -> list[list[str]]:
        await asyncio.sleep(0)
        raise ConnectionRefusedError("down")

    async def scenario() -> list[str | BaseException]:
        group_commit = queue(apply, max_batch=10)
        return await answers(
            [asyncio.create_task(group_commit.submit(uuid4(), n)) for n in range(5)]
        )

    assert {type(result) for result in asyncio.run(scenario())} == {DatabaseUnavailable}


def test_callers_of_a_cancelled_batch_are_answered_not_left_waiting() -> None:
    """The batch in flight may have been applied: `outcome_unknown`. The requests queued
    behind it never ran: 503 "not applied"."""

    async def scenario() -> list[str | BaseException]:
        started = asyncio.Event()

        async def apply(groups: Sequence[Group[int]], _: object = None) -> list[list[str]]:
            started.set()
            await asyncio.Event().wait()  # a commit that never answers
            return []

        group_commit = queue(apply)
        wallet = uuid4()
        callers = [asyncio.create_task(group_commit.submit(wallet, n)) for n in range(5)]
        await started.wait()
        (batch,) = [
            task
            for task in asyncio.all_tasks()
            if getattr(task.get_coro(), "__qualname__", "") == "GroupCommitQueue._run"
        ]
        batch.cancel()
        return await answers(callers)

    results = asyncio.run(scenario())
    assert [type(result) for result in results] == [OutcomeUnknown] + [ServiceUnavailable] * 4


def test_an_error_of_ours_after_a_batch_fails_that_batch_only_and_the_queue_goes_on() -> None:
    """A batch function that breaks its contract (here: too few outcomes) is a bug; its
    callers are told the outcome is unknown, and the batches behind it still run."""

    async def scenario() -> list[str | BaseException]:
        calls: list[list[int]] = []

        async def apply(groups: Sequence[Group[int]], _: object = None) -> list[list[str]]:
            ((_, operations),) = groups
            calls.append(list(operations))
            await asyncio.sleep(0.01)
            if len(calls) == 1:
                return [[]]
            return [[f"applied {operation}" for operation in operations]]

        group_commit = queue(apply)
        wallet = uuid4()
        callers = [asyncio.create_task(group_commit.submit(wallet, n)) for n in range(5)]
        return await answers(callers)

    results = asyncio.run(scenario())
    assert isinstance(results[0], OutcomeUnknown)
    assert results[1:] == ["applied 1", "applied 2", "applied 3", "applied 4"]


def test_a_batch_whose_outcome_is_unknown_fails_only_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its callers are told the outcome is unknown; the batches behind it run as usual,
    and nothing unexpected happened on the way (no error of the queue's own)."""

    async def scenario() -> list[str | BaseException]:
        calls: list[list[int]] = []

        async def apply(groups: Sequence[Group[int]], _: object = None) -> list[list[str]]:
            ((_, operations),) = groups
            calls.append(list(operations))
            await asyncio.sleep(0.01)
            if len(calls) == 1:
                raise OutcomeUnknown
            return [[f"applied {operation}" for operation in operations]]

        group_commit = queue(apply)
        wallet = uuid4()
        callers = [asyncio.create_task(group_commit.submit(wallet, n)) for n in range(5)]
        return await answers(callers)

    with caplog.at_level(logging.ERROR):
        results = asyncio.run(scenario())
    assert isinstance(results[0], OutcomeUnknown)
    assert results[1:] == ["applied 1", "applied 2", "applied 3", "applied 4"]
    assert not caplog.records


def test_groups_settled_before_a_failure_keep_their_answers_and_are_not_run_again() -> None:
    """A batch that commits in rounds hands over each wallet's outcomes as they commit; if
    a later round fails, only the wallets not settled are answered with the failure, or
    tried again (never the ones whose write committed)."""
    first, second, third = uuid4(), uuid4(), uuid4()
    runs: list[list[UUID]] = []

    async def apply(groups: Sequence[Group[int]], settle: Settle[str]) -> list[list[str]]:
        runs.append([wallet for wallet, _ in groups])
        await asyncio.sleep(0.01)
        if len(groups) == 3:
            settle(first, ["committed 0"])
            raise asyncpg.RaiseError("the second round failed")
        return [[f"applied {operation}" for operation in operations] for _, operations in groups]

    results = asyncio.run(behind_a_blocker(apply, [first, second, third]))
    assert results == ["applied 99", "committed 0", "applied 1", "applied 2"]
    assert runs[1:] == [[first, second, third], [second], [third]]  # never the first again


def test_groups_settled_before_an_unavailable_database_are_not_told_not_applied() -> None:
    first, second = uuid4(), uuid4()

    async def apply(groups: Sequence[Group[int]], settle: Settle[str]) -> list[list[str]]:
        await asyncio.sleep(0.01)
        if len(groups) == 1:
            return [["applied"]]
        settle(first, ["committed"])
        raise ConnectionResetError("the connection broke before the second round")

    results = asyncio.run(behind_a_blocker(apply, [first, second]))
    assert results[:2] == ["applied", "committed"]
    assert isinstance(results[2], DatabaseUnavailable)


async def behind_a_blocker(apply: object, wallets: list[UUID]) -> list[str | BaseException]:
    """One request on a wallet of its own, then one on each of `wallets` while it runs:
    those form the next batch, together."""
    group_commit = queue(apply, max_batch=10)
    blocker = asyncio.create_task(group_commit.submit(uuid4(), 99))
    await asyncio.sleep(0)
    callers = [asyncio.create_task(group_commit.submit(w, n)) for n, w in enumerate(wallets)]
    return await answers([blocker, *callers])
