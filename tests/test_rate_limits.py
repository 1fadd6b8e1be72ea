"""Rate limits per API key, over HTTP: a token bucket shared by the workers of an
instance, and with REDIS_URL by every instance that shares the Redis server."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.support import TestDatabase, worker_of
from tests.test_auth import WALLETS, Key, create_key
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


def test_429_after_the_burst_across_both_workers_then_recovery(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    service = start_service(AUTH_MODE="keys")
    # One request each 5 seconds, 10 at once; its wallet made by another key of the owner.
    owner = f"erin-{uuid.uuid4().hex[:8]}"
    wallet = new_wallet(service, create_key(database, owner))
    key = create_key(database, owner, "--rate", "0.2", "--burst", "10")
    started = time.monotonic()
    passed = spend_burst([service], key, wallet, 10)
    assert [r.status_code for r in passed] == [200] * 10, [r.text for r in passed]
    assert len({worker_of(r) for r in passed}) == 2  # the bucket is shared by the workers
    assert passed[0].headers["ratelimit-policy"] == '"burst";q=10;w=50'
    assert passed[-1].headers["ratelimit"].startswith('"burst";r=')
    refused = read(service, key, wallet)
    assert time.monotonic() - started < 5  # no token came back meanwhile (one each 5 s)
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "rate_limited"
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 5
    assert refused.headers["ratelimit"].startswith('"burst";r=0;t=')
    assert refused.headers["ratelimit-policy"] == '"burst";q=10;w=50'
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
