"""An owner changed in SQL after the workers read it counts only after a restart (SECURITY
§What the service does not do): each worker remembers a wallet's owner once set."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx

from tests.support import Key, TestDatabase, create_key
from tests.test_rate_limits import one_connection_to_each_worker
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess

WALLETS = "/api/v1/wallets"


def answers(service: ServiceProcess, key: Key, wallet: str) -> list[int]:
    """The status of a balance read by `key` from each of the service's two workers."""
    with one_connection_to_each_worker(service) as workers:
        responses = [http.get(f"{WALLETS}/{wallet}", headers=key.headers) for http in workers]
    for response in responses:
        if response.status_code == 404:
            assert_problem(response, 404, "wallet_not_found")
    return [response.status_code for response in responses]


def test_an_owner_changed_afterwards_counts_only_after_a_restart(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    """Both workers have read the wallet's owner (a read on a connection to each). The
    operator then gives the wallet to another owner in SQL: until the restart, each
    worker still answers the first owner and refuses the new one as it refuses a missing
    wallet; after it, the other way round."""
    service = start_service(fresh=True, AUTH_MODE="keys")
    suffix = uuid.uuid4().hex[:8]
    first = create_key(database, f"olga-{suffix}")
    second = create_key(database, f"piet-{suffix}")
    with httpx.Client(base_url=service.base_url, timeout=30) as http:
        created = http.post(f"{WALLETS}/create_wallet", headers=first.headers)
    assert created.status_code == 201, created.text
    wallet = str(created.json()["wallet_uuid"])
    assert answers(service, first, wallet) == [200, 200]
    assert answers(service, second, wallet) == [404, 404]

    (row,) = database.fetch(
        "UPDATE wallets SET owner = $1 WHERE id = $2 AND owner = $3 RETURNING owner",
        second.owner,
        uuid.UUID(wallet),
        first.owner,
    )
    assert row["owner"] == second.owner
    assert answers(service, second, wallet) == [404, 404]
    assert answers(service, first, wallet) == [200, 200]

    service.stop()
    restarted = start_service(fresh=True, AUTH_MODE="keys")
    assert answers(restarted, second, wallet) == [200, 200]
    assert answers(restarted, first, wallet) == [404, 404]
