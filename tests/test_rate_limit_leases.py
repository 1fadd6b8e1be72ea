"""A larger burst is counted a lease at a time: each worker takes a key's tokens from the
shared bucket 1/100 of the burst at a time (at most 64), so the limit is off by at most a
lease per worker (API §Who may call; SECURITY). The exact count of a small burst is
`test_rate_limits.py`'s."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from tests.support import TestDatabase, create_key, worker_of
from tests.test_rate_limits import new_wallet, one_connection_to_each_worker
from wallet_api.devtools.server import ServiceProcess

WALLETS = "/api/v1/wallets"
BURST = 1000
RATE = 0.01
LEASE = BURST // 100
WORKERS = 2


def test_a_larger_burst_is_off_by_at_most_a_lease_per_worker(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    """By construction: one worker is asked once (it leases 10 tokens and spends one),
    then the other is asked until it refuses. The tokens the first worker holds are the
    ones the second cannot have: what passed in all is the burst, less at most a lease
    per worker, plus what the bucket can have given back in the time measured around the
    requests (one each 100 s: none, unless the machine took 100 s)."""
    service = start_service(AUTH_MODE="keys")
    owner = f"quinn-{uuid.uuid4().hex[:8]}"
    wallet = new_wallet(service, create_key(database, owner))
    key = create_key(database, owner, "--rate", str(RATE), "--burst", str(BURST))
    path = f"{WALLETS}/{wallet}"
    with one_connection_to_each_worker(service) as (holder, spender):
        started = time.monotonic()
        held = holder.get(path, headers=key.headers)
        assert held.status_code == 200, held.text
        passed = [held]
        for _ in range(BURST + WORKERS * LEASE):
            answer = spender.get(path, headers=key.headers)
            if answer.status_code != 200:
                break
            passed.append(answer)
        elapsed = time.monotonic() - started
    assert answer.status_code == 429, answer.text
    assert answer.json()["code"] == "rate_limited"
    assert {worker_of(response) for response in passed[1:]} == {worker_of(answer)}
    assert worker_of(held) != worker_of(answer)
    regained = int(elapsed * RATE)
    assert BURST - WORKERS * LEASE <= len(passed) <= BURST + regained, (len(passed), elapsed)
