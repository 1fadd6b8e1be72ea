"""What the Python client (clients/python) adds to a request's latency: deposits on one
wallet sent one at a time on loopback, through plain httpx and through the client, the two
interleaved in rounds. Both send the same request (a JSON body and an Idempotency-Key:
the client puts one on every POST), so the difference is the client's own work (its
request building, reading the answer into typed models with Decimal amounts, the retry
bookkeeping). Reported: each one's median latency over all rounds, and their ratio."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import httpx

from wallet_api_client import Client

ROUNDS = 5
PER_ROUND = 300


def measure(base_url: str, wallet: str) -> dict[str, Any]:
    plain_ms: list[float] = []
    client_ms: list[float] = []
    path = f"/api/v1/wallets/{wallet}/operation"
    body = b'{"operation":"DEPOSIT","amount":"0.01"}'
    with httpx.Client(base_url=base_url, timeout=10) as plain, Client(base_url) as client:
        for _ in range(ROUNDS):
            for _ in range(PER_ROUND):
                started = time.perf_counter()
                response = plain.post(
                    path,
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "Idempotency-Key": f"bench-{uuid.uuid4()}",
                    },
                )
                response.raise_for_status()
                response.json()
                plain_ms.append((time.perf_counter() - started) * 1000)
            for _ in range(PER_ROUND):
                started = time.perf_counter()
                client.deposit(wallet, "0.01")
                client_ms.append((time.perf_counter() - started) * 1000)
    plain_p50 = statistics.median(plain_ms)
    client_p50 = statistics.median(client_ms)
    return {
        "requests_each": ROUNDS * PER_ROUND,
        "httpx_p50_ms": round(plain_p50, 3),
        "client_p50_ms": round(client_p50, 3),
        "client_vs_httpx": round(client_p50 / plain_p50, 3),
        "target": "client_vs_httpx < 1.05",
    }
