"""Rate limits per API key, over HTTP: a token bucket shared by the workers of an
instance, and with REDIS_URL by every instance that shares the Redis server."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from tests.support import Key, TestDatabase, create_key, worker_of
from tests.test_auth import WALLETS
from wallet_api.devtools.server import ServiceProcess

REDIS = ("127.0.0.1", 6379)


def redis_answers() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def read(service: ServiceProcess, key: Key, wallet: str) -> httpx.Response:
    """One balance read on a connection of its own (so that both workers answer)."""
    with httpx.Client(base_url=service.base_url, timeout=10) as fresh:
        return fresh.get(f"{WALLETS}/{wallet}", headers=key.headers)


def spend_burst(
    services: list[ServiceProcess], key: Key, wallet: str, burst: int
) -> list[httpx.Response]:
    """`burst` reads spread over the services (in turn) and their workers."""
    return [read(services[i % len(services)], key, wallet) for i in range(burst)]


def new_wallet(service: ServiceProcess, key: Key) -> str:
    with httpx.Client(base_url=service.base_url, timeout=10) as http:
        created = http.post(f"{WALLETS}/create_wallet", headers=key.headers)
    assert created.status_code == 201, created.text
    return str(created.json()["wallet_uuid"])


@contextmanager
def one_connection_to_each_worker(service: ServiceProcess) -> Iterator[list[httpx.Client]]:
    """A kept-alive connection to each of the service's two workers: a connection is served
    by the worker that accepted it, found by a probe that no key or limit guards."""
    by_worker: dict[str, httpx.Client] = {}
    with ExitStack() as stack:
        for _ in range(200):
            if len(by_worker) == 2:
                break
            http = stack.enter_context(httpx.Client(base_url=service.base_url, timeout=30))
            by_worker.setdefault(worker_of(http.get("/health/live")), http)
        assert len(by_worker) == 2, "every connection went to one worker"
        yield list(by_worker.values())


def test_429_after_the_burst_across_both_workers_then_recovery(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    """By construction, whatever the machine's load: the requests alternate between the two
    workers (a connection pinned to each), and the count that passed is judged against
    what the bucket can have given in the time measured around them (the burst, then one
    each 5 s), not against a stopwatch's guess that no token came back."""
    service = start_service(AUTH_MODE="keys")
    # One request each 5 seconds, 10 at once; its wallet made by another key of the owner.
    owner = f"erin-{uuid.uuid4().hex[:8]}"
    wallet = new_wallet(service, create_key(database, owner))
    key = create_key(database, owner, "--rate", "0.2", "--burst", "10")
    answers: list[httpx.Response] = []
    with one_connection_to_each_worker(service) as workers:
        started = time.monotonic()
        for n in range(40):  # a bucket per worker would pass 20 before the first refusal
            answers.append(workers[n % 2].get(f"{WALLETS}/{wallet}", headers=key.headers))
            if answers[-1].status_code != 200:
                break
        elapsed = time.monotonic() - started
    *passed, refused = answers
    assert refused.status_code == 429, refused.text
    assert len({worker_of(r) for r in passed}) == 2  # the bucket is shared by the workers
    # The 10 at once, and one more for each 5 s that can have passed meanwhile: 10 unless
    # the machine took 5 s for them. A bucket per worker passes 10 on each.
    assert 10 <= len(passed) <= 10 + int(elapsed * 0.2), (len(passed), elapsed)
    assert passed[0].headers["ratelimit-policy"] == '"burst";q=10;w=50'
    assert passed[-1].headers["ratelimit"].startswith('"burst";r=')
    assert refused.json()["code"] == "rate_limited"
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 5
    assert refused.headers["ratelimit"].startswith('"burst";r=0;t=')
    assert refused.headers["ratelimit-policy"] == '"burst";q=10;w=50'
    # Retry-After is rounded up, and the wait starts after the refusal was decided: a
    # token is back by then however slow the machine (a slower one only waits longer).
    time.sleep(int(refused.headers["retry-after"]))
    recovered = read(service, key, wallet)
    assert recovered.status_code == 200, recovered.text


def test_without_redis_each_instance_has_its_own_bucket(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    first = start_service(AUTH_MODE="keys", RATE_LIMIT_RATE="0.01", RATE_LIMIT_BURST="6")
    second = start_service(
        AUTH_MODE="keys", RATE_LIMIT_RATE="0.01", RATE_LIMIT_BURST="6", LOG_LEVEL="warning"
    )
    owner = f"frank-{uuid.uuid4().hex[:8]}"
    key = create_key(database, owner)
    wallet = new_wallet(first, key)  # one of the 6 of the first instance
    assert [r.status_code for r in spend_burst([first], key, wallet, 5)] == [200] * 5
    assert read(first, key, wallet).status_code == 429
    assert [r.status_code for r in spend_burst([second], key, wallet, 6)] == [200] * 6
    assert read(second, key, wallet).status_code == 429


@pytest.mark.skipif(
    not redis_answers(), reason="no Redis at 127.0.0.1:6379: the cluster-wide limit is untested"
)
def test_with_redis_the_bucket_is_shared_by_every_instance(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    settings = {
        "AUTH_MODE": "keys",
        "RATE_LIMIT_RATE": "0.01",
        "RATE_LIMIT_BURST": "6",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    first = start_service(**settings)
    second = start_service(**settings, LOG_LEVEL="warning")
    owner = f"grace-{uuid.uuid4().hex[:8]}"
    key = create_key(database, owner)
    wallet = new_wallet(first, key)  # one of the 6, for both instances
    assert [r.status_code for r in spend_burst([first, second], key, wallet, 5)] == [200] * 5
    assert read(first, key, wallet).status_code == 429
    assert read(second, key, wallet).status_code == 429
