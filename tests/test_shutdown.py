"""SIGTERM drains: what was acknowledged is stored, nothing is applied after an error
response, nothing is half-applied."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Callable

import httpx

from tests.support import TestDatabase, assert_ledger_consistent, operation
from wallet_api.devtools.server import ServiceProcess

BURST = 300


def test_sigterm_during_a_burst_keeps_every_acknowledged_operation(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    service = start_service()
    wallet = str(
        httpx.post(f"{service.base_url}/api/v1/wallets/create_wallet").json()["wallet_uuid"]
    )
    keys = [f"drain-{uuid.uuid4()}" for _ in range(BURST)]

    async def burst() -> list[httpx.Response | BaseException]:
        limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=service.base_url, limits=limits, timeout=60
        ) as client:
            tasks = [
                asyncio.create_task(
                    client.post(
                        f"/api/v1/wallets/{wallet}/operation",
                        json=operation("DEPOSIT", 1),
                        headers={"Idempotency-Key": key},
                    )
                )
                for key in keys
            ]
            # Signal once the burst is under way: some answered, most still in flight.
            deadline = asyncio.get_running_loop().time() + 30
            while sum(task.done() for task in tasks) < BURST // 10:
                assert asyncio.get_running_loop().time() < deadline, "the burst never started"
                await asyncio.sleep(0.002)
            service.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(burst())
    assert service.process.wait(timeout=60) == 0, service.log_text()[-3000:]

    acknowledged = {k for k, r in zip(keys, outcomes, strict=True) if _status(r) == 200}
    answered_otherwise = {
        k for k, r in zip(keys, outcomes, strict=True) if _status(r) not in (None, 200)
    }
    cut_off = {k for k, r in zip(keys, outcomes, strict=True) if _status(r) is None}
    stored = {
        row["idempotency_key"]
        for row in database.fetch(
            "SELECT idempotency_key FROM wallet_operations WHERE wallet_id = $1", uuid.UUID(wallet)
        )
    }
    assert len(acknowledged) >= BURST // 10
    assert acknowledged <= stored, "an acknowledged operation was lost"
    assert stored <= acknowledged | cut_off, "an operation was applied after an error response"
    assert not stored & answered_otherwise
    assert len(assert_ledger_consistent(database, wallet)) == len(stored)


def _status(outcome: httpx.Response | BaseException) -> int | None:
    return outcome.status_code if isinstance(outcome, httpx.Response) else None
