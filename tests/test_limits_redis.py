"""RedisLimiter against the Redis server at 127.0.0.1:6379 (skipped when none answers): two
instances share one limit, the key vanishes once full, and a Redis that fails or does not
answer leaves the decision to the local fallback, with one warning per 30 s."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from wallet_api.auth.limits import (
    REDIS_PAUSE_SECONDS,
    WARN_EVERY_SECONDS,
    Decision,
    LocalLimiter,
    RedisLimiter,
)

REDIS_URL = "redis://127.0.0.1:6379"
PREFIX = "wallet-api-test:ratelimit:"
LOGGER = "wallet_api.auth.limits"


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        pytest.skip(f"no Redis at 127.0.0.1:6379: {error}")
    yield client
    client.close()


@pytest.fixture
def key_id(server: redis.Redis) -> Iterator[str]:
    """A key id of this test's own, so runs never share a limit; its state deleted after."""
    key_id = f"test-{uuid.uuid4().hex}"
    yield key_id
    server.delete(PREFIX + key_id)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


#: One request each 100 s, 4 at once: no token comes back while the test runs, however
#: slow the machine (it would have to take 100 s).
SLOW_RATE = 0.01
SLOW_INTERVAL = 1 / SLOW_RATE
#: Redis's clock (TIME) and this process's run at the same pace; whole microseconds.
CLOCKS_SLACK = 0.001


def test_two_instances_share_one_limit(key_id: str) -> None:
    async def scenario() -> tuple[list[Decision], list[Decision], list[tuple[float, float]]]:
        first_local, second_local = LocalLimiter(None), LocalLimiter(None)
        first = RedisLimiter(REDIS_URL, first_local, prefix=PREFIX)
        second = RedisLimiter(REDIS_URL, second_local, prefix=PREFIX)
        try:
            decisions, spans = [], []
            for instance in (first, second, first, second, first, second):
                before = time.monotonic()
                decisions.append(await instance.acquire(key_id, SLOW_RATE, 4))
                spans.append((before, time.monotonic()))
        finally:
            await first.aclose()
            await second.aclose()
        # Redis decided: the fallbacks never counted a request.
        untouched = [
            local.acquire_now(key_id, SLOW_RATE, 4) for local in (first_local, second_local)
        ]
        return decisions, untouched, spans

    decisions, untouched, spans = asyncio.run(scenario())
    assert [(d.allowed, d.remaining) for d in decisions] == [
        (True, 3),
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
        (False, 0),
    ]
    # By construction, not a tolerance for a slow machine: Redis decided each request at
    # a moment within the span measured around it. The first admitted made the bucket
    # full again 100 s after its moment, each next one 100 s later still; a request is
    # told that time less its own moment, and a refused one when the first token comes
    # back (100 s after the first's moment) less its own.
    (first_start, first_end) = spans[0]

    def bounds(due: float, span: tuple[float, float]) -> tuple[float, float]:
        start, end = span
        return due - (end - first_start) - CLOCKS_SLACK, due - (start - first_end) + CLOCKS_SLACK

    for n, (decision, span) in enumerate(zip(decisions[:4], spans[:4], strict=True)):
        low, high = bounds((n + 1) * SLOW_INTERVAL, span)
        assert low <= decision.reset <= high, (n, decision, span)
    for decision, span in zip(decisions[4:], spans[4:], strict=True):
        low, high = bounds(SLOW_INTERVAL, span)
        assert low <= decision.retry_after <= high, (decision, span)
    assert all(d.remaining == 3 for d in untouched)


def test_the_key_expires_when_its_bucket_is_full(server: redis.Redis, key_id: str) -> None:
    async def scenario() -> Decision:
        limiter = RedisLimiter(REDIS_URL, LocalLimiter(None), prefix=PREFIX)
        try:
            return await limiter.acquire(key_id, 10, 2)
        finally:
            await limiter.aclose()

    started = time.monotonic()
    assert asyncio.run(scenario()).remaining == 1
    expires_in = server.pttl(PREFIX + key_id)
    read_after = (time.monotonic() - started) * 1000
    assert isinstance(expires_in, int)
    # Full again 1/rate (100 ms) after the request, which came at most `read_after` ms
    # before the read (measured around both): the key expires then. A read that a loaded
    # machine made later than that finds it gone (-2), which the bounds allow; a key
    # without an expiry (-1) is refused, and the key must go (polled, not slept for).
    assert expires_in != -1
    assert 100 - read_after - 1 <= expires_in <= 100, (expires_in, read_after)
    deadline = time.monotonic() + 30  # polled: a generous deadline costs nothing
    while server.exists(PREFIX + key_id):
        assert time.monotonic() < deadline, "the key never expired"
        time.sleep(0.02)


def test_a_refused_redis_leaves_the_decision_to_the_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> list[Decision]:
        limiter = RedisLimiter(
            f"redis://127.0.0.1:{closed_port()}",
            LocalLimiter(None, clock=FakeClock()),
            timeout=2,
        )
        try:
            return [await limiter.acquire("key", 1, 2) for _ in range(3)]
        finally:
            await limiter.aclose()

    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        decisions = asyncio.run(scenario())
    # A refused connection is not retried (redis-py 6 would back off for seconds).
    assert time.perf_counter() - started < 0.5
    assert decisions == [
        Decision(True, 1, 1.0, 0.0),
        Decision(True, 0, 2.0, 0.0),
        Decision(False, 0, 2.0, 1.0),
    ]
    warnings = [r for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "ConnectionError" in warnings[0].getMessage()


def test_a_redis_that_does_not_answer_costs_one_timeout() -> None:
    # A listening socket nobody accepts from: the kernel completes the connection, and the
    # command is never answered.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}"

        async def scenario() -> tuple[Decision, float]:
            limiter = RedisLimiter(url, LocalLimiter(None, clock=FakeClock()), timeout=0.1)
            try:
                started = time.perf_counter()
                decision = await limiter.acquire("key", 1, 2)
                return decision, time.perf_counter() - started
            finally:
                await limiter.aclose()

        decision, elapsed = asyncio.run(scenario())
    assert decision == Decision(True, 1, 1.0, 0.0)
    assert elapsed < 0.5


def test_failures_pause_redis_and_warn_at_most_every_30_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monotonic = FakeClock(1000.0)

    async def scenario() -> None:
        limiter = RedisLimiter(
            f"redis://127.0.0.1:{closed_port()}",
            LocalLimiter(None),
            monotonic=monotonic,
        )
        try:
            for at in (0, REDIS_PAUSE_SECONDS / 2, 2, WARN_EVERY_SECONDS - 1, WARN_EVERY_SECONDS):
                monotonic.now = 1000.0 + at
                await limiter.acquire("key", 100, 100)
        finally:
            await limiter.aclose()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2
    assert "1 failure(s)" in messages[0]
    # At 2 s, 29 s and 30 s; not within the pause after the first failure.
    assert "3 failure(s)" in messages[1]
