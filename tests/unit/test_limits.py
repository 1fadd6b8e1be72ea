"""Per-API-key rate limits (wallet_api.auth.limits): the GCRA arithmetic on a fake clock,
the table shared by real processes through a file, and the headers.

Redis's side is in tests/test_limits_redis.py.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import os
import signal
import time
from pathlib import Path

import pytest

from wallet_api.auth.limits import (
    PROBE,
    SHM_DIRECTORY,
    SLOTS,
    TABLE_BYTES,
    Decision,
    LocalLimiter,
    _key_hash,
    create_table,
    rate_limit_headers,
)

#: A wall-clock time of 2027, where a float second carries only ~0.24 us.
EPOCH = 1_800_000_000.0

FORK = multiprocessing.get_context("fork")


class FakeClock:
    """time.time that moves only when told."""

    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> LocalLimiter:
    return LocalLimiter(None, clock=clock)


def test_a_burst_passes_then_refusal_then_one_more_after_the_interval(
    clock: FakeClock, limiter: LocalLimiter
) -> None:
    burst = [limiter.acquire_now("key", 10, 3) for _ in range(3)]
    assert burst == [
        Decision(allowed=True, remaining=2, reset=0.1, retry_after=0.0),
        Decision(allowed=True, remaining=1, reset=0.2, retry_after=0.0),
        Decision(allowed=True, remaining=0, reset=0.3, retry_after=0.0),
    ]
    assert limiter.acquire_now("key", 10, 3) == Decision(False, 0, 0.3, 0.1)

    clock.advance(0.04)
    assert limiter.acquire_now("key", 10, 3) == Decision(False, 0, 0.26, 0.06)
    clock.advance(0.06)  # 1/rate since the bucket emptied
    assert limiter.acquire_now("key", 10, 3) == Decision(True, 0, 0.3, 0.0)
    assert limiter.acquire_now("key", 10, 3) == Decision(False, 0, 0.3, 0.1)


def test_a_refusal_changes_nothing(clock: FakeClock, limiter: LocalLimiter) -> None:
    assert limiter.acquire_now("key", 2, 1).allowed
    refusals = [limiter.acquire_now("key", 2, 1) for _ in range(5)]
    assert refusals == [Decision(False, 0, 0.5, 0.5)] * 5
    clock.advance(0.5)
    assert limiter.acquire_now("key", 2, 1) == Decision(True, 0, 0.5, 0.0)


def test_an_idle_key_fills_up_to_its_burst_and_no_further(
    clock: FakeClock, limiter: LocalLimiter
) -> None:
    for _ in range(4):
        limiter.acquire_now("key", 4, 4)
    clock.advance(0.5)  # two intervals: two requests' worth back
    assert limiter.acquire_now("key", 4, 4) == Decision(True, 1, 0.75, 0.0)
    clock.advance(3600)
    assert limiter.acquire_now("key", 4, 4) == Decision(True, 3, 0.25, 0.0)


def test_keys_have_limits_of_their_own(limiter: LocalLimiter) -> None:
    assert limiter.acquire_now("first", 1, 1).allowed
    assert not limiter.acquire_now("first", 1, 1).allowed
    assert limiter.acquire_now("second", 1, 1) == Decision(True, 0, 1.0, 0.0)


def test_whole_microseconds_keep_a_fast_burst_exact(limiter: LocalLimiter) -> None:
    """At 12,345 requests a second, float seconds near EPOCH lost a request of each burst."""
    decisions = [limiter.acquire_now("key", 12_345, 64) for _ in range(65)]
    assert [d.remaining for d in decisions[:64]] == list(range(63, -1, -1))
    assert all(d.allowed for d in decisions[:64])
    assert not decisions[64].allowed


def test_a_clock_stepped_back_costs_one_refill_not_the_jump(
    clock: FakeClock, limiter: LocalLimiter
) -> None:
    for _ in range(3):
        limiter.acquire_now("key", 10, 3)
    clock.advance(-3600)
    assert limiter.acquire_now("key", 10, 3) == Decision(False, 0, 0.3, 0.1)
    clock.advance(0.1)
    assert limiter.acquire_now("key", 10, 3).allowed


@pytest.mark.parametrize(
    ("rate", "burst"), [(0, 1), (-1, 1), (math.nan, 1), (math.inf, 1), (1, 0), (1, -3)]
)
def test_limits_that_are_not_positive_are_refused(
    limiter: LocalLimiter, rate: float, burst: int
) -> None:
    with pytest.raises(ValueError, match="must be"):
        limiter.acquire_now("key", rate, burst)


def _same_neighbourhood(count: int) -> list[str]:
    """`count` key ids whose hashes have the same home slot."""
    by_home: dict[int, list[str]] = {}
    for number in range(SLOTS * count * 4):
        key_id = f"key-{number}"
        keys = by_home.setdefault(_key_hash(key_id) % SLOTS, [])
        keys.append(key_id)
        if len(keys) == count:
            return keys
    raise AssertionError("no neighbourhood filled up")


def test_a_full_neighbourhood_gives_up_the_key_with_the_oldest_tat(
    clock: FakeClock, limiter: LocalLimiter
) -> None:
    *residents, newcomer = _same_neighbourhood(PROBE + 1)
    # One request a minute: every resident stays limited throughout, the first one's TAT
    # the oldest.
    for key_id in residents:
        assert limiter.acquire_now(key_id, 1 / 60, 1).allowed
        clock.advance(1)

    assert limiter.acquire_now(newcomer, 1 / 60, 1).allowed
    assert not limiter.acquire_now(newcomer, 1 / 60, 1).allowed  # it has a slot now
    assert not any(limiter.acquire_now(key, 1 / 60, 1).allowed for key in residents[1:])
    assert limiter.acquire_now(residents[0], 1 / 60, 1).allowed  # forgotten: a fresh bucket


def test_acquire_is_acquire_now(limiter: LocalLimiter) -> None:
    decision = asyncio.run(limiter.acquire("key", 10, 2))
    assert decision == Decision(True, 1, 0.1, 0.0)
    assert limiter.acquire_now("key", 10, 2).remaining == 0


def test_limiters_opening_one_table_share_its_limits(tmp_path: Path, clock: FakeClock) -> None:
    path = create_table(str(tmp_path))
    assert Path(path).parent == tmp_path
    assert Path(path).stat().st_size == TABLE_BYTES
    first = LocalLimiter(path, clock=clock)
    second = LocalLimiter(path, clock=clock)
    assert first.acquire_now("key", 1, 2).remaining == 1
    assert second.acquire_now("key", 1, 2).remaining == 0
    assert not first.acquire_now("key", 1, 2).allowed
    first.close()
    first.close()
    asyncio.run(second.aclose())


def test_a_missing_table_is_created_and_a_foreign_file_refused(tmp_path: Path) -> None:
    LocalLimiter(str(tmp_path / "new")).close()
    assert (tmp_path / "new").stat().st_size == TABLE_BYTES
    (tmp_path / "foreign").write_bytes(b"not a table")
    with pytest.raises(ValueError, match="not a rate-limit table"):
        LocalLimiter(str(tmp_path / "foreign"))


def test_create_table_prefers_dev_shm() -> None:
    path = Path(create_table())
    try:
        shm = Path(SHM_DIRECTORY)
        expected = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        if expected is not None:
            assert path.parent == expected
        assert path.stat().st_size == TABLE_BYTES
        assert path.stat().st_mode & 0o077 == 0
    finally:
        path.unlink()


def test_headers_of_an_allowed_request() -> None:
    decision = Decision(allowed=True, remaining=4, reset=0.25, retry_after=0.0)
    assert rate_limit_headers(decision, 10, 5) == [
        (b"ratelimit-policy", b'"burst";q=5;w=1'),
        (b"ratelimit", b'"burst";r=4;t=1'),
    ]


def test_headers_of_a_refused_request() -> None:
    decision = Decision(allowed=False, remaining=0, reset=5.2, retry_after=2.0)
    assert rate_limit_headers(decision, 0.5, 3) == [
        (b"ratelimit-policy", b'"burst";q=3;w=6'),
        (b"ratelimit", b'"burst";r=0;t=6'),
        (b"retry-after", b"2"),
    ]


def test_headers_round_up_but_not_for_float_noise() -> None:
    decision = Decision(allowed=False, remaining=0, reset=2.000001, retry_after=0.01)
    assert rate_limit_headers(decision, 1 / 49, 1) == [
        (b"ratelimit-policy", b'"burst";q=1;w=49'),  # 1 / (1 / 49) == 49.00000000000001
        (b"ratelimit", b'"burst";r=0;t=3'),
        (b"retry-after", b"1"),
    ]


def test_headers_never_say_less_than_a_second() -> None:
    decision = Decision(allowed=False, remaining=0, reset=0.0, retry_after=0.0)
    assert rate_limit_headers(decision, 1000, 1) == [
        (b"ratelimit-policy", b'"burst";q=1;w=1'),
        (b"ratelimit", b'"burst";r=0;t=0'),
        (b"retry-after", b"1"),
    ]


# Real processes, each with its own LocalLimiter on one table file, as Gunicorn's workers.

RATE = 1000.0
BURST = 50
HAMMER_SECONDS = 0.5
PROCESSES = 3


def _hammer(
    path: str, key_id: str, start: float, stop: float, results: multiprocessing.queues.Queue[int]
) -> None:
    limiter = LocalLimiter(path)
    time.sleep(max(0.0, start - time.time()))
    allowed = 0
    while time.time() < stop:
        allowed += limiter.acquire_now(key_id, RATE, BURST).allowed
    results.put(allowed)


def test_processes_hammering_one_table_get_one_limit(tmp_path: Path) -> None:
    path = create_table(str(tmp_path))
    results: multiprocessing.queues.Queue[int] = FORK.Queue()
    start = time.time() + 0.2  # every process started and waiting
    stop = start + HAMMER_SECONDS
    processes = [
        FORK.Process(target=_hammer, args=(path, "shared", start, stop, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        counts = [results.get(timeout=10) for _ in processes]
    finally:
        for process in processes:
            process.join(5)
            process.kill()
    assert all(counts), f"a process got nothing: {counts}"
    ceiling = BURST + RATE * HAMMER_SECONDS
    assert ceiling * 0.9 <= sum(counts) <= ceiling + 2, counts


def _hold_the_lock(path: str, inside: multiprocessing.synchronize.Event) -> None:
    """Take the table's lock through the limiter (its clock is read under the lock) and
    keep it until killed."""

    def stuck_clock() -> float:
        inside.set()
        time.sleep(60)
        return time.time()

    LocalLimiter(path, clock=stuck_clock).acquire_now("holder", 1, 1)


def _acquire_once(path: str, done: multiprocessing.synchronize.Event) -> None:
    LocalLimiter(path).acquire_now("other", 1, 1)
    done.set()


def test_a_worker_killed_holding_the_lock_does_not_block_the_others(tmp_path: Path) -> None:
    path = create_table(str(tmp_path))
    inside, done = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_the_lock, args=(path, inside))
    waiter = FORK.Process(target=_acquire_once, args=(path, done))
    try:
        holder.start()
        assert inside.wait(5), "the holder never took the lock"
        waiter.start()
        assert not done.wait(0.3), "another process acquired while the lock was held"

        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(5)
        assert holder.exitcode == -signal.SIGKILL
        assert done.wait(2), "the lock of a killed process still blocks the others"
    finally:
        for process in (holder, waiter):
            if process.pid is not None:
                process.kill()
                process.join(5)
