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


def test_two_instances_share_one_limit(key_id: str) -> None:
    async def scenario() -> tuple[list[Decision], list[Decision], list[float]]:
        first_local, second_local = LocalLimiter(None), LocalLimiter(None)
        first = RedisLimiter(REDIS_URL, first_local, prefix=PREFIX)
        second = RedisLimiter(REDIS_URL, second_local, prefix=PREFIX)
        try:
            decisions, started = [], []
            for instance in (first, second, first, second, first, second):
                started.append(time.monotonic())
                decisions.append(await instance.acquire(key_id, 1, 4))
        finally:
            await first.aclose()
            await second.aclose()
        # Redis decided: the fallbacks never counted a request.
        untouched = [local.acquire_now(key_id, 1, 4) for local in (first_local, second_local)]
        return decisions, untouched, [at - started[0] for at in started]

    decisions, untouched, elapsed = asyncio.run(scenario())
    assert [(d.allowed, d.remaining) for d in decisions] == [
        (True, 3),
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
        (False, 0),
    ]
    # Each admitted request adds a second to the bucket's reset, less the time that passed
    # since the first (Redis's clock runs on meanwhile, and a loaded machine is slow).
    resets = [d.reset + since for d, since in zip(decisions[:4], elapsed[:4], strict=True)]
    assert resets == pytest.approx([1, 2, 3, 4], abs=0.1)
    assert decisions[4].retry_after + elapsed[4] > 0.9
    assert decisions[4].retry_after <= 1.0
    assert all(d.remaining == 3 for d in untouched)


def test_the_key_expires_when_its_bucket_is_full(server: redis.Redis, key_id: str) -> None:
    async def scenario() -> Decision:
        limiter = RedisLimiter(REDIS_URL, LocalLimiter(None), prefix=PREFIX)
        try:
            return await limiter.acquire(key_id, 10, 2)
        finally:
            await limiter.aclose()

    assert asyncio.run(scenario()).remaining == 1
    expires_in = server.pttl(PREFIX + key_id)
    assert isinstance(expires_in, int)
    assert 0 < expires_in <= 100  # 1/rate: 100 ms
    time.sleep(0.15)
    assert not server.exists(PREFIX + key_id)


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
